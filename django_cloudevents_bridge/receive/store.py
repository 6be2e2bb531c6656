"""Record each received event once per (source, id), and each target's run."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import IntegrityError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import F
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


def _upsert(connection: BaseDatabaseWrapper, event: CloudEvent) -> int | None:
    """Store the event, or count one more delivery of it: its id, in 1-2 statements.

    The portable way (SELECT, then INSERT in a savepoint) takes four round trips
    on every delivery; this is the receiver's hot path.
    """
    qn = connection.ops.quote_name
    table = qn(ReceivedEvent._meta.db_table)
    source, event_id = event.get_source(), event.get_id()
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({qn('source')}, {qn('event_id')}, {qn('type')}, "
            f"{qn('subject')}, {qn('event')}, {qn('received_at')}, "
            f"{qn('deliveries')}) VALUES (%s, %s, %s, %s, %s, %s, 1) "
            f"ON CONFLICT ({qn('source')}, {qn('event_id')}) DO NOTHING "
            f"RETURNING {qn('id')}",
            [
                source,
                event_id,
                _clip("type", event.get_type()),
                _clip("subject", event.get_subject() or ""),
                events.to_json(event).decode(),
                connection.ops.adapt_datetimefield_value(timezone.now()),
            ],
        )
        row = cursor.fetchone()
        if row is None:  # delivered before: count this delivery too
            cursor.execute(
                f"UPDATE {table} SET {qn('deliveries')} = {qn('deliveries')} + 1 "
                f"WHERE {qn('source')} = %s AND {qn('event_id')} = %s "
                f"RETURNING {qn('id')}",
                [source, event_id],
            )
            row = cursor.fetchone()
    return row[0] if row else None


def _record_portably(event: CloudEvent) -> ReceivedEvent:
    key = {"source": event.get_source(), "event_id": event.get_id()}
    stored = ReceivedEvent.objects.filter(**key).first()
    if stored is None:
        try:
            with transaction.atomic():
                return ReceivedEvent.objects.create(
                    **key,
                    type=_clip("type", event.get_type()),
                    subject=_clip("subject", event.get_subject() or ""),
                    event=events.to_json(event).decode(),
                )
        except IntegrityError:  # a concurrent delivery of the same event won
            stored = ReceivedEvent.objects.get(**key)
    _count_delivery(stored)
    return stored


def _count_delivery(stored: ReceivedEvent) -> None:
    ReceivedEvent.objects.filter(pk=stored.pk).update(deliveries=F("deliveries") + 1)


def record(event: CloudEvent, target_names: Sequence[str]) -> ReceivedEvent:
    """The stored event (created on first delivery) with a run row per target.

    One transaction, so one durable commit for both (a commit is the costly part
    of the receiver's path on PostgreSQL).
    """
    connection = connections[ReceivedEvent.objects.db]
    with transaction.atomic():
        stored_id = _upsert(connection, event) if _upserts(connection) else None
        if stored_id is not None:
            stored = ReceivedEvent(pk=stored_id)
        else:
            stored = _record_portably(event)
        TargetRun.objects.bulk_create(
            [TargetRun(event=stored, target=name) for name in target_names],
            ignore_conflicts=True,
        )
    return stored


def claim(stored: ReceivedEvent, target: str) -> bool:
    """Inside a transaction: lock this target's run; True if it still owes work.

    The UPDATE takes the row lock (PostgreSQL) or the write lock (SQLite) before
    the status is read, so a concurrent delivery of the same event waits here and
    then sees "done".
    """
    connection = connections[TargetRun.objects.db]
    now = timezone.now()
    if _upserts(connection):  # one statement: lock and read together
        qn = connection.ops.quote_name
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {qn(TargetRun._meta.db_table)} SET {qn('updated_at')} = %s "
                f"WHERE {qn('event_id')} = %s AND {qn('target')} = %s "
                f"RETURNING {qn('status')}",
                [connection.ops.adapt_datetimefield_value(now), stored.pk, target],
            )
            row = cursor.fetchone()
        return row is not None and row[0] != TargetRun.Status.DONE
    runs = TargetRun.objects.filter(event=stored, target=target)
    runs.update(updated_at=now)
    return runs.exclude(status=TargetRun.Status.DONE).exists()


def done(stored: ReceivedEvent, target: str) -> None:
    TargetRun.objects.filter(event=stored, target=target).update(
        status=TargetRun.Status.DONE,
        attempts=F("attempts") + 1,
        error="",
        updated_at=timezone.now(),
    )


def fail(stored: ReceivedEvent, target: str, error: BaseException) -> None:
    TargetRun.objects.filter(event=stored, target=target).update(
        status=TargetRun.Status.FAILED,
        attempts=F("attempts") + 1,
        error=f"{type(error).__name__}: {error}"[:2000],
        updated_at=timezone.now(),
    )
