"""Which events a medium has, and the people each one reaches: one statement.

entity-event ran one query per event and subscription (1,054 queries and 15 s
for one event with 100,000 users in 1,000 groups) and returned an entity once
per route to it, so a mailer sent duplicates. Here the targets of a batch of
stored events, on a set of mediums, are one SQL statement built from the
registered relations (``resolvers``), "followers first":

1. the followers of each event's actors: the actors themselves, the members of
   actors that are groups, and registered follows rows (small: they start from
   the actors, never from the subscriptions);
2. the subscriptions reaching someone: plain ones (not ``only_following``) of the
   event's source, individual or through a group's members; ``only_following``
   ones found from the followers: the follower's own subscription, or one of a
   group the follower is a member of (with that member type);
3. minus unsubscriptions of the subscriber entity from the source on the medium;
4. each subscriber entity mapped to its person (a user, else an address).

Rows come ordered by event, medium and address, so people are grouped as the
stream goes (a user wins over an anonymous address, as watches do): each
person once per event and medium, with every subscription that reached them as
a reason. Keys are compared as text (``resolvers.entity_id``); a relation's own
column is compared to a subscription's text key cast to the column's type,
guarded by the content type (``CASE``), so its index is used.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.contrib.contenttypes.models import ContentType
from django.db import connections, models, router
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from ..notifications import Recipient, address_key, normalise_address
from . import resolvers

if TYPE_CHECKING:
    from ..models import Event, Medium

CHUNK = 500  # rows per fetch; events per statement in events_targets()

Row = tuple[Any, ...]


def _ct(model: Any) -> int:
    """A model's content type id (cached by Django after the first lookup)."""
    return int(ContentType.objects.get_for_model(model).pk)


class _Sql:
    """SQL text and its parameters, appended in order."""

    def __init__(self, using: str) -> None:
        self.connection = connections[using]
        self.using = using
        self.parts: list[str] = []
        self.params: list[Any] = []

    def qn(self, name: str) -> str:
        return str(self.connection.ops.quote_name(name))

    def add(self, sql: str, *params: Any) -> _Sql:
        self.parts.append(sql)
        self.params.extend(params)
        return self

    def queryset(self, queryset: models.QuerySet[Any]) -> _Sql:
        """A QuerySet as a parenthesised subquery."""
        sql, params = queryset.query.get_compiler(using=self.using).as_sql()
        return self.add(f"({sql})", *params)

    def cast(self, model: Any) -> str:
        """The SQL type a text key is cast to, to compare with ``model``'s key."""
        return str(model._meta.pk.cast_db_type(self.connection))

    def keyed(self, column: str, ct_column: str, model: Any) -> _Sql:
        """``CASE WHEN ct = <model's> THEN CAST(column AS key type) END``."""
        return self.add(
            f"CASE WHEN {ct_column} = %s THEN CAST({column} AS {self.cast(model)}) END",
            _ct(model),
        )

    def ids(self, values: Sequence[Any]) -> _Sql:
        return self.add("(" + ", ".join(["%s"] * len(values)) + ")", *values)

    def text(self) -> str:
        return " ".join(self.parts)


class _Slot:
    """Where an id goes in a prebuilt statement's parameters."""

    __slots__ = ("ids", "index")

    def __init__(self, ids: int, index: int) -> None:
        self.ids, self.index = ids, index


PREBUILT = 64  # statements kept per registry (by database and numbers of ids)


def statement(
    event_ids: Sequence[int], medium_ids: Sequence[int], using: str
) -> tuple[str, list[Any]]:
    """``_build``'s statement and parameters, built once per registry version,
    database and numbers of ids (compiling the relations' QuerySets took about
    a tenth of a small resolution's time)."""
    registry = resolvers.registry
    key = (registry.version, using, len(event_ids), len(medium_ids))
    built = registry.prebuilt.get(key)
    if built is None:
        built = _build(
            [_Slot(0, i) for i in range(len(event_ids))],
            [_Slot(1, i) for i in range(len(medium_ids))],
            using,
        )
        if len(registry.prebuilt) >= PREBUILT:
            registry.prebuilt.clear()
        registry.prebuilt[key] = built
    sql, template = built
    given = (event_ids, medium_ids)
    return sql, [given[p.ids][p.index] if isinstance(p, _Slot) else p for p in template]


