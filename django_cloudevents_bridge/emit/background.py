"""The in-process sender (``CLOUDEVENTS_OUTBOX["BACKGROUND"]``): tries freshly
committed outbox rows once, in the saving process but off the request; whatever it
cannot deliver stays pending for the relay.

One daemon thread per process (``outbox.background``) sends for every save, with a
database connection of its own that it keeps between batches: closed after
``IDLE`` seconds without work, at exit, and never used by a forked child; one the
server dropped is opened again. Rows are written already claimed by it:
``store()`` asks ``claim()`` for the sender's token and ``write()`` INSERTs the
rows with it and a lease, so sending takes no claim, and the rows that went out
are recorded in one UPDATE. On PostgreSQL the token is tied
(``OutboxEventQuerySet.tie``) to the sender's connection: if the process dies, a
relay takes its rows at once, lease or not. A row whose object has an earlier
pending row, and every row written while the sender has no connection (the
first save of a process, or after one was lost), is written unclaimed: the
sender claims it as a relay does, in subject order.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import queue
import secrets
import select
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import connections

from .. import conf
from ..models import OutboxEvent
from . import _claimant, deliver, shared_handler
from ._sending import send_group
from .relay import Relay, Result

logger = logging.getLogger("django_cloudevents_bridge")

COALESCE = 0.005  # seconds the background sender waits for more rows
EXIT_GRACE = 5.0  # seconds an exiting process waits for its background sends
IDLE = 300.0  # seconds without work before the sender closes its connections
STOP_WAIT = 2.0  # seconds stop() waits for the thread to close its connections


@dataclass(eq=False)
class Claim:
    """The rows of one ``write()``, written already claimed by the sender.

    ``token`` and ``lease`` come from the sender (``Background.claim``);
    ``write()`` fills in the rest: ``rows`` it wrote claimed (id, event_id,
    source, type, subject, the event), ``others`` the ids it had to write
    unclaimed (an earlier row of their subject is pending).
    """

    token: str
    lease: float
    created: datetime | None = None
    until: datetime | None = None
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    others: list[int] = field(default_factory=list)

    def instances(self, using: str) -> list[OutboxEvent]:
        """The claimed rows as the claim would have read them back."""
        return [
            OutboxEvent.from_db(
                using,
                _FIELDS,
                [*row, _PENDING, 0, self.created, self.created]
                + [self.until, self.token, None, ""],
            )
            for row in self.rows
        ]


_FIELDS = [
    *("id", "event_id", "source", "type", "subject", "event", "status", "attempts"),
    *("created_at", "next_attempt_at", "locked_until", "locked_by", "delivered_at"),
    "last_error",
]

_PENDING = OutboxEvent.Status.PENDING.value

# A job: ("", events) to send once, (alias, ids) rows to claim, or (alias, Claim).
Job = tuple[str, Any]


class Background:
    """One daemon thread that tries freshly committed events once, off the request."""

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.idle = threading.Condition(self.lock)
        self.outstanding = 0
        self.thread: threading.Thread | None = None
        self.pid = 0
        self.holding: tuple[str, str] | None = None  # (alias, claim) being sent
        # Per alias: the token rows are written with, and the sender thread's
        # connection that holds it (PostgreSQL: its session lock is the token's).
        self.tokens: dict[str, str] = {}
        self.wrappers: dict[str, Any] = {}
        self.threads = _Threads()
        self.name = ""  # host:pid:nonce:random, the tokens before their tag

    def claim(self, using: str, lease: float) -> Claim | None:
        """A claim for the rows a save writes on ``using`` (None: the sender has
        no connection there yet; they are written unclaimed)."""
        token = self.tokens.get(using)
        if token is None or self.pid != os.getpid():
            return None
        return Claim(token, lease)

    def submit(self, job: Job) -> None:
        """Queue a job (called on commit; never blocks)."""
        if job[0] and isinstance(job[1], list) and not conf.outbox()["BACKGROUND"]:
            return  # unclaimed rows wait for the relay
        with self.lock:
            if self.pid != os.getpid():  # the first job (or a fork not seen)
                self._adopt()
            if self.thread is None or not self.thread.is_alive():
                self.queue = queue.SimpleQueue()  # this thread's (stop() ends one)
                self.thread = threading.Thread(
                    target=self._run, args=(self.queue,), name="dce-outbox", daemon=True
                )
                self.thread.start()
            self.outstanding += 1
            self.queue.put(job)

    def _adopt(self) -> None:
        """Make the sender this process's: after a fork (gunicorn's workers,
        multiprocessing) the parent's thread, claims and connections are not."""
        inherited = list(self.wrappers.values())
        self.thread, self.holding, self.outstanding = None, None, 0
        self.tokens, self.wrappers, self.threads = {}, {}, _Threads()
        self.pid = os.getpid()
        self.name = _claimant.default_name()
        self.name += f":{_claimant.nonce()}:{secrets.token_hex(6)}"
        for wrapper in inherited:
            _let_go(wrapper)

    def _forked(self) -> None:
        """In a forked child (its only thread): locks that a thread of the parent
        held stay held here, so new ones."""
        if self.pid:
            self.lock = threading.Lock()
            self.idle = threading.Condition(self.lock)
            self._adopt()

    def _run(self, jobs_in: queue.SimpleQueue[Job | None]) -> None:
        try:
            while True:
                try:
                    first = jobs_in.get(timeout=IDLE)
                except queue.Empty:
                    self._disconnect()  # idle: give the connections back
                    first = jobs_in.get()
                # A moment for the rest of a burst to arrive: one batch (and one
                # UPDATE) for many rows costs the web threads far less of the GIL.
                if first is not None:
                    time.sleep(COALESCE)
                jobs = [first]
                with contextlib.suppress(queue.Empty):
                    while True:
                        jobs.append(jobs_in.get_nowait())
                work = [job for job in jobs if job is not None]
                try:
                    self._work(work)
                finally:
                    with self.idle:
                        self.outstanding -= len(work)
                        self.idle.notify_all()
                if len(work) < len(jobs):
                    return  # stop()
        finally:
            self._disconnect()

    def _work(self, jobs: list[Job]) -> None:
        by_alias: dict[str, list[Any]] = {}
        for using, items in jobs:
            if using:
                by_alias.setdefault(using, []).append(items)
            else:
                deliver(items)
        for using, batches in by_alias.items():
            try:
                self._attempt(using, batches)
            except Exception:
                logger.exception("Immediate delivery failed; the relay will retry")
                self._disconnect(using)  # the next batch starts afresh
            finally:
                self.holding = None

    def _attempt(self, using: str, batches: list[Any]) -> None:
        """Send the rows written claimed, then claim and send the others."""
        token = self._connect(using)
        claimed: list[OutboxEvent] = []
        ids: list[int] = []
        for items in batches:
            if not isinstance(items, Claim):
                ids.extend(items)
            elif items.token == token:
                claimed.extend(items.instances(using))
                ids.extend(items.others)
            else:  # written while a connection now gone held the claim: free
                ids.extend(row[0] for row in items.rows)
                ids.extend(items.others)
        relay = _Sender(shared_handler(), using=using, threads=self.threads)
        if claimed:
            self.holding = (using, token)
            relay.send(claimed)
        remaining = set(ids)
        while remaining:
            rows = relay.claim(remaining)
            if not rows:
                return  # the rest is not due, or waits behind its subject
            remaining.difference_update(row.pk for row in rows)
            self.holding = (using, rows[0].locked_by)
            relay.send(rows)

    def _connect(self, using: str) -> str:
        """This thread's connection on ``using``, checked, and the token of the
        rows written claimed by it."""
        connection = connections[using]
        if connection.connection is not None and _dropped(connection):
            logger.warning("The background sender's database connection was lost")
            self._disconnect(using)
        token = OutboxEvent.objects.using(using).tie(self.name)
        self.wrappers[using] = connection
        self.tokens[using] = token  # from now on rows are written claimed
        return token

    def _disconnect(self, using: str | None = None) -> None:
        """Close this thread's connections (on ``using``, or all)."""
        for alias in [using] if using else list(self.wrappers):
            self.tokens.pop(alias, None)  # first: no row is written with it now
            if self.wrappers.get(alias) is connections[alias]:
                del self.wrappers[alias]
            with contextlib.suppress(Exception):
                connections[alias].close()

    def wait(self, timeout: float) -> bool:
        """Wait until every submitted job was tried (tests, interpreter exit)."""
        with self.idle:
            return self.idle.wait_for(lambda: self.outstanding == 0, timeout)

    def stop(self, timeout: float = STOP_WAIT) -> bool:
        """End the thread once it has tried what is queued; it closes its
        connections. True if it has ended (a later save starts another)."""
        with self.lock:
            thread = self.thread
            if thread is None or self.pid != os.getpid():
                return True
            self.thread = None
            self.queue.put(None)
        thread.join(timeout)
        return not thread.is_alive()

    def release(self) -> None:
        """Give back now every row this process holds (claimed or being sent)."""
        held = {*dict(self.tokens).items(), *([self.holding] if self.holding else [])}
        for using, token in held:
            with contextlib.suppress(Exception):
                if OutboxEvent.objects.using(using).held(token).release():
                    logger.warning(
                        "Exiting while CloudEvents were being sent; the relay will "
                        "send them (claim %s given back)",
                        token,
                    )


