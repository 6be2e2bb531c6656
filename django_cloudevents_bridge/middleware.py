"""Serve the receiver without its trailing slash too (no redirect)."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, resolve


class ReceiverSlashMiddleware:
    """``POST /cloudevents`` is handled as ``POST /cloudevents/``.

    Django would answer 301 (APPEND_SLASH) or 404, and Knative treats a 3xx as a
    permanent failure. Only paths whose slashed form is the CloudEvents receiver
    are rewritten; every other URL is left alone.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path_info
        if request.method in ("POST", "OPTIONS") and not path.endswith("/"):
            slashed = receiver_path(path)
            if slashed:
                request.path_info = slashed
                request.path = request.path + "/"
        return self.get_response(request)


def receiver_path(path: str) -> str | None:
    """``path + "/"`` if only that resolves, to a CloudEvents receiver view."""
    try:
        resolve(path)
        return None
    except Resolver404:
        pass
    try:
        match = resolve(path + "/")
    except Resolver404:
        return None
    view_class = getattr(match.func, "view_class", None)
    return path + "/" if getattr(view_class, "cloudevents_receiver", False) else None