def _build(
    event_ids: Sequence[Any], medium_ids: Sequence[Any], using: str
) -> tuple[str, list[Any]]:
    """The one statement resolving these stored events' people on these mediums.

    Its rows: (event, medium, subscription, entity type, entity key, user key
    as text or NULL, address as stored, normalised address, 1 if no user,
    1 if no address), ordered by event, medium, rows with an address first,
    normalised address, users first.
    """
    from ..models import Event, EventActor, Subscription, Unsubscription

    registry = resolvers.registry
    q = _Sql(using)
    qn = q.qn
    event_t, actor_t = qn(Event._meta.db_table), qn(EventActor._meta.db_table)
    sub_t, unsub_t = qn(Subscription._meta.db_table), qn(Unsubscription._meta.db_table)

    q.add(f"WITH e AS (SELECT id, source_id FROM {event_t} WHERE id IN").ids(event_ids)
    q.add(
        "), a AS (SELECT event_id AS ev, entity_type_id AS ct, entity_id AS id "
        f"FROM {actor_t} WHERE event_id IN"
    ).ids(event_ids)
    # 1. The followers of each event's actors.
    q.add("), f AS (SELECT ev, ct, id FROM a")
    for m in registry.memberships:  # a group actor's members follow it
        head = "UNION SELECT a.ev, %s, CAST(m.dce_right AS text) FROM a JOIN"
        q.add(head, _ct(m.right))
        q.queryset(m.pairs()).add("m ON m.dce_left =").keyed("a.id", "a.ct", m.left)
    for m in registry.follows:  # follows rows whose followed entity is an actor
        head = "UNION SELECT a.ev, %s, CAST(m.dce_left AS text) FROM a JOIN"
        q.add(head, _ct(m.left))
        q.queryset(m.pairs()).add("m ON m.dce_right =").keyed("a.id", "a.ct", m.right)
    # 2. (event, subscription, medium, source, subscriber entity) reached.
    columns = "s.id AS sub, s.medium_id AS medium, s.source_id AS source"
    q.add(
        f"), r AS (SELECT e.id AS ev, {columns}, s.entity_type_id AS ct, "
        f"s.entity_id AS id FROM e JOIN {sub_t} s ON s.source_id = e.source_id "
        "WHERE s.sub_entity_type_id IS NULL AND NOT s.only_following "
        "AND s.medium_id IN"
    ).ids(medium_ids)
    q.add(
        f"UNION ALL SELECT f.ev, {columns}, f.ct, f.id FROM f JOIN e ON e.id = f.ev "
        f"JOIN {sub_t} s ON s.entity_type_id = f.ct AND s.entity_id = f.id "
        "AND s.source_id = e.source_id WHERE s.sub_entity_type_id IS NULL "
        "AND s.only_following AND s.medium_id IN"
    ).ids(medium_ids)
    for m in registry.memberships:
        group, member = _ct(m.left), _ct(m.right)
        # Plain group subscriptions: every member.
        q.add(
            f"UNION ALL SELECT e.id, {columns}, %s, CAST(m.dce_right AS text) "
            f"FROM e JOIN {sub_t} s ON s.source_id = e.source_id "
            "AND s.entity_type_id = %s AND s.sub_entity_type_id = %s "
            "AND NOT s.only_following JOIN",
            member,
            group,
            member,
        )
        q.queryset(m.pairs()).add("m ON m.dce_left =")
        q.keyed("s.entity_id", "s.entity_type_id", m.left).add("WHERE s.medium_id IN")
        q.ids(medium_ids)
        # only_following group subscriptions: from the followers' groups.
        q.add(f"UNION ALL SELECT f.ev, {columns}, f.ct, f.id FROM f")
        q.add("JOIN e ON e.id = f.ev JOIN")
        q.queryset(m.pairs()).add("m ON m.dce_right =").keyed("f.id", "f.ct", m.right)
        q.add(
            f"JOIN {sub_t} s ON s.entity_type_id = %s "
            "AND s.entity_id = CAST(m.dce_left AS text) AND s.sub_entity_type_id = %s "
            "AND s.source_id = e.source_id AND s.only_following WHERE s.medium_id IN",
            group,
            member,
        ).ids(medium_ids)
    q.add(")")
    # 3 and 4: minus unsubscriptions; each subscriber entity as a person.
    people = list(registry.people.values())
    if not people:
        q.add(
            "SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL "
            "WHERE 1 = 0"
        )
    for i, mapping in enumerate(people):
        q.add("UNION ALL" if i else "").add(
            "SELECT r.ev, r.medium, r.sub, r.ct, r.id, CAST(p.dce_user AS text), "
            "p.dce_email, LOWER(TRIM(COALESCE(p.dce_email, ''))) AS address, "
            "CASE WHEN p.dce_user IS NULL THEN 1 ELSE 0 END AS anonymous, "
            "CASE WHEN TRIM(COALESCE(p.dce_email, '')) = '' THEN 1 ELSE 0 END "
            "AS blank FROM r JOIN"
        )
        q.queryset(mapping.rows()).add("p ON p.dce_entity =")
        q.keyed("r.id", "r.ct", mapping.model)
        q.add(
            f"WHERE r.ct = %s AND NOT EXISTS (SELECT 1 FROM {unsub_t} u "
            "WHERE u.medium_id = r.medium AND u.source_id = r.source "
            "AND u.entity_type_id = r.ct AND u.entity_id = r.id)",
            _ct(mapping.model),
        )
    # Rows without an address last: a user reached both with one (its own
    # user row) and without (a member row that names it but has no address)
    # is given with the address.
    q.add("ORDER BY 1, 2, 10, 8, 9, 6, 3")
    return q.text(), q.params