@dataclass
class _Sender(Relay):
    """The relay's send and record, for the sender thread: one object's rows (or
    a batched handler's) are sent by that thread itself, several objects' by the
    sender's send threads; never a thread per batch."""

    threads: _Threads | None = None

    def send(self, rows: Sequence[OutboxEvent]) -> Result:
        subjects = {row.subject or ("row", row.pk) for row in rows}
        if len(subjects) > 1 and not getattr(self.handler, "batch", False):
            return super().send(rows)
        result = Result()
        self._record([send_group(self.handler, list(rows))], result)
        return result

    def _start(self, work: Callable[..., None], *args: Any) -> Future[None]:
        assert self.threads is not None
        return self.threads.submit(work, *args)


class _Threads:
    """The sender's send threads: daemon threads (an exiting interpreter does not
    wait for a send that hangs), started when all are busy, then kept."""

    def __init__(self) -> None:
        self.tasks: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.started = 0
        self.busy = 0

    def submit(self, work: Callable[..., None], *args: Any) -> Future[None]:
        future: Future[None] = Future()
        with self.lock:
            if self.busy == self.started:
                # RuntimeError once the interpreter exits: the relay sends inline.
                threading.Thread(target=self._run, name="dce-send", daemon=True).start()
                self.started += 1
            self.busy += 1
        self.tasks.put((future, work, args))
        return future

    def _run(self) -> None:
        while True:
            future, work, args = self.tasks.get()
            error: BaseException | None = None
            if future.set_running_or_notify_cancel():
                try:
                    work(*args)
                except BaseException as err:
                    error = err
            with self.lock:
                self.busy -= 1  # before the result: a waiter submits again at once
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(None)


