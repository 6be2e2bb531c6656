"""One subscriber's feed, computed at read time; seen state per person.

No row is written per person per event: a page is read from the stored events
and the subscriber's subscriptions, newest first, keyset-paginated on (time,
id) with an opaque cursor, in three queries: the subscriber's subscriptions on
the medium (its own, and its groups' for its kind, minus its unsubscriptions),
the page, and the page's actors. The page is the newest of two ordered
branches, each limited to the page size: the events of the sources subscribed
to plainly (the (source, time, id) index), and the events of ``only_following``
sources whose actors the subscriber follows (from the actor index: itself, its
groups, its registered follows), so a sparse feed never scans every event.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import models, router
from django.db.models import Q, Subquery, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from . import resolvers
from .queries import _ct, _Sql, person_keys

if TYPE_CHECKING:
    from ..models import Event, Medium

PAGE = 50  # events per page by default
MAX_PAGE = 500


class BadCursor(ValueError):
    """A cursor this feed did not give out (or edited)."""


@dataclass(frozen=True)
class Page:
    """A page of a feed: the events, newest first, and the next page's cursor
    (None on the last page). Each event has ``is_seen`` (by this subscriber)."""

    events: list[Event]
    cursor: str | None

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.events)


def encode_cursor(event: Event) -> str:
    """An opaque cursor after ``event``: its (time, id)."""
    text = json.dumps([event.time.isoformat(), event.pk])
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """(time, id) of a cursor; BadCursor if it is not one of ours."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        when, pk = json.loads(base64.urlsafe_b64decode(padded.encode()))
        moment = datetime.fromisoformat(when)
    except (binascii.Error, ValueError, TypeError, UnicodeError):
        raise BadCursor("not a feed cursor") from None
    if not isinstance(pk, int) or isinstance(pk, bool) or moment.tzinfo is None:
        raise BadCursor("not a feed cursor")
    return moment, pk


def subscribed_sources(medium: Medium, entity: models.Model) -> models.QuerySet[Any]:
    """The entity's subscriptions on ``medium`` (its own, and its groups' for its
    kind), minus the sources it unsubscribed from: one query when read."""
    from ..models import Subscription, Unsubscription

    content_type, key = resolvers.entity_of(entity)
    reaching = Q(entity_type=content_type, entity_id=key, sub_entity_type__isnull=True)
    for m in resolvers.registry.memberships:
        if m.right is not entity._meta.model:
            continue
        groups = (
            m.pairs()
            .filter(dce_right=entity.pk)
            .annotate(dce_key=Cast("dce_left", TextField()))
            .values("dce_key")
        )
        reaching |= Q(
            entity_type_id=_ct(m.left),
            sub_entity_type=content_type,
            entity_id__in=Subquery(groups),
        )
    unsubscribed = Unsubscription.objects.filter(
        medium=medium, entity_type=content_type, entity_id=key
    ).values("source_id")
    return (
        Subscription.objects.filter(reaching, medium=medium)
        .exclude(source_id__in=unsubscribed)
        .select_related("source")
    )


def _keys_sql(q: _Sql, entity: models.Model) -> None:
    """A subquery of the entity's recipient keys (its people)."""
    mapping = resolvers.registry.people.get(entity._meta.model)
    if mapping is None:
        q.add("(SELECT NULL WHERE 1 = 0)")
        return
    q.add(
        "(SELECT CASE WHEN p.dce_user IS NOT NULL "
        "THEN 'user:' || CAST(p.dce_user AS text) "
        "ELSE 'email:' || LOWER(TRIM(p.dce_email)) END FROM"
    )
    q.queryset(mapping.rows().filter(**{mapping.entity: entity.pk})).add("p)")