def _rows(
    event_ids: Sequence[int], medium_ids: Sequence[int], using: str
) -> Iterator[Row]:
    sql, params = statement(event_ids, medium_ids, using)
    connection = connections[using]
    if _declarable(connection):
        yield from _declared(connection, sql, params)
        return
    with connection.chunked_cursor() as cursor:
        cursor.execute(sql, params)
        while batch := cursor.fetchmany(CHUNK):
            yield from batch
            if len(batch) < CHUNK:
                break


_cursor_names = itertools.count(1)


def _declarable(connection: Any) -> bool:
    """Whether the statement can run as a cursor declared and first fetched in
    one round trip: PostgreSQL, in a transaction (the subscriptions target
    always is), with client-side binding (Django's default: two statements in
    one execute) and server-side cursors allowed."""
    settings = connection.settings_dict
    return bool(
        connection.vendor == "postgresql"
        and connection.in_atomic_block
        and not settings.get("DISABLE_SERVER_SIDE_CURSORS")
        and settings.get("OPTIONS", {}).get("server_side_binding") is not True
    )


def _declared(connection: Any, sql: str, params: list[Any]) -> Iterator[Row]:
    """The rows through a cursor declared with its first fetch in one round
    trip: a small result (the usual one) costs one statement, where Django's
    server-side cursor costs DECLARE, FETCH, FETCH and CLOSE (about a third of
    a one-event resolution); a large one is still read ``CHUNK`` rows at a time
    and closed. Each fetch is read whole, so the caller may run other
    statements between rows."""
    name = f"dce_targets_{next(_cursor_names)}"
    fetch = f"FETCH FORWARD {CHUNK} FROM {name}"
    with connection.cursor() as cursor:
        cursor.execute(f"DECLARE {name} NO SCROLL CURSOR FOR {sql}; {fetch}", params)
        while cursor.nextset():  # to the FETCH's rows
            pass
        batch = cursor.fetchall()
        yield from batch
        if len(batch) < CHUNK:
            return  # all read: the transaction's end frees the small rest
        while len(batch) == CHUNK:
            cursor.execute(fetch)
            batch = cursor.fetchall()
            yield from batch
        cursor.execute(f"CLOSE {name}")  # a large result's sort: freed now


def _labels() -> dict[int, str]:
    """Content type id -> ``app_label.model`` for every model a relation names."""
    registry = resolvers.registry
    models_ = {p.model for p in registry.people.values()}
    return {_ct(model): model._meta.label_lower for model in models_}


def _reason(row: Row, labels: dict[int, str]) -> dict[str, Any]:
    return {
        "kind": "subscription",
        "id": row[2],
        "entity": labels.get(row[3], str(row[3])),
        "entity_id": row[4],
    }


def _people(rows: Iterable[Row], labels: dict[int, str]) -> Iterator[Recipient]:
    """The people of one (event, medium): a user wins over an anonymous address.

    A user reached under two addresses (its own, and a member row's) is given
    once, with the reasons of the first (``done`` keeps the keys given).
    """
    done: set[str] = set()
    for address, group in itertools.groupby(rows, key=lambda row: row[7]):
        users: dict[str, list[Row]] = {}
        anonymous: list[Row] = []
        for row in group:
            if row[5] is None:
                anonymous.append(row)
            else:
                users.setdefault(row[5], []).append(row)
        if not address:
            anonymous = []  # neither a user nor an address: nobody to reach
        elif anonymous and not users:
            users[""] = []
        first = True
        for user, found in users.items():
            if first:
                found = found + anonymous
                first = False
            email = next((r[6].strip() for r in found if r[6]), "")
            key = f"user:{user}" if user else address_key(normalise_address(email))
            if key in done:
                continue
            done.add(key)
            reasons: list[dict[str, Any]] = []
            for row in found:
                reason = _reason(row, labels)
                if reason not in reasons:
                    reasons.append(reason)
            yield Recipient(key=key, email=email, reasons=tuple(reasons))