def _dropped(connection: Any) -> bool:
    """True if the server has ended this idle PostgreSQL connection (or said
    anything on it: the sender does not LISTEN, so that is a goodbye)."""
    if connection.vendor != "postgresql":
        return False
    try:
        readable, _, _ = select.select([connection.connection.fileno()], [], [], 0)
    except (OSError, ValueError, connection.Database.Error):
        return True
    return bool(readable)


def _let_go(wrapper: Any) -> None:
    """Forget a connection of the parent's sender (in a forked child) without
    ending its session: its socket is pointed at /dev/null first, so whatever the
    driver sends on it when it is freed (psycopg 2's goodbye) goes nowhere."""
    raw = wrapper.connection
    if raw is None or wrapper.vendor != "postgresql":
        _inherited.append(wrapper)  # SQLite: never touched again, never freed
        return
    with contextlib.suppress(Exception):
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, raw.fileno())
        os.close(devnull)
    wrapper.connection = None


_inherited: list[Any] = []

background = Background()
os.register_at_fork(after_in_child=background._forked)


@atexit.register
def _flush_at_exit() -> None:
    # A short grace period so a management command's last events go out; anything
    # left stays pending for the relay.
    if background.thread is None or background.pid != os.getpid():
        return
    if background.wait(timeout=EXIT_GRACE):
        background.stop()  # closes its connections
        return
    # Still sending (a sink that does not answer): give the claims back now, or
    # the relay would wait out the whole lease for rows this process will never
    # record. A send may still have reached the sink: the relay sends it again,
    # with the same id.
    background.release()