def entity_events(
    medium: Medium,
    entity: models.Model,
    *,
    cursor: str | None = None,
    limit: int = PAGE,
    seen: bool | None = None,
    include_expired: bool = False,
    start_time: datetime | None = None,
    end_time: datetime | None = None,
    actor: models.Model | None = None,
    mark_seen: bool = False,
) -> Page:
    """One page of ``entity``'s feed on ``medium``, newest first.

    ``cursor``: the previous page's ``cursor``; ``seen``: only events the
    subscriber's people have (True) or have not (False) seen; expired events
    are left out unless ``include_expired``; ``actor``: only events with that
    actor; ``mark_seen``: the page's events are marked seen (after reading).
    """
    from ..models import Event, EventActor, EventSeen

    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError("limit is a whole number, 1 or more")
    limit = min(limit, MAX_PAGE)
    after = decode_cursor(cursor) if cursor is not None else None
    sources: dict[int, Any] = {}
    following: set[int] = set()
    plain: set[int] = set()
    for subscription in subscribed_sources(medium, entity):
        sources[subscription.source_id] = subscription.source
        (following if subscription.only_following else plain).add(
            subscription.source_id
        )
    following -= plain
    if not sources:
        return Page([], None)
    using = router.db_for_read(Event)
    q = _Sql(using)
    adapt = q.connection.ops.adapt_datetimefield_value
    qn = q.qn
    event_t, actor_t = qn(Event._meta.db_table), qn(EventActor._meta.db_table)
    seen_t = qn(EventSeen._meta.db_table)
    content_type, key = resolvers.entity_of(entity)

    def conditions() -> None:
        if after is not None:
            q.add(
                "AND (e.time < %s OR (e.time = %s AND e.id < %s))",
                adapt(after[0]),
                adapt(after[0]),
                after[1],
            )
        if not include_expired:
            q.add(
                "AND (e.expires_at IS NULL OR e.expires_at > %s)",
                adapt(timezone.now()),
            )
        if start_time is not None:
            q.add("AND e.time >= %s", adapt(start_time))
        if end_time is not None:
            q.add("AND e.time <= %s", adapt(end_time))
        if actor is not None:
            actor_type, actor_key = resolvers.entity_of(actor)
            q.add(
                f"AND EXISTS (SELECT 1 FROM {actor_t} x WHERE x.event_id = e.id "
                "AND x.entity_type_id = %s AND x.entity_id = %s)",
                actor_type.pk,
                actor_key,
            )
        if seen is not None:
            q.add("AND" if seen else "AND NOT")
            q.add(
                f"EXISTS (SELECT 1 FROM {seen_t} s WHERE s.event_id = e.id "
                "AND s.person IN"
            )
            _keys_sql(q, entity)
            q.add(")")

    order = f"ORDER BY e.time DESC, e.id DESC LIMIT {int(limit) + 1}"
    q.add(f"SELECT e.*, EXISTS (SELECT 1 FROM {seen_t} s WHERE s.event_id = e.id")
    q.add("AND s.person IN")
    _keys_sql(q, entity)
    q.add(f") AS dce_seen FROM {event_t} e WHERE e.id IN (")
    branches = 0
    if plain:
        q.add(f"SELECT id FROM (SELECT e.id FROM {event_t} e WHERE e.source_id IN")
        q.ids(sorted(plain))
        conditions()
        q.add(f"{order}) plain")
        branches += 1
    if following:
        q.add("UNION" if branches else "")
        q.add(f"SELECT id FROM (SELECT e.id FROM {event_t} e WHERE e.source_id IN")
        q.ids(sorted(following))
        q.add(
            f"AND e.id IN (SELECT a.event_id FROM {actor_t} a "
            "WHERE a.entity_type_id = %s AND a.entity_id = %s",
            content_type.pk,
            key,
        )
        for m in resolvers.registry.memberships:  # its groups
            if m.right is entity._meta.model:
                q.add("UNION ALL SELECT a.event_id FROM")
                q.queryset(m.pairs().filter(dce_right=entity.pk))
                q.add(
                    f"m JOIN {actor_t} a ON a.entity_type_id = %s "
                    "AND a.entity_id = CAST(m.dce_left AS text)",
                    _ct(m.left),
                )
        for m in resolvers.registry.follows:  # what it follows
            if m.left is entity._meta.model:
                q.add("UNION ALL SELECT a.event_id FROM")
                q.queryset(m.pairs().filter(dce_left=entity.pk))
                q.add(
                    f"m JOIN {actor_t} a ON a.entity_type_id = %s "
                    "AND a.entity_id = CAST(m.dce_right AS text)",
                    _ct(m.right),
                )
        q.add(")")
        conditions()
        q.add(f"{order}) following")
    q.add(f") {order}")
    found = list(Event.objects.db_manager(using).raw(q.text(), q.params))
    more = len(found) > limit
    found = found[:limit]
    cache = Event._meta.get_field("source").set_cached_value
    for event in found:
        cache(event, sources[event.source_id])
        event.is_seen = bool(event.dce_seen)  # type: ignore[attr-defined]
    models.prefetch_related_objects(found, "actors")
    if mark_seen and found:
        _mark_seen(entity, found)
    return Page(found, encode_cursor(found[-1]) if more else None)


def mark_seen(person: Any, events: Iterable[Any]) -> int:
    """Mark events seen by a person (a recipient key, a user, or a subscriber
    entity's people); idempotent, also under concurrency (ON CONFLICT DO
    NOTHING). How many (event, person) pairs were asked for, existing events only.
    """
    from ..models import Event, EventSeen

    keys = person_keys(person)
    ids = {getattr(event, "pk", event) for event in events}
    if not keys or not ids:
        return 0
    known = list(Event.objects.filter(pk__in=ids).values_list("pk", flat=True))
    now = timezone.now()
    rows = [
        EventSeen(event_id=pk, person=key, seen_at=now) for pk in known for key in keys
    ]
    EventSeen.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


_mark_seen = mark_seen  # entity_events() has an argument of that name