def resolve(
    event_ids: Sequence[int], medium_ids: Sequence[int], *, using: str | None = None
) -> Iterator[tuple[int, int, Recipient]]:
    """``(event pk, medium pk, person)``, each person once per event and medium,
    ordered by event and medium: one statement, read in chunks."""
    from ..models import Event

    if not event_ids or not medium_ids:
        return
    using = using or router.db_for_read(Event)
    labels = _labels()
    rows = _rows(list(event_ids), list(medium_ids), using)
    for (ev, medium), group in itertools.groupby(rows, key=lambda row: row[:2]):
        for person in _people(group, labels):
            yield ev, medium, person


def filtered(
    events: models.QuerySet[Event],
    *,
    start_time: datetime | None = None,
    end_time: datetime | None = None,
    include_expired: bool = False,
    actor: models.Model | None = None,
    now: datetime | None = None,
) -> models.QuerySet[Event]:
    """Stored events narrowed by entity-event's filters (expired ones left out
    unless ``include_expired``)."""
    from ..models import EventActor

    if start_time is not None:
        events = events.filter(time__gte=start_time)
    if end_time is not None:
        events = events.filter(time__lte=end_time)
    if not include_expired:
        now = now or timezone.now()
        events = events.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
    if actor is not None:
        content_type, key = resolvers.entity_of(actor)
        events = events.filter(
            Exists(
                EventActor.objects.filter(
                    event=OuterRef("pk"), entity_type=content_type, entity_id=key
                )
            )
        )
    return events


def events(
    medium: Medium, *, seen: bool | None = None, person: Any = None, **filters: Any
) -> models.QuerySet[Event]:
    """Stored events of the sources subscribed to on ``medium``, newest first.

    ``seen`` (True or False) needs ``person`` (a recipient key, a user, or a
    subscriber entity): the events that person has (not) seen.
    """
    from ..models import Event, EventSeen, Subscription

    subscribed = Subscription.objects.filter(medium=medium).values("source_id")
    found = filtered(Event.objects.filter(source__in=subscribed), **filters)
    if seen is not None:
        if person is None:
            raise TypeError("events(seen=...) needs the person whose seen state")
        keys = person_keys(person)
        saw = Exists(EventSeen.objects.filter(event=OuterRef("pk"), person__in=keys))
        found = found.filter(saw if seen else ~saw)
    return found.select_related("source").order_by("-time", "-id")


def events_targets(
    medium: Medium, *, seen: bool | None = None, **filters: Any
) -> list[tuple[Event, list[Recipient]]]:
    """``[(event, people)]``: each event of ``events()`` with the people it
    reaches on ``medium``, each person once. ``seen=False`` leaves out the people
    who have seen the event (``True``: only them). One query for the events, one
    per ``CHUNK`` events for the people, one for the seen state: never one per
    subscription."""
    from ..models import EventSeen

    found = list(events(medium, **filters))
    using = found[0]._state.db if found else None
    reached: dict[int, list[Recipient]] = {event.pk: [] for event in found}
    for start in range(0, len(found), CHUNK):
        ids = [event.pk for event in found[start : start + CHUNK]]
        for ev, _, person in resolve(ids, [medium.pk], using=using):
            reached[ev].append(person)
    if seen is not None and found:
        pairs = set(
            EventSeen.objects.filter(event__in=[e.pk for e in found]).values_list(
                "event_id", "person"
            )
        )
        for ev, people in reached.items():
            reached[ev] = [p for p in people if ((ev, p.key) in pairs) == seen]
    return [(event, reached[event.pk]) for event in found]


def person_keys(person: Any) -> list[str]:
    """Recipient keys of a person given as a key, a user, or a subscriber entity."""
    if isinstance(person, str):
        return [person]
    if isinstance(person, models.Model):
        return resolvers.people_keys(person)
    raise TypeError(f"a person is a recipient key or a model row, not {person!r}")
