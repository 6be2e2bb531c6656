"""What received events are dispatched to: the registered targets.

A target has a stable ``name`` (it is stored with each event's run record) and a
``run(event)`` that may return a reply event. Kinds of targets plug in as
*providers*: functions from an event to the targets it should reach, one module
per kind: group handlers and model event sources (``groups``, django-spark's
API) and named events (``named``, eventlib's); watches and subscriptions will
add theirs with :func:`register_provider`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .. import conf
from ..events import CloudEvent

Handler = Callable[[CloudEvent], Any]
Provider = Callable[[CloudEvent], Iterable["Target"]]


@dataclass(frozen=True)
class Target:
    """One thing that does work for an event; ``run`` may return a reply event."""

    name: str
    function: Handler
    deferred: bool = False  # always run on the worker, also in inline mode

    def run(self, event: CloudEvent) -> CloudEvent | None:
        result = self.function(event)
        return correlated(result, event) if isinstance(result, CloudEvent) else None


def correlated(reply: CloudEvent, request: CloudEvent) -> CloudEvent:
    """The reply, carrying the request's correlation id as its reply id.

    Knative's RequestReply sets ``CORRELATION_ATTRIBUTE`` (``correlationid``)
    on a request and routes back the event whose ``REPLY_ATTRIBUTE``
    (``replyid``) holds the same value. A reply that sets it itself is kept.
    """
    options = conf.receiver()
    correlation, reply_name = (
        options["CORRELATION_ATTRIBUTE"],
        options["REPLY_ATTRIBUTE"],
    )
    if not correlation or not reply_name:
        return reply
    value = request.get_attributes().get(correlation)
    attributes = reply.get_attributes()
    if value is None or attributes.get(reply_name) is not None:
        return reply
    attributes = {k: v for k, v in attributes.items() if k != correlation}
    return CloudEvent({**attributes, reply_name: value}, reply.get_data())


_providers: list[Provider] = []


def register_provider(provider: Provider) -> Provider:
    """Add a kind of dispatch target (called once per kind, at start-up)."""
    if provider not in _providers:
        _providers.append(provider)
    return provider


def targets_for(event: CloudEvent) -> list[Target]:
    """Every target this event should reach, each once, in registration order."""
    seen: dict[str, Target] = {}
    for provider in _providers:
        for target in provider(event):
            seen.setdefault(target.name, target)
    return list(seen.values())


def name_of(function: Handler) -> str:
    """A handler's stable name: its module and qualified name."""
    module = getattr(function, "__module__", None) or "?"
    qualname = getattr(function, "__qualname__", None) or repr(function)
    return f"{module}.{qualname}"


MAX_NAME = 255  # TargetRun.target


def check_name(function: Handler, registered: Iterable[Handler]) -> None:
    """Refuse a handler whose stored name would not identify it for good.

    Exactly-once effects rest on the target's name: a name shared by two
    handlers would run only one of them, and a name that changes between
    processes (``functools.partial``, objects without ``__qualname__``) would run
    a redelivered event's target again.
    """
    name = name_of(function)
    if getattr(function, "__qualname__", None) is None:
        raise ValueError(f"{function!r}: a handler must be a function or method")
    if len(name) > MAX_NAME:
        raise ValueError(f"handler name longer than {MAX_NAME} characters: {name}")
    for other in registered:
        if other is not function and name_of(other) == name:
            raise ValueError(f"two different handlers share the name {name}")


# Group handlers are the first provider, whatever is imported first, so they
# keep running before named events' handlers (the order targets run in).
from . import groups  # noqa: E402, F401
