"""Drain OutboxEvent rows through the real handler: claim, send, record.

Claims are leases (``OutboxEventQuerySet.claim``), and no lock is held while
sending. On PostgreSQL each claim is also tied to the claiming database session
(``OutboxEventQuerySet.tie``): the rows of a relay that dies are free for the next
claim at once; elsewhere a restarted relay gives back its host's dead claims
(``Relay.recover``), and the lease's end frees the rest.
Per-subject order: a row is sent only when every earlier pending row with the same
``subject`` is sent first (in the same claim, in order) - a later change of an
object never overtakes an earlier one that is waiting for a retry. A parked row
no longer blocks.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.dispatch import Signal
from django.utils import timezone

from .. import conf, signals, tracing
from ..exceptions import DeliveryError
from ..models import OutboxEvent
from ..models.outbox import OutboxEventQuerySet
from ..redact import redact
from . import _claimant
from ._sending import Outcome, restore, send_group, snapshot
from .handlers import BaseHandler

logger = logging.getLogger("django_cloudevents_bridge")

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
class Relay:
    """Delivers due outbox rows through ``handler``; see the module docstring."""

    handler: BaseHandler
    using: str = DEFAULT_DB_ALIAS
    options: dict[str, Any] = field(default_factory=conf.outbox)
    name: str = field(default_factory=_claimant.default_name)
    _pool: ThreadPoolExecutor | None = field(default=None, init=False, repr=False)
    # Signals held back until the transaction recording them commits (one batch
    # at a time).
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
        overlap = connection.vendor != "sqlite" and not connection.in_atomic_block
        return self._drain(stop, until, overlap)

    def _drain(
        self, stop: threading.Event | None, until: float | None, overlap: bool
    ) -> Result:
        """The drain loop, overlapping claims with sends or one batch at a time.

        One at a time, each batch's last results are recorded in the transaction
        that claims the next: one commit between two batches, not two (on
        SQLite, a commit is several fsyncs). Signals go out once that
        transaction ends (inside the caller's own transaction, it is a savepoint).
        """
        total = Result()
        helper: ThreadPoolExecutor | None = None
        in_hand: Future[Result] | None = None  # overlapping: sent, recorded there
        last: list[Outcome] = []  # one at a time: sent, recorded with the claim
        saved: list[tuple[OutboxEvent, tuple[Any, ...]]] = []
        rows: list[OutboxEvent] = []  # claimed, not yet being sent
        try:
            while True:
                stopping = _stopping(stop, until)
                if not overlap:
                    self._unsignalled = []
                    # Recording changes the rows; if this rolls back, ``last`` is
                    # recorded again below, from what the rows were.
                    saved = snapshot(last)
                with (
                    contextlib.nullcontext()
                    if overlap
                    else transaction.atomic(using=self.using)
                ):
                    self._record(last, total)
                    rows = [] if stopping else self.claim()
                last = []
                self._signal()
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
                total.claimed += len(rows)
                if not overlap:
                    sending, rows = rows, []
                    last = self._send(sending, total)
                    continue
                if time.monotonic() - claimed_at > self._tick():
                    self._renew(rows)  # it waited for the last batch to finish
                if helper is None:
                    helper = ThreadPoolExecutor(1, thread_name_prefix="dce-relay")
                in_hand, rows = helper.submit(self.send, rows), []
        finally:
            self._unsignalled = None  # what a rolled-back record would have said
            if in_hand is not None:  # claiming failed: finish what is in hand
                with contextlib.suppress(Exception):
                    total += in_hand.result()
            if rows:  # claimed, never sent: give them back now, not at lease end
                with contextlib.suppress(Exception):
                    self._release(rows)
            if last:  # recording (or claiming) failed: record what did go out
                restore(saved)
                with contextlib.suppress(Exception):  # the first error is raised
                    self._record(last, total)
            if helper is not None:
                helper.submit(connections.close_all).result()  # the helper's own
                helper.shutdown()

    def _tick(self) -> float:
        """Seconds between lease checks while rows are out (the heartbeat)."""
        return float(min(self.options["LEASE"] / 3, HEARTBEAT))

    def claim(self, ids: Iterable[int] | None = None) -> list[OutboxEvent]:
        """Take up to BATCH_SIZE due rows for this relay, respecting subject order."""
        outbox = self._outbox()
        return outbox.claim(
            outbox.tie(f"{self.name}:{_claimant.nonce()}:{uuid.uuid4().hex[:12]}"),
            limit=self.options["BATCH_SIZE"],
            lease=self.options["LEASE"],
            ids=ids,
        )

    def recover(self) -> int:
        """Give back now the claims of this host's relay processes that died.

        For databases where ``tie()`` does nothing (SQLite, a transaction-pooling
        PgBouncer), so a relay restarted after a crash does not wait out the
        lease of its own last claims: a claim is its process's if its token starts
        with this host's name, and that process is dead if its pid is gone, or is
        this process's pid from an earlier start (a container's pid 1 restarted).
        Returns the number of rows given back.
        """
        if OutboxEventQuerySet.ties_claims(self.using):
            return 0  # a dead session's claims are free already
        prefix = f"{_claimant.host()}:"
        tokens = (
            self._outbox()
            .filter(
                status=OutboxEvent.Status.PENDING,
                locked_until__gte=timezone.now(),
                locked_by__startswith=prefix,
            )
            .values_list("locked_by", flat=True)
            .distinct()
        )
        dead = [token for token in tokens if _claimant.dead(token[len(prefix) :])]
        if not dead:
            return 0
        pending = self._outbox().filter(status=OutboxEvent.Status.PENDING)
        released = pending.filter(locked_by__in=dead).release()
        logger.warning(
            "Gave back %d CloudEvent(s) claimed by relay processes of this host "
            "that are gone",
            released,
        )
        return released

    def _outbox(self) -> OutboxEventQuerySet:
        return OutboxEvent.objects.using(self.using)

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
            finished.append((index, send_group(self.handler, group)))

    def _record(self, outcomes: list[Outcome], result: Result) -> None:
        """Record finished groups: one UPDATE for all their delivered rows."""
        delivered = [row for outcome in outcomes for row in outcome.sent]
        self._mark_delivered(delivered)
        result.delivered += len(delivered)
        tracing.count("delivered", "out", len(delivered))
        for outcome in outcomes:
            for row in outcome.failed:
                assert outcome.error is not None
                result.failed += 1
                parked = self._mark_failed(row, outcome.error)
                result.parked += int(parked)
                tracing.count("parked" if parked else "failed", "out")
            self._release(outcome.untried)

    def _start(self, work: Callable[..., None], *args: Any) -> Future[None]:
        """Run ``work`` in a send thread (the executor's)."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                self.options["CONCURRENCY"], thread_name_prefix="dce-relay"
            )
        return self._pool.submit(work, *args)

    def close(self) -> None:
        """Stop the relay's send threads (the handler is the caller's to close)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def _renew(self, rows: list[OutboxEvent]) -> None:
        """Extend this claim's lease on rows still being sent (the heartbeat)."""
        self._outbox().renew(rows, self.options["LEASE"])

    def _mark_delivered(self, rows: list[OutboxEvent]) -> None:
        if not rows:
            return
        updated = self._outbox().mark_delivered(rows)
        if updated < len(rows):
            logger.warning(
                "%d CloudEvent(s) were delivered after this relay's lease ran out; "
                "another relay may send them again",
                len(rows) - updated,
            )
        debug = logger.isEnabledFor(logging.DEBUG)
        listening = signals.event_delivered.has_listeners(OutboxEvent)
        if not (debug or listening):
            return
        for row in rows:
            if debug:
                logger.debug(
                    "CloudEvent %s delivered (attempt %d)", row.event_id, row.attempts
                )
            if listening:
                self._notify(signals.event_delivered, row)

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
        retry_at = None if park else now + timedelta(seconds=delay)
        reason = redact(error.reason)  # a handler's words: no credential
        if not self._outbox().mark_failed(row, reason, retry_at):
            return False  # the lease ran out: the row is another relay's now
        if park:
            logger.error(
                "CloudEvent %s parked after %d attempt(s)%s: %s",
                row.event_id,
                attempts,
                " (the sink refuses it for good)" if error.permanent else "",
                reason,
            )
            self._notify(signals.event_parked, row)
        else:
            logger.warning(
                "CloudEvent %s attempt %d failed, retry in %.1fs: %s",
                row.event_id,
                attempts,
                delay,
                reason,
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
            self._outbox().held(rows[0].locked_by, rows).release()


def _stopping(stop: threading.Event | None, until: float | None) -> bool:
    """True once ``stop`` is set or the monotonic clock has passed ``until``."""
    return (stop is not None and stop.is_set()) or (
        until is not None and time.monotonic() >= until
    )


def retry_delay(
    attempts: int, retry_after: float | None, options: dict[str, Any]
) -> float:
    """Exponential backoff with jitter; a longer Retry-After from the sink wins."""
    ceiling = min(options["BACKOFF_MAX"], options["BACKOFF"] * 2 ** (attempts - 1))
    delay = random.uniform(ceiling / 2, ceiling)  # "equal jitter": spread, never ~0
    if retry_after is not None:
        delay = max(delay, min(retry_after, options["MAX_AGE"]))
    return delay
