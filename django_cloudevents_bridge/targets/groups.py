"""Group handlers and model event sources (django-spark's API on CloudEvents).

A *group handler* runs for received events whose ``type`` matches its group, a
regular expression (django-spark's semantics); its target name is
``group:<module>.<qualname>``.

A *source* is a function of a model instance that yields spark events: dicts
``{"group": ..., "key": ..., "context": ...}`` (or django-spark's ``Event``
objects). Each becomes a CloudEvent whose ``type`` is the group, whose ``id`` is
derived from the key alone and whose ``data`` is the context. Keys are globally
unique, as in django-spark: the receiver's (``source``, ``id``) dedupe runs a
key's group handlers once, however often the instance is saved.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, overload

from django.db import models
from django.db.models.signals import post_save

from .. import conf, events, filters
from ..emit import emit, transaction_aborted
from ..emit.serialize import to_json_safe
from ..events import CloudEvent
from ..models import ReceivedEvent, TargetRun
from ..receive import dispatch  # a module: dispatch imports this one
from . import Handler, Target, check_name, name_of, register_provider, targets_for

logger = logging.getLogger("django_cloudevents_bridge")

FilterSpec = filters.Spec


@dataclass(frozen=True)
class _Group:
    """One registration: a type regex and/or a filter, and the handler."""

    pattern: re.Pattern[str] | None
    filter: filters.Filter | None
    function: Handler
    key: str  # what makes two registrations the same (with the function)

    def matches(self, event: CloudEvent) -> bool:
        if self.pattern is not None and not self.pattern.search(event.get_type()):
            return False
        return self.filter is None or self.filter.matches(event)


_groups: list[_Group] = []
_deferred: set[Handler] = set()  # handlers that always run on the worker
# The registrations, those whose filter pins exact types by type, and the rest
# (tried for every event): built on the first dispatch after a change.
_Index = tuple[tuple[_Group, ...], dict[str, list[int]], list[int]]
_index: _Index | None = None


@overload
def register_group_handler(
    handler: Handler,
    group: str = "",
    *,
    filter: FilterSpec | None = None,
    deferred: bool = False,
) -> Handler: ...
@overload
def register_group_handler(
    handler: None = None,
    group: str = "",
    *,
    filter: FilterSpec | None = None,
    deferred: bool = False,
) -> Callable[[Handler], Handler]: ...
def register_group_handler(
    handler: Handler | None = None,
    group: str = "",
    *,
    filter: FilterSpec | None = None,  # noqa: A002 - the dialect's own word
    deferred: bool = False,
) -> Handler | Callable[[Handler], Handler]:
    """Run ``handler(event)`` for received events whose ``type`` matches ``group``.

    ``group`` is a regular expression searched in the type (django-spark's
    semantics): ``r"^django\\.orm\\."`` takes every model event. ``filter`` is a
    Subscriptions API filter (``{"prefix": {"type": "com.shop."}}``, a list, or
    ``{"cesql": "..."}``, see :mod:`..filters`) the event must also pass; one of
    the two is required. Works as a plain call or, without ``handler``, as a
    decorator. Registering the same handler for the same group and filter twice
    is a no-op. ``deferred=True``: it always runs on the worker (work.py), also
    in inline mode (e.g. a slow mailer).
    """
    if not group and filter is None:
        raise ValueError("register_group_handler needs a group pattern or a filter")
    pattern = re.compile(group) if group else None
    compiled = filters.compile(filter) if filter is not None else None
    key = f"{group}\0{json.dumps(filter, sort_keys=True, default=str)}"

    def register(function: Handler) -> Handler:
        global _index
        check_name(function, [g.function for g in _groups])
        if not any(g.key == key and g.function is function for g in _groups):
            _groups.append(_Group(pattern, compiled, function, key))
            _index = None
        if deferred:
            _deferred.add(function)
        return function

    return register(handler) if handler is not None else register


def unregister_group_handler(handler: Handler, group: str | None = None) -> None:
    """Remove a handler (from one group, or from all); mostly for tests."""
    global _index
    _groups[:] = [
        g
        for g in _groups
        if not (
            g.function is handler
            and (
                group is None or (g.pattern is not None and g.pattern.pattern == group)
            )
        )
    ]
    _index = None
    if not any(g.function is handler for g in _groups):
        _deferred.discard(handler)


def _indexed() -> _Index:
    """The registrations, by pinned type, and those tried for every event."""
    global _index
    index = _index
    if index is None:
        groups = tuple(_groups)
        by_type: dict[str, list[int]] = {}
        every: list[int] = []
        for position, group in enumerate(groups):
            types = group.filter.types if group.filter is not None else None
            if types is None:
                every.append(position)
            else:
                for type_ in types:
                    by_type.setdefault(type_, []).append(position)
        index = _index = (groups, by_type, every)
    return index


@register_provider
def group_targets(event: CloudEvent) -> Iterable[Target]:
    """The group handlers whose pattern is found in the event's type and whose
    filter the event passes, in registration order."""
    groups, by_type, every = _indexed()
    candidates = by_type.get(event.get_type())
    positions = sorted([*candidates, *every]) if candidates else every
    for position in positions:
        group = groups[position]
        if group.matches(event):
            function = group.function
            yield Target(f"group:{name_of(function)}", function, function in _deferred)


# Model event sources

Source = Callable[[Any], Iterable[Any]]

# Fixed for ever: changing it would make every key "new" again.
KEY_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:django-cloudevents-bridge:spark")
KEY_EXTENSION = "sparkkey"  # the key itself, for handlers and the admin

DISPATCH_UID = "django_cloudevents_bridge.spark"

MODEL_SOURCES: dict[type[models.Model], list[Source]] = {}


def register_model_event_source(*, sender: type[models.Model], source: Source) -> None:
    """On every save of ``sender``, emit the events ``source(instance)`` yields.

    Registering the same source for the same model twice is a no-op.
    """
    sources = MODEL_SOURCES.setdefault(sender, [])
    if source not in sources:
        sources.append(source)
    # One module-level receiver: Django ignores a second connect for the same
    # receiver and sender, so a model never emits its events twice per save.
    post_save.connect(on_save, sender=sender, dispatch_uid=DISPATCH_UID)


def on_save(sender: type[models.Model], instance: models.Model, **kwargs: Any) -> None:
    """post_save receiver: emit the instance's events.

    Never raises into save(), unless a failed write aborted its transaction.
    """
    try:
        emit(from_instance(instance), using=kwargs.get("using"))
    except Exception:
        if transaction_aborted(kwargs.get("using")):
            raise  # the caller's transaction cannot commit: hiding it loses rows
        logger.exception("Could not emit the spark events of %r", instance)


def from_instance(instance: models.Model) -> list[CloudEvent]:
    """The events every source registered for the instance's model yields now."""
    subject = f"DCE:{instance._meta.label_lower}/{instance.pk}"
    return [
        to_event(item, subject=subject)
        for source in MODEL_SOURCES.get(type(instance), ())
        for item in source(instance)
    ]


