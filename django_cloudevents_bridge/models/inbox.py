"""Received events, stored once per (source, id), and each dispatch target's run.

The exactly-once bookkeeping is here, as QuerySet methods: ``ReceivedEvent``'s
``record``/``record_first`` store an event (once) with a run per target, and
``TargetRun``'s ``claim``, ``done`` and ``fail`` are a target's run around its
work (receive/dispatch.py). The hot path's SQL is built in ``_inbox_sql``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, connections, models, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Exists, F, OuterRef, Q, Subquery
from django.utils import timezone

from .. import conf
from ..bindings import jsonformat
from ..events import CloudEvent
from ..redact import redact
from ._inbox_sql import statements, upserts


def max_length(column: str) -> int | None:
    """The length limit of a ReceivedEvent column (None: unlimited)."""
    return getattr(ReceivedEvent._meta.get_field(column), "max_length", None)


def _clip(column: str, value: str) -> str:
    """Shortened to the column (informational columns only; the event is whole)."""
    limit = max_length(column)
    return value[:limit] if limit is not None else value


def ordering_key(event: CloudEvent) -> str:
    """The event's ordering key as stored: "" unless ``ORDERING`` is on.

    The ``partitionkey`` extension, else the ``subject``, scoped by the
    ``source`` (a subject is relative to its source), hashed to a fixed length
    (an index entry of any size); "" when the event has neither.
    """
    if not conf.receiver()["ORDERING"]:
        return ""
    key = event.get_extension("partitionkey") or event.get_subject()
    if key is None or key == "":
        return ""
    scoped = f"{event.get_source()}\n{key}".encode("utf-8", "surrogatepass")
    return hashlib.sha256(scoped).hexdigest()


def _event_values(connection: BaseDatabaseWrapper, event: CloudEvent) -> list[Any]:
    return [
        event.get_source(),
        event.get_id(),
        _clip("type", event.get_type()),
        _clip("subject", event.get_subject() or ""),
        jsonformat.to_json(event).decode(),
        connection.ops.adapt_datetimefield_value(timezone.now()),
        ordering_key(event),
    ]


class ReceivedEventQuerySet(models.QuerySet["ReceivedEvent"]):
    def record(self, event: CloudEvent, target_names: Sequence[str]) -> int:
        """The stored event's id (stored on first delivery), with a run per target.

        One transaction, so one durable commit for both (a commit is the costly
        part of the receiver's path on PostgreSQL).
        """
        connection = connections[self.db]
        with transaction.atomic():
            stored = self._upsert(connection, event) if upserts(connection) else None
            if stored is None:
                stored = self._record_portably(event)
            TargetRun.objects.bulk_create(
                [TargetRun(event_id=stored, target=name) for name in target_names],
                ignore_conflicts=True,
            )
        return stored

    def record_first(
        self, event: CloudEvent, target_names: Sequence[str]
    ) -> int | None:
        """Inside a transaction: store a new event, its first target's run as done.

        Returns the stored event's id. The caller runs that first target in the
        same transaction, so the event, its runs and the first target's work
        commit together (one durable commit, the receiver's common case) or not
        at all. Returns None, having written nothing, if the event was stored
        before or the database has no one-statement upsert: the caller then takes
        the general path (``record`` and a claim per target). A concurrent
        delivery of the same event waits on the unique key until this
        transaction ends.
        """
        connection = connections[self.db]
        if not target_names or not upserts(connection):
            return None
        sql = statements(connection, len(target_names))
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
                            (
                                row[0],
                                name,
                                pending if n else done,
                                int(not n),
                                values[5],
                            )
                            for n, name in enumerate(target_names)
                        ],
                    )
        return None if row is None else row[0]

    def store_deferred(
        self, event: CloudEvent, target_names: Sequence[str]
    ) -> int | None:
        """Deferred mode: store a new event with its runs due now; its id.

        A duplicate counts one more delivery and returns None (nothing to
        enqueue), unless it revives runs an inline delivery left failed (the
        sender's retry after a switch to deferred mode): then the event's id.
        """
        connection = connections[self.db]
        if connection.vendor == "postgresql" and target_names and upserts(connection):
            # One statement (atomic on its own): the event and its runs.
            both = statements(connection, len(target_names)).deferred
            with connection.cursor() as cursor:
                cursor.execute(both, [*_event_values(connection, event), *target_names])
                row = cursor.fetchone()
            if row is not None:
                return int(row[0])
        now = timezone.now()
        with transaction.atomic():
            if upserts(connection):
                with connection.cursor() as cursor:
                    sql = statements(connection, 0)
                    cursor.execute(sql.insert, _event_values(connection, event))
                    row = cursor.fetchone()
                stored = None if row is None else row[0]
            else:
                key = {"source": event.get_source(), "event_id": event.get_id()}
                stored = (
                    None
                    if self.filter(**key).exists()
                    else self._record_portably(event)
                )
            if stored is not None:
                TargetRun.objects.bulk_create(
                    [
                        TargetRun(event_id=stored, target=name, next_attempt_at=now)
                        for name in target_names
                    ]
                )
                return stored
            key = {"source": event.get_source(), "event_id": event.get_id()}
            self.filter(**key).update(deliveries=F("deliveries") + 1)
            revived = TargetRun.objects.filter(
                event__source=key["source"],
                event__event_id=key["event_id"],
                next_attempt_at__isnull=True,
            ).exclude(status=TargetRun.Status.DONE)
            if revived.update(next_attempt_at=now):
                return self.values_list("pk", flat=True).get(**key)
        return None

    def next_of_key(self, stored: int) -> int | None:
        """The next event of this one's ordering key that owes deferred work."""
        key = self.filter(pk=stored).values("ordering_key")[:1]  # one row (Django 6)
        return (
            self.filter(
                ordering_key=Subquery(key),
                id__gt=stored,
                targets__status__in=DUE,
                targets__next_attempt_at__isnull=False,
            )
            .exclude(ordering_key="")
            .order_by("id")
            .values_list("id", flat=True)
            .first()
        )

    def _upsert(self, connection: BaseDatabaseWrapper, event: CloudEvent) -> int | None:
        """Store the event, or count one more delivery of it: its id, in 1-2 statements.

        The portable way (SELECT, then INSERT in a savepoint) takes four round
        trips on every delivery.
        """
        sql = statements(connection, 0)
        with connection.cursor() as cursor:
            cursor.execute(sql.insert, _event_values(connection, event))
            row = cursor.fetchone()
            if row is None:  # delivered before: count this delivery too
                cursor.execute(sql.again, [event.get_source(), event.get_id()])
                row = cursor.fetchone()
        return row[0] if row else None

    def _record_portably(self, event: CloudEvent) -> int:
        key = {"source": event.get_source(), "event_id": event.get_id()}
        stored = self.filter(**key).values_list("pk", flat=True).first()
        if stored is None:
            try:
                with transaction.atomic():
                    return self.create(
                        **key,
                        type=_clip("type", event.get_type()),
                        subject=_clip("subject", event.get_subject() or ""),
                        event=jsonformat.to_json(event).decode(),
                        ordering_key=ordering_key(event),
                    ).pk
            except IntegrityError:  # a concurrent delivery of the same event won
                stored = self.values_list("pk", flat=True).get(**key)
        self.filter(pk=stored).update(deliveries=F("deliveries") + 1)
        return stored


DUE = ("pending", "failed")  # with a next attempt time: the worker's to run
# A started run's error until its outcome is recorded: what a dead worker leaves.
NO_OUTCOME = (
    "no outcome recorded: the attempt is running, or its worker died (killed, "
    "crashed) before the end"
)


def _earlier_unfinished() -> Exists:
    """A run's event has an earlier event of its key that still owes deferred work."""
    return Exists(
        TargetRun.objects.filter(
            event__ordering_key=OuterRef("event__ordering_key"),
            event_id__lt=OuterRef("event_id"),
            status__in=DUE,
            next_attempt_at__isnull=False,
        )
    )


class TargetRunQuerySet(models.QuerySet["TargetRun"]):
    def claim(self, stored: int, target: str) -> tuple[bool, str]:
        """Inside a transaction: lock this target's run; (owes work?, stored reply).

        The UPDATE takes the row lock (PostgreSQL) or the write lock (SQLite)
        before the status is read, so a concurrent delivery of the same event
        waits here and then sees "done". A done run comes with the reply it
        returned, if any.
        """
        connection = connections[self.db]
        now = timezone.now()
        if upserts(connection):  # one statement: lock and read together
            with connection.cursor() as cursor:
                cursor.execute(
                    statements(connection, 0).claim,
                    [connection.ops.adapt_datetimefield_value(now), stored, target],
                )
                row = cursor.fetchone()
        else:
            runs = self.filter(event_id=stored, target=target)
            runs.update(updated_at=now)
            row = runs.values_list("status", "reply").first()
        if row is None:
            return False, ""
        status, reply = row
        return status != TargetRun.Status.DONE, reply or ""

    def done(self, stored: int, target: str, reply: str = "") -> None:
        """Record a target's run as done, with the reply it returned (if kept)."""
        connection = connections[self.db]
        if upserts(connection):  # prebuilt SQL: no ORM compilation per run
            now = connection.ops.adapt_datetimefield_value(timezone.now())
            with connection.cursor() as cursor:
                cursor.execute(
                    statements(connection, 0).done, [reply, now, stored, target]
                )
            return
        self.filter(event_id=stored, target=target).update(
            status=TargetRun.Status.DONE,
            attempts=F("attempts") + 1,
            error="",
            reply=reply,
            updated_at=timezone.now(),
        )

    def fail(self, stored: int, target: str, error: BaseException) -> None:
        """Record a failed run, unless a concurrent delivery got it done meanwhile."""
        runs = self.filter(event_id=stored, target=target)
        runs.exclude(status=TargetRun.Status.DONE).update(
            status=TargetRun.Status.FAILED,
            attempts=F("attempts") + 1,
            error=redact(f"{type(error).__name__}: {error}")[:2000],
            updated_at=timezone.now(),
        )

    def start(
        self,
        now: datetime,
        events: Sequence[int] | None = None,
        *,
        ordered: bool = False,
        backoff: tuple[float, float] = (1.0, 600.0),
    ) -> TargetRun | None:
        """Claim the next deferred run that is due, counting its attempt; or None.

        The attempt is counted (and committed) before the target runs, and the run
        is due again ``backoff`` later: a worker that dies inside the target (a
        SIGKILL, a segfault) has still used up an attempt, so a target that kills
        its worker every time is parked after ``MAX_ATTEMPTS`` instead of being
        retried for ever. Its run's ``error`` says so until an outcome replaces it.
        ``ordered``: only the runs of events whose key has no earlier unfinished
        event (``CLOUDEVENTS_RECEIVER["ORDERING"]``). Not in a transaction: the
        caller then takes the run with ``hold()`` in the target's transaction.
        """
        connection = connections[self.db]
        if connection.vendor == "postgresql":  # one statement, no ORM on the way
            return self._start_postgresql(connection, now, events, ordered, backoff)
        due = self.filter(status__in=DUE, next_attempt_at__lte=now)
        if events is not None:
            due = due.filter(event_id__in=events)
        if ordered:
            due = due.filter(Q(event__ordering_key="") | ~_earlier_unfinished())
        first, cap = backoff
        while True:
            run = due.select_related("event").order_by("next_attempt_at", "id").first()
            if run is None:
                return None
            delay = min(first * 2 ** min(run.attempts, 32), cap)
            # Guarded by the attempts seen: two workers never count the same one.
            if self.filter(pk=run.pk, attempts=run.attempts, status__in=DUE).update(
                attempts=F("attempts") + 1,
                next_attempt_at=now + timedelta(seconds=delay),
                error=NO_OUTCOME,
                updated_at=now,
            ):
                run.attempts += 1
                return run

    def _start_postgresql(
        self,
        connection: BaseDatabaseWrapper,
        now: datetime,
        events: Any,
        ordered: bool,
        backoff: tuple[float, float],
    ) -> TargetRun | None:
        qn = connection.ops.quote_name
        runs = qn(TargetRun._meta.db_table)
        table = qn(ReceivedEvent._meta.db_table)
        which = "" if events is None else " AND d.event_id = ANY(%s)"
        if ordered:  # no earlier event of the same key still owes a deferred run
            which += (
                f" AND NOT EXISTS (SELECT 1 FROM {table} k JOIN {table} p ON "
                f"p.ordering_key = k.ordering_key AND p.id < k.id JOIN {runs} b "
                f"ON b.event_id = p.id WHERE k.id = d.event_id AND "
                f"k.ordering_key <> '' AND b.status = ANY(%s) AND "
                f"b.next_attempt_at IS NOT NULL)"
            )
        sql = (
            f"WITH due AS (SELECT d.id FROM {runs} d WHERE d.status = ANY(%s) AND "
            f"d.next_attempt_at <= %s{which} ORDER BY d.next_attempt_at, d.id "
            f"LIMIT 1 FOR UPDATE OF d SKIP LOCKED) UPDATE {runs} r SET attempts = "
            f"r.attempts + 1, next_attempt_at = %s::timestamptz + LEAST(%s::float8 "
            f"* power(2::float8, LEAST(r.attempts, 32)), %s::float8) * interval "
            f"'1 second', error = %s, updated_at = %s FROM due, {table} e WHERE "
            f"r.id = due.id AND e.id = r.event_id RETURNING r.id, r.event_id, "
            f"r.target, r.attempts, e.event_id, e.type, e.event"
        )
        params: list[Any] = [list(DUE), now]
        if events is not None:
            params.append(list(events))
        if ordered:
            params.append(list(DUE))
        params += [now, *backoff, NO_OUTCOME, now]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
        if row is None:
            return None
        run = TargetRun(id=row[0], event_id=row[1], target=row[2], attempts=row[3])
        run.event = ReceivedEvent(id=row[1], event_id=row[4], type=row[5], event=row[6])
        return run

    def hold(self, run: TargetRun) -> bool:
        """In the target's transaction: lock a started run; False if it is not ours.

        It is not if its attempt was counted again meanwhile (taken over when due
        again) or it got done (``cloudevents_replay``). The lock (PostgreSQL: the
        row; SQLite: the database) lasts until the target's work commits.
        """
        return bool(
            self.filter(pk=run.pk, attempts=run.attempts, status__in=DUE).update(
                updated_at=timezone.now()
            )
        )

    def finish(self, run: TargetRun, reply: str = "") -> None:
        """In the target's transaction: a started run is done (its attempt counted)."""
        self.filter(pk=run.pk).update(
            status=TargetRun.Status.DONE,
            error="",
            reply=reply,
            next_attempt_at=None,
            updated_at=timezone.now(),
        )

    def schedule(self, stored: int, targets: Sequence[str]) -> int:
        """Make these runs due for the worker, unless it has them already."""
        runs = self.filter(event_id=stored, target__in=targets)
        return (
            runs.filter(next_attempt_at__isnull=True)
            .exclude(status=TargetRun.Status.DONE)
            .update(next_attempt_at=timezone.now())
        )

    def retry(
        self,
        run: TargetRun,
        error: BaseException,
        status: str,
        at: datetime | None,
        attempts: int,
    ) -> None:
        """Record a started run's failure: due again ``at``, or parked/rejected."""
        self.filter(pk=run.pk, attempts=run.attempts, status__in=DUE).update(
            status=status,
            attempts=attempts,
            error=redact(f"{type(error).__name__}: {error}")[:2000],
            next_attempt_at=at,
            updated_at=timezone.now(),
        )

    def keep_reply(self, stored: int, target: str, reply: str) -> None:
        """Store a done run's reply (the first target of a first delivery)."""
        self.filter(event_id=stored, target=target).update(reply=reply)

    def settle_replies(self, runs: Sequence[tuple[int, str]]) -> None:
        """Forget the kept replies of these runs: they went out through the handler."""
        if not runs:
            return
        which = Q()
        for stored, target in runs:
            which |= Q(event_id=stored, target=target)
        self.filter(which).update(reply="")


class ReceivedEvent(models.Model):
    """A CloudEvent the receiver accepted, stored once per (source, id)."""

    source = models.CharField(max_length=1024)
    event_id = models.CharField("event id", max_length=255)
    type = models.CharField(max_length=255)
    subject = models.CharField(max_length=1024, blank=True)
    # The event in the JSON event format (data_base64 for binary data).
    event = models.TextField()
    received_at = models.DateTimeField(default=timezone.now)
    deliveries = models.PositiveIntegerField(
        default=1, help_text="How many times it was delivered to us."
    )
    # CLOUDEVENTS_RECEIVER["ORDERING"]: a hash of the source and the
    # partitionkey (else the subject); "" when off or when the event has neither.
    ordering_key = models.CharField(max_length=64, blank=True, default="")

    objects = ReceivedEventQuerySet.as_manager()

    class Meta:
        verbose_name = "received event"
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["source", "event_id"], name="dce_received_source_id"
            )
        ]
        indexes = [
            models.Index(fields=["type", "received_at"], name="dce_received_type"),
            models.Index(
                fields=["ordering_key", "id"],
                name="dce_received_key",
                condition=~Q(ordering_key=""),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}"


class TargetRun(models.Model):
    """One dispatch target's work for one received event: done, or failed."""

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        DONE = "done", "done"
        FAILED = "failed", "failed"
        # Deferred mode only (work.py): no more attempts, after MAX_ATTEMPTS
        # failures, or at once for a ValidationError (a retry cannot help).
        PARKED = "parked", "parked"
        REJECTED = "rejected", "rejected"

    event = models.ForeignKey(
        ReceivedEvent, on_delete=models.CASCADE, related_name="targets"
    )
    target = models.CharField(max_length=255)
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    # The reply event the target returned (JSON event format): a redelivery,
    # which skips the done target, answers with it again instead of losing it.
    reply = models.TextField(blank=True)
    updated_at = models.DateTimeField(default=timezone.now)
    # Deferred mode (work.py): when the worker may run it (again). Null for the
    # runs of inline mode, which the sender's redeliveries retry instead.
    next_attempt_at = models.DateTimeField(null=True, blank=True)

    objects = TargetRunQuerySet.as_manager()

    class Meta:
        verbose_name = "dispatch target run"
        constraints = [
            models.UniqueConstraint(fields=["event", "target"], name="dce_target_once")
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="dce_target_due",
                condition=Q(status__in=["pending", "failed"])
                & Q(next_attempt_at__isnull=False),
            )
        ]

    def __str__(self) -> str:
        return f"{self.target}: {self.status}"
