"""Drain OutboxEvent rows through the real handler: claim, send, record.

Claims are leases: a row is taken by one relay (``locked_by``) until
``locked_until``; a relay that dies leaves its rows to be reclaimed when the lease
runs out. On PostgreSQL the claim skips rows another relay is claiming
(``FOR UPDATE SKIP LOCKED``); everywhere, the conditional UPDATE that takes a
row makes the claim exclusive. No lock is held while sending.

Per-subject order: a row is sent only when every earlier pending row with the same
``subject`` is sent first (in the same claim, in order) - a later change of an
object never overtakes an earlier one that is waiting for a retry. A parked row
no longer blocks.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import socket
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, timedelta
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models import F, Q, QuerySet
from django.dispatch import Signal
from django.utils import timezone

from .. import conf, events, signals
from ..exceptions import DeliveryError
from ..models import OutboxEvent
from .handlers import BaseHandler

logger = logging.getLogger("django_cloudevents_bridge")

Status = OutboxEvent.Status
CHUNK = 10  # rows sent between two checks that the lease still holds
HEARTBEAT = 1.0  # at most this many seconds between recording finished groups


@dataclass
class Result:
    """What one round did."""

    claimed: int = 0
    delivered: int = 0
    failed: int = 0
    parked: int = 0

    def __iadd__(self, other: Result) -> Result:
        self.claimed += other.claimed
        self.delivered += other.delivered
        self.failed += other.failed
        self.parked += other.parked
        return self


@dataclass
class Outcome:
    """How sending one group of rows went."""

    sent: list[OutboxEvent]
    failed: list[OutboxEvent] = field(default_factory=list)
    error: DeliveryError | None = None
    untried: list[OutboxEvent] = field(default_factory=list)


@dataclass
class Relay:
    """Delivers due outbox rows through ``handler``; see the module docstring."""

    handler: BaseHandler
    using: str = DEFAULT_DB_ALIAS
    options: dict[str, Any] = field(default_factory=conf.outbox)
    name: str = field(
        default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}"[:60]
    )
    # Send threads that do not hold up the interpreter's exit (the background
    # sender's, whose process may be a script that is ending): the executor's
    # threads are joined at exit, before any atexit handler runs.
    daemon: bool = False
    _pool: ThreadPoolExecutor | None = field(default=None, init=False, repr=False)
    # Signals held back until the transaction recording them commits (serial drain).
    _unsignalled: list[tuple[Signal, OutboxEvent]] | None = field(
        default=None, init=False, repr=False
    )

    def run_once(self, ids: Iterable[int] | None = None) -> Result:
        """Claim one batch of due rows (or only ``ids``), send them, record results."""
        rows = self.claim(ids)
        result = Result(claimed=len(rows))
        if rows:
            result += self.send(rows)
        return result

    def drain(
        self, stop: threading.Event | None = None, until: float | None = None
    ) -> Result:
        """Run rounds until nothing is due; return the totals.

        Stops early, finishing the batch in hand, once ``stop`` is set or the
        monotonic clock passes ``until``. Where the database takes writes from
        several connections at once (not SQLite) and no transaction is open,
        the next batch is claimed while the last one is sent and recorded in a
        helper thread (with a connection of its own): a batched-mode relay
        otherwise waits on the database most of the time. Subject order holds,
        since a claim skips a subject whose earlier row is still leased.
        """
        connection = connections[self.using]
        if connection.vendor == "sqlite" or connection.in_atomic_block:
            return self._drain_serially(stop, until)
        total = Result()
        helper: ThreadPoolExecutor | None = None
        in_hand: Future[Result] | None = None
        rows: list[OutboxEvent] = []
        try:
            while True:
                if _stopping(stop, until):
                    rows = []
                else:
                    rows = self.claim()
                    claimed_at = time.monotonic()
                if in_hand is not None:
                    total += in_hand.result()
                    in_hand = None
                    if not rows:
                        # Claimed while a batch was in flight, whose subjects it
                        # had to skip: only a claim with nothing out ends it.
                        continue
                if not rows:
                    return total
                total += Result(claimed=len(rows))
                if time.monotonic() - claimed_at > self._tick():
                    self._renew(rows)  # it waited for the last batch to finish
                if helper is None:
                    helper = ThreadPoolExecutor(1, thread_name_prefix="dce-relay")
                in_hand = helper.submit(self.send, rows)
                rows = []
        finally:
            if in_hand is not None:  # claiming failed: finish what is in hand
                with contextlib.suppress(Exception):
                    total += in_hand.result()
            if rows:  # claimed, never sent: give them back now, not at lease end
                with contextlib.suppress(Exception):
                    self._release(rows)
            if helper is not None:
                helper.submit(connections.close_all).result()  # the helper's own
                helper.shutdown()

    def _tick(self) -> float:
        """Seconds between lease checks while rows are out (the heartbeat)."""
        return float(min(self.options["LEASE"] / 3, HEARTBEAT))

    def _drain_serially(
        self, stop: threading.Event | None, until: float | None
    ) -> Result:
        """One batch at a time, each batch's last results recorded in the
        transaction that claims the next: one commit between two batches, not two
        (on SQLite, a commit is several fsyncs). Signals go out once that
        transaction ends (inside the caller's own transaction, it is a savepoint).
        """
        total = Result()
        last: list[Outcome] = []
        saved: list[tuple[OutboxEvent, tuple[Any, ...]]] = []
        try:
            while True:
                stopping = _stopping(stop, until)
                self._unsignalled = []
                # Recording changes the rows; if this rolls back, ``last`` is
                # recorded again below, from what the rows were.
                saved = _snapshot(last)
                with transaction.atomic(using=self.using):
                    self._record(last, total)
                    rows = [] if stopping else self.claim()
                last = []
                self._signal()
                if not rows:
                    return total
                total.claimed += len(rows)
                last = self._send(rows, total)
        finally:
            self._unsignalled = None  # what a rolled-back record would have said
            if last:  # recording (or claiming) failed: record what did go out
                _restore(saved)
                with contextlib.suppress(Exception):  # the first error is raised
                    self._record(last, total)

    def claim(self, ids: Iterable[int] | None = None) -> list[OutboxEvent]:
        """Take up to BATCH_SIZE due rows for this relay, respecting subject order."""
        token = f"{self.name}:{uuid.uuid4().hex[:12]}"
        connection = connections[self.using]
        if connection.vendor in ("postgresql", "sqlite") and (
            connection.features.can_return_columns_from_insert  # and from UPDATE
        ):
            return self._claim_in_one_statement(token, ids)
        chosen = self._claim_portably(token, ids)
        if not chosen:
            return []
        rows = OutboxEvent.objects.using(self.using)
        return list(rows.filter(pk__in=chosen, locked_by=token).order_by("pk"))

    def _claim_in_one_statement(
        self, token: str, ids: Iterable[int] | None
    ) -> list[OutboxEvent]:
        """The claim as one UPDATE ... RETURNING the rows (one round trip).

        The candidates are the first BATCH_SIZE due rows, minus (on PostgreSQL)
        rows another relay is claiming right now (SKIP LOCKED); a candidate is
        taken only if every earlier pending row of its subject is a candidate
        too, which is ``in_subject_order`` said in SQL.
        """
        wanted = None if ids is None else list(ids)
        if wanted == []:
            return []
        connection = connections[self.using]
        qn = connection.ops.quote_name
        table, pk, subject = qn(OutboxEvent._meta.db_table), qn("id"), qn("subject")
        status, locked_until = qn("status"), qn("locked_until")
        now = timezone.now()
        until = now + timedelta(seconds=self.options["LEASE"])
        adapt = connection.ops.adapt_datetimefield_value
        pending = Status.PENDING.value
        only = f" AND {pk} IN ({', '.join(['%s'] * len(wanted))})" if wanted else ""
        skip = (
            " FOR UPDATE SKIP LOCKED"
            if connection.features.has_select_for_update_skip_locked
            else ""
        )
        due = (
            f"{status} = '{pending}' AND {qn('next_attempt_at')} <= %s "
            f"AND ({locked_until} IS NULL OR {locked_until} < %s)"
        )
        sql = (
            f"WITH candidate AS MATERIALIZED (SELECT {pk}, {subject} FROM {table} "
            f"WHERE {due}"
            f"{only} ORDER BY {pk} LIMIT %s{skip}), "
            f"chosen AS (SELECT c.{pk} FROM candidate c WHERE c.{subject} = '' "
            f"OR NOT EXISTS (SELECT 1 FROM {table} e WHERE e.{subject} = c.{subject} "
            f"AND e.{status} = '{pending}' AND e.{pk} < c.{pk} "
            f"AND e.{pk} NOT IN (SELECT {pk} FROM candidate))) "
            f"UPDATE {table} SET {qn('locked_by')} = %s, {locked_until} = %s "
            f"WHERE {pk} IN (SELECT {pk} FROM chosen) AND {due} "
            f"RETURNING {', '.join(qn(str(f.column)) for f in _FIELDS)}"
        )
        params = [
            adapt(now),
            adapt(now),
            *(wanted or ()),
            self.options["BATCH_SIZE"],
            token,
            adapt(until),
            adapt(now),
            adapt(now),
        ]
        with connection.cursor() as cursor:
            _load_timestamps_natively(connection, cursor)
            cursor.execute(sql, params)
            found = cursor.fetchall()
        return sorted(_rows(self.using, found), key=lambda row: row.pk)

    def _claim_portably(self, token: str, ids: Iterable[int] | None) -> list[int]:
        """In a transaction: SELECT (FOR UPDATE), then a conditional UPDATE."""
        now = timezone.now()
        rows = OutboxEvent.objects.using(self.using)
        due = rows.filter(status=Status.PENDING, next_attempt_at__lte=now).filter(
            Q(locked_until__isnull=True) | Q(locked_until__lt=now)
        )
        if ids is not None:
            due = due.filter(pk__in=list(ids))
        with transaction.atomic(using=self.using):
            candidates = due.order_by("pk")
            if connections[self.using].features.has_select_for_update_skip_locked:
                candidates = candidates.select_for_update(skip_locked=True)
            found = list(
                candidates.values_list("pk", "subject")[: self.options["BATCH_SIZE"]]
            )
            chosen = in_subject_order(found, self._pending_before(found))
            if chosen:
                # Conditional: a row another relay took meanwhile is not taken twice.
                due.filter(pk__in=chosen).update(
                    locked_by=token,
                    locked_until=now + timedelta(seconds=self.options["LEASE"]),
                )
        return chosen

    def _pending_before(self, found: list[tuple[int, str]]) -> dict[str, list[int]]:
        """For each subject in ``found``, the pending row ids before its last row."""
        last: dict[str, int] = {}
        for pk, subject in found:
            if subject:
                last[subject] = pk
        if not last:
            return {}
        earlier = (
            OutboxEvent.objects.using(self.using)
            .filter(
                status=Status.PENDING, subject__in=list(last), pk__lt=max(last.values())
            )
            .values_list("pk", "subject")
        )
        pending: dict[str, list[int]] = defaultdict(list)
        for pk, subject in earlier:
            pending[subject].append(pk)
        return pending

    def send(self, rows: Sequence[OutboxEvent]) -> Result:
        """Send claimed rows and record how it went; see ``_send``."""
        result = Result()
        self._record(self._send(rows, result), result)
        return result

    def _send(self, rows: Sequence[OutboxEvent], result: Result) -> list[Outcome]:
        """Send claimed rows: subjects in parallel, each subject's rows in order.

        Up to CONCURRENCY worker threads take the subjects' groups of rows one
        after the other and only send. This thread wakes every second (or third of
        the lease) while groups are sending: it records the groups that finished,
        in one UPDATE, and renews the lease of the others (a heartbeat), so a slow
        sink never hands rows that are still being sent to another relay. The
        groups that finish last are returned, not recorded: the caller records
        them.
        """
        by_subject: dict[Any, list[OutboxEvent]] = defaultdict(list)
        for row in rows:
            by_subject[row.subject or ("row", row.pk)].append(row)
        if getattr(self.handler, "batch", False):
            groups = [list(rows)]
        else:
            groups = list(by_subject.values())
        todo = deque(enumerate(groups))
        finished: list[tuple[int, Outcome]] = []  # appended to by the workers
        running = set()
        for _ in range(min(self.options["CONCURRENCY"], len(groups))):
            try:
                running.add(self._start(self._send_groups, todo, finished))
            except RuntimeError:
                # The interpreter is exiting (a script's last save, sent by the
                # background sender at exit): no new threads, so this one sends.
                self._send_groups(todo, finished)
                break
        recorded = 0
        tick = self._tick()
        while True:
            done, running = wait(running, timeout=tick)
            for future in done:
                future.result()  # a worker's own error (not a send's) is raised
            outcomes = [outcome for _, outcome in finished[recorded:]]
            recorded += len(outcomes)
            if not running:
                return outcomes
            self._record(outcomes, result)
            over = {index for index, _ in finished[:recorded]}
            out = [row for i, g in enumerate(groups) if i not in over for row in g]
            if out:  # empty when the last worker has finished but not yet returned
                self._renew(out)

    def _send_groups(
        self,
        todo: deque[tuple[int, list[OutboxEvent]]],
        finished: list[tuple[int, Outcome]],
    ) -> None:
        """A worker: send groups from ``todo`` until none is left."""
        while True:
            try:
                index, group = todo.popleft()  # atomic: each group to one worker
            except IndexError:
                return
            finished.append((index, self._send_group(group)))

    def _record(self, outcomes: list[Outcome], result: Result) -> None:
        """Record finished groups: one UPDATE for all their delivered rows."""
        delivered = [row for outcome in outcomes for row in outcome.sent]
        self._mark_delivered(delivered)
        result.delivered += len(delivered)
        for outcome in outcomes:
            for row in outcome.failed:
                assert outcome.error is not None
                result.failed += 1
                result.parked += int(self._mark_failed(row, outcome.error))
            self._release(outcome.untried)

    def _start(self, work: Callable[..., None], *args: Any) -> Future[None]:
        """Run ``work`` in a send thread: the executor's, or a daemon thread."""
        if not self.daemon:
            return self._executor().submit(work, *args)
        future: Future[None] = Future()

        def run() -> None:
            if future.set_running_or_notify_cancel():
                try:
                    work(*args)
                except BaseException as err:
                    future.set_exception(err)
                else:
                    future.set_result(None)

        threading.Thread(target=run, name="dce-relay", daemon=True).start()
        return future

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                self.options["CONCURRENCY"], thread_name_prefix="dce-relay"
            )
        return self._pool

    def close(self) -> None:
        """Stop the relay's send threads (the handler is the caller's to close)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def _send_group(self, group: list[OutboxEvent]) -> Outcome:
        """Send rows in order; stop at the first failure (later rows wait for it).

        Rows go out in chunks, and no chunk starts once the claim's lease was lost
        (see ``send``): another relay may have taken the rows by then.
        """
        batch = getattr(self.handler, "batch", False)
        step = len(group) if batch else CHUNK
        sent: list[OutboxEvent] = []
        for start in range(0, len(group), step):
            chunk, rest = group[start : start + step], group[start + step :]
            lease = chunk[0].locked_until
            if lease is None or timezone.now() >= lease:
                logger.warning(
                    "Lease lost before %d CloudEvent(s) were sent; left to the "
                    "next claim",
                    len(group) - start,
                )
                return Outcome(sent, untried=chunk + rest)
            try:
                done = self._send_stored([row.event for row in chunk])
            except DeliveryError as err:
                # Those before the failed attempt went out; those in it (one
                # event, or one request of a batch) failed; the rest were not
                # sent at all, so no attempt is counted against them.
                ok = chunk[: err.delivered]
                if err.attempted is not None:
                    end = err.delivered + max(err.attempted, 1)
                else:
                    end = len(chunk) if batch else err.delivered + 1
                return Outcome(
                    sent + ok, chunk[err.delivered : end], err, chunk[end:] + rest
                )
            except Exception as err:  # a bug in a handler must not stop the relay
                logger.exception("Handler %r failed", self.handler)
                error = DeliveryError(f"{type(err).__name__}: {err}")
                return Outcome(sent, chunk[:1], error, chunk[1:] + rest)
            sent += chunk[:done]
        return Outcome(sent)

    def _send_stored(self, documents: list[str]) -> int:
        send = getattr(self.handler, "send_stored", None)
        if send is not None:
            return int(send(documents))
        # A handler of the protocol's older shape (no BaseHandler): decode here.
        # Knative's overrides belong to the process that sends (SPEC-NOTES 4.2).
        return self.handler.send_events(
            [events.with_overrides(events.from_json(d)) for d in documents]
        )

    def _renew(self, rows: list[OutboxEvent]) -> None:
        """Extend this claim's lease on rows still being sent (the heartbeat)."""
        until = timezone.now() + timedelta(seconds=self.options["LEASE"])
        owned = set(
            self._owned(rows).values_list("pk", flat=True)
        )  # rows another relay took over are not ours to extend
        self._owned([row for row in rows if row.pk in owned]).update(locked_until=until)
        for row in rows:
            # Read by the sending threads before each chunk: a lost row stops them.
            row.locked_until = until if row.pk in owned else None

    def _owned(self, rows: Sequence[OutboxEvent]) -> QuerySet[OutboxEvent]:
        """The rows, only while this claim still holds them (its lease token)."""
        return OutboxEvent.objects.using(self.using).filter(
            pk__in=[row.pk for row in rows],
            locked_by=rows[0].locked_by,
            status=Status.PENDING,
        )

    def _mark_delivered(self, rows: list[OutboxEvent]) -> None:
        if not rows:
            return
        now = timezone.now()
        connection = connections[self.using]
        if connection.vendor == "postgresql" or (
            connection.vendor == "sqlite" and connection.features.supports_json_field
        ):
            updated = self._mark_delivered_in_one_parameter(rows, now)
        else:
            updated = self._owned(rows).update(
                status=Status.DELIVERED,
                delivered_at=now,
                attempts=F("attempts") + 1,
                locked_until=None,
                last_error="",
            )
        if updated < len(rows):
            logger.warning(
                "%d CloudEvent(s) were delivered after this relay's lease ran out; "
                "another relay may send them again",
                len(rows) - updated,
            )
        debug = logger.isEnabledFor(logging.DEBUG)
        listening = signals.event_delivered.has_listeners(OutboxEvent)
        for row in rows:
            row.status, row.delivered_at, row.last_error = Status.DELIVERED, now, ""
            row.attempts += 1
            row.locked_until = None
            if debug:
                logger.debug(
                    "CloudEvent %s delivered (attempt %d)", row.event_id, row.attempts
                )
            if listening:
                self._notify(signals.event_delivered, row)

    def _mark_delivered_in_one_parameter(
        self, rows: list[OutboxEvent], now: Any
    ) -> int:
        """``_owned(rows).update(...)`` for delivered rows, with the ids as one value.

        On PostgreSQL (an array) and SQLite (a JSON array): the queryset's
        ``id IN (%s, ...)`` takes a parameter per row to compile and bind.
        """
        connection = connections[self.using]
        qn = connection.ops.quote_name
        pk, status = qn("id"), qn("status")
        pks: Any = [row.pk for row in rows]
        if connection.vendor == "postgresql":
            among = f"{pk} = ANY(%s)"
        else:
            among, pks = f"{pk} IN (SELECT value FROM json_each(%s))", json.dumps(pks)
        sql = (
            f"UPDATE {qn(OutboxEvent._meta.db_table)} SET {status} = "
            f"'{Status.DELIVERED.value}', {qn('delivered_at')} = %s, "
            f"{qn('attempts')} = {qn('attempts')} + 1, {qn('locked_until')} = NULL, "
            f"{qn('last_error')} = '' WHERE {among} AND {qn('locked_by')} = %s "
            f"AND {status} = '{Status.PENDING.value}'"
        )
        params = [connection.ops.adapt_datetimefield_value(now), pks, rows[0].locked_by]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return int(cursor.rowcount)

    def _mark_failed(self, row: OutboxEvent, error: DeliveryError) -> bool:
        """Record a failed attempt; park the row if it is out of attempts or too old."""
        now = timezone.now()
        attempts = row.attempts + 1
        age = (now - row.created_at).total_seconds()
        park = (
            error.permanent
            or attempts >= self.options["MAX_ATTEMPTS"]
            or age >= self.options["MAX_AGE"]
        )
        delay = retry_delay(attempts, error.retry_after, self.options)
        changes = {
            "attempts": attempts,
            "last_error": error.reason[:2000],
            "locked_until": None,
            "status": Status.PARKED if park else Status.PENDING,
            "next_attempt_at": now if park else now + timedelta(seconds=delay),
        }
        if not self._owned([row]).update(**changes):
            return False  # the lease ran out: the row is another relay's now
        for name, value in changes.items():  # what signal receivers see
            setattr(row, name, value)
        if park:
            logger.error(
                "CloudEvent %s parked after %d attempt(s)%s: %s",
                row.event_id,
                attempts,
                " (the sink refuses it for good)" if error.permanent else "",
                error.reason,
            )
            self._notify(signals.event_parked, row)
        else:
            logger.warning(
                "CloudEvent %s attempt %d failed, retry in %.1fs: %s",
                row.event_id,
                attempts,
                delay,
                error.reason,
            )
        return park

    def _notify(self, signal: Signal, row: OutboxEvent) -> None:
        """Send a signal about a row now, or once the open claim has committed."""
        if self._unsignalled is None:
            signal.send_robust(OutboxEvent, outbox_event=row)
        else:
            self._unsignalled.append((signal, row))

    def _signal(self) -> None:
        pending, self._unsignalled = self._unsignalled or [], None
        for signal, row in pending:
            signal.send_robust(OutboxEvent, outbox_event=row)

    def _release(self, rows: list[OutboxEvent]) -> None:
        """Give back untried rows (an earlier row of their subject failed)."""
        if rows:
            self._owned(rows).update(locked_until=None)