def event_id(key: Any) -> str:
    """The CloudEvent ``id`` of a spark key: the same key always gives the same id."""
    return str(uuid.uuid5(KEY_NAMESPACE, str(key)))


def to_event(item: Any, *, subject: str | None = None) -> CloudEvent:
    """A spark event (dict or ``Event`` object) as a CloudEvent; others unchanged."""
    if isinstance(item, CloudEvent):
        return item
    fields = dict(item) if isinstance(item, Mapping) else dict(vars(item))
    group, key = fields.pop("group", None), fields.pop("key", None)
    if not group or not isinstance(group, str) or key in (None, ""):
        raise ValueError(f"a spark event needs a group and a key, got {item!r}")
    # django-spark's Event carries its context as extra attributes.
    context = fields.pop("context") if "context" in fields else fields or None
    return events.new(
        group,
        id=event_id(key),
        source=conf.source(),
        subject=subject,
        extensions={KEY_EXTENSION: str(key)},
        data=_json_safe(context),
    )


def _json_safe(value: Any) -> Any:
    """JSON-safe data; a model instance is sent as its primary key."""
    if isinstance(value, models.Model):
        return to_json_safe(value.pk)
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_json_safe(v) for v in value]
    return to_json_safe(value)


def process_events(items: Iterable[Any]) -> list[dispatch.Report]:
    """Dispatch events in this process, with the receiver's exactly-once store.

    Takes CloudEvents or spark events; returns one report per event. A key
    already processed runs no handler again.
    """
    return [dispatch.deliver(to_event(item)) for item in items]


def only_new_events(items: Iterable[Any]) -> Iterator[CloudEvent]:
    """The events that still owe work: never received, or a target not done yet."""
    batch = [to_event(item) for item in items]
    recorded: set[tuple[str, str]] = set()
    done: dict[tuple[str, str], set[str]] = {}
    for source in {event.get_source() for event in batch}:
        ids = [event.get_id() for event in batch if event.get_source() == source]
        stored = ReceivedEvent.objects.filter(source=source, event_id__in=ids)
        recorded.update(
            (source, id_) for id_ in stored.values_list("event_id", flat=True)
        )
        runs = TargetRun.objects.filter(
            event__in=stored, status=TargetRun.Status.DONE
        ).values_list("event__event_id", "target")
        for id_, target in runs:
            done.setdefault((source, id_), set()).add(target)
    for event in batch:
        key = (event.get_source(), event.get_id())
        wanted = {target.name for target in targets_for(event)}
        if key not in recorded or wanted - done.get(key, set()):
            yield event
