"""Who watches a received event: one query, streamed, grouped per person.

The event's candidate match keys (2**k per class and subject, k <= 4 filters,
across every class registered for its type) are looked up by their digests in
one statement, ordered by the person's normalised address, and read in chunks
(a server-side cursor on PostgreSQL): the cost follows the matches, never the
number of watches of the type, and memory stays flat however many match. Rows
of one address arrive together, users first, so the grouping needs only the
current address: a user wins over an anonymous watch with the same address.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist
from django.db import connections, router
from django.db.models import signals
from django.db.models.base import ModelState

from ..events import CloudEvent
from ..models import Watch
from . import keys
from .base import WatchEvent, _user_email, matching

CHUNK = 500  # rows per fetch, and people per mails() call


@dataclass
class Person:
    """One recipient of an event: a user, or an address nobody's account has."""

    key: str  # "user:<pk>" or "email:<normalised address>"
    email: str
    user: Any | None
    watches: list[Watch] = field(default_factory=list)
    classes: list[type[WatchEvent]] = field(default_factory=list)  # per watch

    @property
    def watch_class(self) -> type[WatchEvent]:
        """The class whose ``mails()`` builds this person's message."""
        return self.classes[0]

    @property
    def reasons(self) -> tuple[dict[str, Any], ...]:
        """Why this person is notified (JSON-safe, for unsubscribe links)."""
        return tuple(
            {"kind": "watch", "id": watch.pk, "class": cls.label()}
            for watch, cls in zip(self.watches, self.classes, strict=True)
        )

    def add(self, watch: Watch, cls: type[WatchEvent], rank: dict[Any, int]) -> None:
        """Add a matched watch; the first class in definition order comes first."""
        at = 0 if self.classes and rank[cls] < rank[self.classes[0]] else None
        if at is None:
            self.watches.append(watch)
            self.classes.append(cls)
        else:
            self.watches.insert(at, watch)
            self.classes.insert(at, cls)


def candidates(cloudevent: CloudEvent) -> dict[str, list[type[WatchEvent]]]:
    """{key digest: the classes, in definition order, whose watches it matches}."""
    found: dict[str, list[type[WatchEvent]]] = {}
    for cls in matching(cloudevent):
        for key in cls.candidate_keys(cloudevent):
            classes = found.setdefault(keys.digest(key), [])
            if cls not in classes:
                classes.append(cls)
    return found


@dataclass(frozen=True)
class _Shape:
    """The lookup's statement, built once per database and user model."""

    head: str  # up to the key digests' placeholders
    tail: str
    watch_fields: tuple[Any, ...]  # loaded, in concrete field order
    user_fields: tuple[Any, ...]


@functools.cache
def _shape(using: str, user_model: Any) -> _Shape:
    """SELECT the watches by digest, their users' loaded columns and the address.

    Prebuilt SQL, not a QuerySet: Django's query building cost more than the
    query itself for a few matches. The user is joined by primary key only;
    on PostgreSQL through ``LATERAL (... LIMIT 1)``, which the planner cannot
    flatten into a join, so each match's user is looked up by its key however
    the planner costs random reads (a plain join hashed the whole user table
    with the default ``random_page_cost``).
    """
    connection = connections[using]

    def qn(name: Any) -> str:
        return str(connection.ops.quote_name(str(name)))

    skipped = {"key", "secret_digest"}  # not needed, not loaded
    watch_fields = tuple(
        f for f in Watch._meta.concrete_fields if f.attname not in skipped
    )
    user_fields = tuple(
        f for f in user_model._meta.concrete_fields if f.attname != "password"
    )
    email: Any = user_model._meta.get_field(user_model.get_email_field_name())
    try:
        active = user_model._meta.get_field("is_active")
    except FieldDoesNotExist:  # a custom user model without the flag
        only_active = ""
    else:
        only_active = f" AND (w.{qn('user_id')} IS NULL OR u.{qn(active.column)})"
    pk = qn(user_model._meta.pk.column)
    user_columns = ", ".join(f"u.{qn(f.column)}" for f in user_fields)
    table = qn(user_model._meta.db_table)
    if connection.vendor == "postgresql":
        join = (
            f"LEFT JOIN LATERAL (SELECT {user_columns} FROM {table} u "
            f"WHERE u.{pk} = w.{qn('user_id')} LIMIT 1) u ON true"
        )
    else:
        join = f"LEFT JOIN {table} u ON u.{pk} = w.{qn('user_id')}"
    present = f"COALESCE(NULLIF(u.{qn(email.column)}, ''), NULLIF(w.{qn('email')}, ''))"
    columns = [f"w.{qn(f.column)}" for f in watch_fields] + [
        f"u.{qn(f.column)}" for f in user_fields
    ]
    user_id = f"w.{qn('user_id')}"
    head = (
        f"SELECT {', '.join(columns)}, LOWER(TRIM({present})) AS address "
        f"FROM {qn(Watch._meta.db_table)} w {join} "
        f"WHERE w.{qn('active')}{only_active} AND {present} IS NOT NULL "
        f"AND w.{qn('key_digest')} IN ("
    )
    tail = f") ORDER BY address, {user_id} IS NULL, {user_id}, w.{qn('id')}"
    return _Shape(head, tail, watch_fields, user_fields)