def _stopping(stop: threading.Event | None, until: float | None) -> bool:
    """True once ``stop`` is set or the monotonic clock has passed ``until``."""
    return (stop is not None and stop.is_set()) or (
        until is not None and time.monotonic() >= until
    )


_RECORDED = (
    "status",
    "attempts",
    "last_error",
    "locked_until",
    "delivered_at",
    "next_attempt_at",
)


def _snapshot(outcomes: list[Outcome]) -> list[tuple[OutboxEvent, tuple[Any, ...]]]:
    """What recording ``outcomes`` would change on their rows, as it is now."""
    return [
        (row, tuple(getattr(row, name) for name in _RECORDED))
        for outcome in outcomes
        for row in (*outcome.sent, *outcome.failed)
    ]


def _restore(saved: list[tuple[OutboxEvent, tuple[Any, ...]]]) -> None:
    for row, values in saved:
        for name, value in zip(_RECORDED, values, strict=True):
            setattr(row, name, value)


def _load_timestamps_natively(connection: Any, cursor: Any) -> None:
    """Read ``timestamptz`` with psycopg's own loader where it gives Django's values.

    Django's psycopg 3 loader is written in Python and, on a claim, reads three
    timestamps of every row: a fifth of the relay's time in batched mode. With
    ``USE_TZ`` and the database in UTC (Django's default) psycopg's loader (in C
    with psycopg's binary package) returns the same aware UTC datetimes.
    """
    raw = getattr(cursor, "cursor", None)
    if connection.vendor != "postgresql" or connection.timezone is not UTC:
        return
    adapters = getattr(raw, "adapters", None)
    if raw is None or adapters is None:  # psycopg2: its loader is in C already
        return
    if raw.connection.pgconn.parameter_status(b"TimeZone") not in _UTC_NAMES:
        return  # the session is not in UTC after all (a SET TIME ZONE, a pooler)
    from psycopg import adapters as defaults
    from psycopg.pq import Format

    oid = defaults.types["timestamptz"].oid
    adapters.register_loader(oid, defaults.get_loader(oid, Format.TEXT))


