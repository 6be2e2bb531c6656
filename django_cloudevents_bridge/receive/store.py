"""Record each received event once per (source, id), and each target's run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import F, Q
from django.utils import timezone

from .. import events
from ..events import CloudEvent
from ..models import ReceivedEvent, TargetRun
from .parse import BadEvent

MAX_KEY_BYTES = 2000


def check(event: CloudEvent) -> None:
    """Raise BadEvent if the (source, id) key does not fit the store's columns.

    A 400 the sender can dead-letter, not the database error (PostgreSQL) that
    would answer 503 and be retried for ever.
    """
    for attribute, column in (("source", "source"), ("id", "event_id")):
        limit = _max_length(column)
        if limit is not None and len(event.get_attributes()[attribute]) > limit:
            raise BadEvent(f"{attribute} longer than {limit} characters")
    # PostgreSQL's unique index on (source, id) takes at most ~2,700 bytes.
    key = event.get_source().encode("utf-8") + event.get_id().encode("utf-8")
    if len(key) > MAX_KEY_BYTES:
        raise BadEvent(f"source and id longer than {MAX_KEY_BYTES} bytes together")


def _max_length(column: str) -> int | None:
    return getattr(ReceivedEvent._meta.get_field(column), "max_length", None)


def _clip(column: str, value: str) -> str:
    """Shortened to the column (informational columns only; the event is whole)."""
    limit = _max_length(column)
    return value[:limit] if limit is not None else value


def _upserts(connection: BaseDatabaseWrapper) -> bool:
    """True where one INSERT ... ON CONFLICT ... RETURNING statement works."""
    return connection.vendor in ("postgresql", "sqlite") and bool(
        connection.features.can_return_columns_from_insert
    )


@dataclass(frozen=True)
class _Statements:
    """The hot path's SQL for one vendor, quoted and joined once, not per request."""

    insert: str  # the event, if new: RETURNING its id
    first: str  # PostgreSQL: the event and its runs at once; SQLite: one run
    again: str  # one more delivery of a stored event: RETURNING its id
    claim: str  # lock a target's run: RETURNING its status and stored reply


_statements: dict[tuple[str, int], _Statements] = {}


def _sql(connection: BaseDatabaseWrapper, targets: int) -> _Statements:
    key = (connection.vendor, targets)
    if key not in _statements:
        qn = connection.ops.quote_name
        table, runs = qn(ReceivedEvent._meta.db_table), qn(TargetRun._meta.db_table)
        source, event_id, id_ = qn("source"), qn("event_id"), qn("id")
        insert = (
            f"INSERT INTO {table} ({source}, {event_id}, {qn('type')}, "
            f"{qn('subject')}, {qn('event')}, {qn('received_at')}, "
            f"{qn('deliveries')}) VALUES (%s, %s, %s, %s, %s, %s, 1) "
            f"ON CONFLICT ({source}, {event_id}) DO NOTHING RETURNING {id_}"
        )
        columns = ", ".join(
            qn(c)
            for c in (
                "event_id",
                "target",
                "status",
                "attempts",
                "error",
                "reply",
                "updated_at",
            )
        )
        done, pending = TargetRun.Status.DONE.value, TargetRun.Status.PENDING.value
        if connection.vendor == "postgresql":
            rows = ", ".join(
                [f"(%s, '{done}', 1)"] + [f"(%s, '{pending}', 0)"] * (targets - 1)
            )
            first = (
                f"WITH new AS ({insert}, {qn('received_at')}) "
                f"INSERT INTO {runs} ({columns}) SELECT new.{id_}, run.name, "
                f"run.status, run.attempts, '', '', new.{qn('received_at')} FROM new "
                f"CROSS JOIN (VALUES {rows}) AS run(name, status, attempts) "
                f"RETURNING {event_id}"
            )
        else:
            first = (
                f"INSERT INTO {runs} ({columns}) VALUES (%s, %s, %s, %s, '', '', %s)"
            )
        _statements[key] = _Statements(
            insert=insert,
            first=first,
            again=(
                f"UPDATE {table} SET {qn('deliveries')} = {qn('deliveries')} + 1 "
                f"WHERE {source} = %s AND {event_id} = %s RETURNING {id_}"
            ),
            claim=(
                f"UPDATE {runs} SET {qn('updated_at')} = %s WHERE {event_id} = %s "
                f"AND {qn('target')} = %s RETURNING {qn('status')}, {qn('reply')}"
            ),
        )
    return _statements[key]


def _event_values(connection: BaseDatabaseWrapper, event: CloudEvent) -> list[Any]:
    return [
        event.get_source(),
        event.get_id(),
        _clip("type", event.get_type()),
        _clip("subject", event.get_subject() or ""),
        events.to_json(event).decode(),
        connection.ops.adapt_datetimefield_value(timezone.now()),
    ]


def _upsert(connection: BaseDatabaseWrapper, event: CloudEvent) -> int | None:
    """Store the event, or count one more delivery of it: its id, in 1-2 statements.

    The portable way (SELECT, then INSERT in a savepoint) takes four round trips
    on every delivery.
    """
    sql = _sql(connection, 0)
    with connection.cursor() as cursor:
        cursor.execute(sql.insert, _event_values(connection, event))
        row = cursor.fetchone()
        if row is None:  # delivered before: count this delivery too
            cursor.execute(sql.again, [event.get_source(), event.get_id()])
            row = cursor.fetchone()
    return row[0] if row else None


