"""Serve the receiver without its trailing slash too (no redirect).

``path("cloudevents/", include("django_cloudevents_bridge.urls"))`` routes
``/cloudevents/``; Django answers ``/cloudevents`` with a 301 (APPEND_SLASH; a
500 for a POST under DEBUG) or a 404, and Knative treats a 3xx as a permanent
failure. So on the first request the root URLconf gets one more pattern, after
all of its own: a path that resolves nowhere, has no trailing slash, and whose
slashed form is a CloudEvents receiver view (the receiver, the Pub/Sub push view,
a subclass of them) resolves to that view. Every other URL resolves as before.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import (
    Resolver404,
    URLPattern,
    URLResolver,
    get_resolver,
)
from django.urls.resolvers import RegexPattern, ResolverMatch

_lock = threading.Lock()
_INSTALLED = "_cloudevents_slashless"  # set on a root resolver once it has the pattern


class _NoPath(RegexPattern):
    """Matches nothing (reversing gives nothing either)."""

    def __init__(self) -> None:
        super().__init__(r"(?!)", is_endpoint=True)

    def __str__(self) -> str:
        return "[CloudEvents receivers without their trailing slash]"


def _never_called(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    raise AssertionError(
        "resolve() returns the receiver's own view"
    )  # pragma: no cover


class SlashlessReceivers(URLPattern):
    """The last pattern of a root URLconf: ``<path>`` as ``<path>/`` for receivers."""

    def __init__(self, patterns: Sequence[Any]) -> None:
        super().__init__(_NoPath(), _never_called)
        # The root's own patterns, without this one: resolved with a slash added.
        self.resolver = URLResolver(RegexPattern(r"^"), list(patterns))

    def resolve(self, path: str) -> ResolverMatch | None:
        if not path or path.endswith("/"):
            return None
        try:
            match = self.resolver.resolve(path + "/")
        except Resolver404:
            return None
        return match if is_receiver(match.func) else None


def is_receiver(view: Any) -> bool:
    """True for a CloudEvents receiver view (``cloudevents_receiver`` set)."""
    view_class = getattr(view, "view_class", None)
    return bool(getattr(view_class, "cloudevents_receiver", False))


def install(urlconf: str | None = None) -> None:
    """Give the root resolver of ``urlconf`` (default ROOT_URLCONF) the pattern.

    Once per resolver (Django makes a new one when the URL caches are cleared, as
    ``override_settings(ROOT_URLCONF=...)`` does). A URLconf that routes no
    receiver is left as it is; one that does not import is left to Django, which
    reports the error when it resolves the request.
    """
    resolver = get_resolver(urlconf)
    if getattr(resolver, _INSTALLED, False):
        return
    from .checks import receiver_routed

    with _lock:
        if getattr(resolver, _INSTALLED, False):
            return
        try:
            patterns = list(resolver.url_patterns)
            routed = receiver_routed(patterns)
        except Exception:
            return
        if routed:
            # The resolver's own list (a cached_property), not the project's
            # urlpatterns: the URLconf module is left untouched.
            resolver.__dict__["url_patterns"] = [
                *patterns,
                SlashlessReceivers(patterns),
            ]
        setattr(resolver, _INSTALLED, True)


def on_request_started(sender: Any, **kwargs: Any) -> None:
    """``request_started`` receiver (connected in AppConfig.ready())."""
    install()


class ReceiverSlashMiddleware:
    """No longer needed: the receiver answers without its slash out of the box.

    Kept for projects that list it; it also installs the pattern for a URLconf
    chosen per request (``request.urlconf``, set by a middleware before it).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        install(getattr(request, "urlconf", None))
        return self.get_response(request)