def statement(digests: Iterable[str], using: str) -> tuple[str, list[str]]:
    """The lookup's SQL and parameters for these key digests."""
    params = sorted(set(digests))
    shape = _shape(using, get_user_model())
    return shape.head + ", ".join(["%s"] * len(params)) + shape.tail, params


def _rows(
    digests: Iterable[str], using: str, chunk: int
) -> Iterator[tuple[Watch, Any, str]]:
    """(watch, its user or None, address), ordered by person, read in chunks."""
    user_model = get_user_model()
    shape = _shape(using, user_model)
    sql, params = statement(digests, using)
    connection = connections[using]
    watch_names = [f.attname for f in shape.watch_fields]
    user_names = [f.attname for f in shape.user_fields]
    split = len(watch_names)
    converting = _converters((*shape.watch_fields, *shape.user_fields), connection)
    new_watch = _loader(Watch, watch_names, using)
    new_user = _loader(user_model, user_names, using)
    cache_user = Watch._meta.get_field("user").set_cached_value
    users: dict[Any, Any] = {}
    with connection.chunked_cursor() as cursor:
        cursor.execute(sql, params)
        while batch := cursor.fetchmany(chunk):
            for row in batch:
                values = list(row)
                for i, col, functions in converting:
                    for function in functions:
                        values[i] = function(values[i], col, connection)
                watch = new_watch(values[:split])
                user = None
                if watch.user_id is not None:
                    user = users.get(watch.user_id)
                    if user is None:
                        users.clear()  # rows of one person arrive together
                        user = users[watch.user_id] = new_user(values[split:-1])
                cache_user(watch, user)
                yield watch, user, row[-1]


def _loader(model: Any, names: list[str], using: str) -> Callable[[list[Any]], Any]:
    """A function making an instance from a row of ``names`` (the rest deferred).

    ``model.from_db()``, or, for a model that no ``pre_init``/``post_init``
    receiver listens to, the same instance made without ``__init__`` (which
    would only set each value and send those signals): a sixth of the time,
    per watch of a 1,000-match lookup.
    """
    if signals.pre_init.has_listeners(model) or signals.post_init.has_listeners(model):
        return lambda values: model.from_db(using, names, values)

    def make(values: list[Any]) -> Any:
        instance = model.__new__(model)
        instance.__dict__.update(zip(names, values, strict=True))
        state = instance._state = ModelState()
        state.adding, state.db = False, using
        return instance

    return make


def _converters(fields: Iterable[Any], connection: Any) -> list[tuple[int, Any, Any]]:
    """(index, column, functions) of the columns that need converting from the
    database's value (JSON, and dates or booleans on SQLite), as a QuerySet does."""
    found = []
    for i, loaded in enumerate(fields):
        col = loaded.get_col("x")
        functions = [
            *connection.ops.get_db_converters(col),
            *col.get_db_converters(connection),
        ]
        if functions:
            found.append((i, col, functions))
    return found


def people(
    cloudevent: CloudEvent, *, chunk: int = CHUNK, using: str | None = None
) -> Iterator[Person]:
    """The people watching this event, each once, with all their matched watches."""
    found = candidates(cloudevent)
    if not found:
        return
    using = using or router.db_for_read(Watch)
    rank = {cls: i for i, cls in enumerate(matching(cloudevent))}
    rows = _rows(found, using, chunk)
    for address, group in itertools.groupby(rows, key=lambda row: row[2]):
        users: dict[int, Person] = {}
        anonymous: list[Watch] = []
        for watch, user, _ in group:
            if user is None:
                anonymous.append(watch)
                continue
            person = users.get(user.pk)
            if person is None:
                person = users[user.pk] = Person(
                    keys.owner_of(user), _user_email(user), user
                )
            person.add(watch, found[watch.key_digest][0], rank)
        if anonymous and not users:
            users[0] = Person(f"email:{address}", anonymous[0].email, None)
        # A user wins: the first one with this address also gets its watches.
        first = next(iter(users.values()), None)
        for watch in anonymous:
            assert first is not None
            first.add(watch, found[watch.key_digest][0], rank)
        yield from users.values()


def mails(
    cloudevent: CloudEvent, *, chunk: int = CHUNK
) -> Iterator[tuple[Person, Any]]:
    """(person, message) for everyone watching this event, built in chunks.

    The message is what the first class (in definition order) among those
    whose watches matched the person builds with ``mails()`` from all of that
    person's matched watches; one message per person, in the pairs' order.
    """
    received: dict[type[WatchEvent], WatchEvent] = {}
    batch = iter(people(cloudevent, chunk=chunk))
    while True:
        persons = list(itertools.islice(batch, chunk))
        if not persons:
            return
        by_class: dict[type[WatchEvent], list[Person]] = {}
        for person in persons:
            by_class.setdefault(person.watch_class, []).append(person)
        for cls, group in by_class.items():
            event = received.get(cls)
            if event is None:
                event = received[cls] = cls.received(cloudevent)
            pairs = [
                (p.user if p.user is not None else p.email, p.watches) for p in group
            ]
            built = list(event.mails(pairs))
            if len(built) != len(group):
                raise ValueError(
                    f"{cls.label()}.mails() built {len(built)} messages for "
                    f"{len(group)} recipients: it must build one per pair"
                )
            yield from zip(group, built, strict=True)