def record_first(event: CloudEvent, target_names: Sequence[str]) -> int | None:
    """Inside a transaction: store a new event, its first target's run as done.

    Returns the stored event's id. The caller runs that first target in the
    same transaction, so the event, its runs and the first target's work commit
    together (one durable commit, the receiver's common case) or not at all.
    Returns None, having written nothing, if the event was stored before or the
    database has no one-statement upsert: the caller then takes the general
    path (``record`` and a claim per target). A concurrent delivery of the same
    event waits on the unique key until this transaction ends.
    """
    connection = connections[ReceivedEvent.objects.db]
    if not target_names or not _upserts(connection):
        return None
    sql = _sql(connection, len(target_names))
    values = _event_values(connection, event)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":  # one statement, one round trip
            cursor.execute(sql.first, [*values, *target_names])
            row = cursor.fetchone()
        else:  # SQLite: statements are in-process calls, not round trips
            cursor.execute(sql.insert, values)
            row = cursor.fetchone()
            if row is not None:
                done, pending = TargetRun.Status.DONE, TargetRun.Status.PENDING
                cursor.executemany(
                    sql.first,
                    [
                        (row[0], name, pending if n else done, int(not n), values[5])
                        for n, name in enumerate(target_names)
                    ],
                )
    return None if row is None else row[0]


def _record_portably(event: CloudEvent) -> int:
    key = {"source": event.get_source(), "event_id": event.get_id()}
    stored = ReceivedEvent.objects.filter(**key).values_list("pk", flat=True).first()
    if stored is None:
        try:
            with transaction.atomic():
                return ReceivedEvent.objects.create(
                    **key,
                    type=_clip("type", event.get_type()),
                    subject=_clip("subject", event.get_subject() or ""),
                    event=events.to_json(event).decode(),
                ).pk
        except IntegrityError:  # a concurrent delivery of the same event won
            stored = ReceivedEvent.objects.values_list("pk", flat=True).get(**key)
    ReceivedEvent.objects.filter(pk=stored).update(deliveries=F("deliveries") + 1)
    return stored


def record(event: CloudEvent, target_names: Sequence[str]) -> int:
    """The stored event's id (stored on first delivery), with a run per target.

    One transaction, so one durable commit for both (a commit is the costly part
    of the receiver's path on PostgreSQL).
    """
    connection = connections[ReceivedEvent.objects.db]
    with transaction.atomic():
        stored = _upsert(connection, event) if _upserts(connection) else None
        if stored is None:
            stored = _record_portably(event)
        TargetRun.objects.bulk_create(
            [TargetRun(event_id=stored, target=name) for name in target_names],
            ignore_conflicts=True,
        )
    return stored


def claim(stored: int, target: str) -> tuple[bool, str]:
    """Inside a transaction: lock this target's run; (owes work?, stored reply).

    The UPDATE takes the row lock (PostgreSQL) or the write lock (SQLite) before
    the status is read, so a concurrent delivery of the same event waits here and
    then sees "done". A done run comes with the reply it returned, if any.
    """
    connection = connections[TargetRun.objects.db]
    now = timezone.now()
    if _upserts(connection):  # one statement: lock and read together
        with connection.cursor() as cursor:
            cursor.execute(
                _sql(connection, 0).claim,
                [connection.ops.adapt_datetimefield_value(now), stored, target],
            )
            row = cursor.fetchone()
    else:
        runs = TargetRun.objects.filter(event_id=stored, target=target)
        runs.update(updated_at=now)
        row = runs.values_list("status", "reply").first()
    if row is None:
        return False, ""
    status, reply = row
    return status != TargetRun.Status.DONE, reply or ""


def done(stored: int, target: str, reply: str = "") -> None:
    TargetRun.objects.filter(event_id=stored, target=target).update(
        status=TargetRun.Status.DONE,
        attempts=F("attempts") + 1,
        error="",
        reply=reply,
        updated_at=timezone.now(),
    )


def keep_reply(stored: int, target: str, reply: str) -> None:
    """Store a done run's reply (the first target of a first delivery)."""
    TargetRun.objects.filter(event_id=stored, target=target).update(reply=reply)


def settle_replies(runs: Sequence[tuple[int, str]]) -> None:
    """Forget the kept replies of these runs: they went out through the handler."""
    if not runs:
        return
    which = Q()
    for stored, target in runs:
        which |= Q(event_id=stored, target=target)
    TargetRun.objects.filter(which).update(reply="")


def fail(stored: int, target: str, error: BaseException) -> None:
    """Record a failed run, unless a concurrent delivery got it done meanwhile."""
    runs = TargetRun.objects.filter(event_id=stored, target=target)
    runs.exclude(status=TargetRun.Status.DONE).update(
        status=TargetRun.Status.FAILED,
        attempts=F("attempts") + 1,
        error=f"{type(error).__name__}: {error}"[:2000],
        updated_at=timezone.now(),
    )