_UTC_NAMES = (b"UTC", b"Etc/UTC")
_FIELDS = OutboxEvent._meta.concrete_fields
_NAMES = [model_field.attname for model_field in _FIELDS]


def _rows(alias: str, found: list[tuple[Any, ...]]) -> Iterable[OutboxEvent]:
    """Model instances from raw rows of every column, as a queryset would make.

    Each value goes through the database's converters (SQLite hands datetimes
    back as text, for one).
    """
    connection = connections[alias]
    table = OutboxEvent._meta.db_table
    steps: list[tuple[int, Any, Any]] = []
    for position, model_field in enumerate(_FIELDS):
        column = model_field.get_col(table)
        converters = connection.ops.get_db_converters(
            column
        ) + column.get_db_converters(connection)
        steps.extend((position, column, convert) for convert in converters)
    for values in found:
        row = list(values)
        for position, column, convert in steps:
            row[position] = convert(row[position], column, connection)
        yield OutboxEvent.from_db(alias, _NAMES, row)


def in_subject_order(
    found: list[tuple[int, str]], pending_before: dict[str, list[int]]
) -> list[int]:
    """Keep a found row only if every earlier pending row of its subject is kept too."""
    kept: list[int] = []
    kept_by_subject: dict[str, set[int]] = defaultdict(set)
    blocked: set[str] = set()
    for pk, subject in found:
        if not subject:
            kept.append(pk)
            continue
        if subject in blocked:
            continue
        earlier = [p for p in pending_before.get(subject, ()) if p < pk]
        if all(p in kept_by_subject[subject] for p in earlier):
            kept.append(pk)
            kept_by_subject[subject].add(pk)
        else:
            blocked.add(subject)
    return kept


def retry_delay(
    attempts: int, retry_after: float | None, options: dict[str, Any]
) -> float:
    """Exponential backoff with jitter; a longer Retry-After from the sink wins."""
    ceiling = min(options["BACKOFF_MAX"], options["BACKOFF"] * 2 ** (attempts - 1))
    delay = random.uniform(ceiling / 2, ceiling)  # "equal jitter": spread, never ~0
    if retry_after is not None:
        delay = max(delay, min(retry_after, options["MAX_AGE"]))
    return delay
