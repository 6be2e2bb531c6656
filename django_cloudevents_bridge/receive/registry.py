"""What received events are dispatched to: the registered targets.

A target has a stable ``name`` (it is stored with each event's run record) and a
``run(event)`` that may return a reply event. Kinds of targets plug in as
*providers*: functions from an event to the targets it should reach. Group
handlers are the first kind; named events, subscriptions and watches add theirs
with :func:`register_provider`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, overload

from ..events import CloudEvent

Handler = Callable[[CloudEvent], Any]
Provider = Callable[[CloudEvent], Iterable["Target"]]


@dataclass(frozen=True)
class Target:
    """One thing that does work for an event; ``run`` may return a reply event."""

    name: str
    function: Handler

    def run(self, event: CloudEvent) -> CloudEvent | None:
        result = self.function(event)
        return result if isinstance(result, CloudEvent) else None


_providers: list[Provider] = []
_groups: list[tuple[re.Pattern[str], Handler]] = []


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


@overload
def register_group_handler(handler: Handler, group: str) -> Handler: ...
@overload
def register_group_handler(
    handler: None = None, *, group: str
) -> Callable[[Handler], Handler]: ...
def register_group_handler(
    handler: Handler | None = None, group: str = ""
) -> Handler | Callable[[Handler], Handler]:
    """Run ``handler(event)`` for received events whose ``type`` matches ``group``.

    ``group`` is a regular expression searched in the type (django-spark's
    semantics): ``r"^django\\.orm\\."`` takes every model event. Works as a plain
    call or, without ``handler``, as a decorator. Registering the same handler for
    the same group twice is a no-op.
    """
    if not group:
        raise ValueError("register_group_handler needs a group pattern")
    pattern = re.compile(group)

    def register(function: Handler) -> Handler:
        check_name(function, [h for _, h in _groups])
        if not any(p.pattern == group and h is function for p, h in _groups):
            _groups.append((pattern, function))
        return function

    return register(handler) if handler is not None else register


def unregister_group_handler(handler: Handler, group: str | None = None) -> None:
    """Remove a handler (from one group, or from all); mostly for tests."""
    _groups[:] = [
        (p, h)
        for p, h in _groups
        if not (h is handler and (group is None or p.pattern == group))
    ]


@register_provider
def group_targets(event: CloudEvent) -> Iterable[Target]:
    event_type = event.get_type()
    for pattern, function in list(_groups):
        if pattern.search(event_type):
            yield Target(f"group:{name_of(function)}", function)
