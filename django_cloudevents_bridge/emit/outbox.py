"""The outbox: rows written in the caller's transaction, tried at once after commit.

``write()`` is the only work added to ``save()``: one INSERT, no network. After
the commit a background thread claims and sends those rows right away, so events
normally reach the sink within milliseconds; whatever it cannot deliver stays
pending for the relay (``manage.py cloudevents_relay``).
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models import Count, QuerySet
from django.utils import timezone

from .. import conf, events
from ..events import CloudEvent
from ..models import OutboxEvent

logger = logging.getLogger("django_cloudevents_bridge")


_tables: dict[str, bool] = {}


def ready(using: str) -> bool:
    """True if the outbox table exists on ``using`` (looked up once per process).

    Checked before the first INSERT because a failed INSERT inside the caller's
    transaction would abort that transaction on PostgreSQL.
    """
    if using not in _tables:
        with connections[using].cursor() as cursor:
            names = connections[using].introspection.table_names(cursor)
        _tables[using] = OutboxEvent._meta.db_table in names
        if not _tables[using]:
            logger.error(
                "The outbox table is missing on %r (run migrate); events are sent "
                "directly after commit, without retries",
                using,
            )
    return _tables[using]


def store(batch: Sequence[CloudEvent], using: str) -> bool:
    """Write the events to the outbox and try them after commit; False if it can't."""
    if not ready(using):
        return False
    try:
        ids = write(batch, using)
    except Exception:
        logger.exception(
            "Could not write CloudEvents %s to the outbox; sending them directly",
            ", ".join(event.get_id() for event in batch),
        )
        return False
    transaction.on_commit(partial(kick, using, ids), using=using)
    return True


def write(batch: Sequence[CloudEvent], using: str) -> list[int]:
    """INSERT one row per event on ``using`` (in its current transaction)."""
    now = timezone.now()
    rows = [
        OutboxEvent(
            event_id=event.get_id(),
            source=event.get_source()[:1024],
            type=event.get_type()[:255],
            subject=(event.get_subject() or "")[:1024],
            event=events.to_json(event).decode(),
            created_at=event.get_time() or now,
            next_attempt_at=event.get_time() or now,
        )
        for event in batch
    ]
    if len(rows) == 1:  # save() adds no BEGIN/COMMIT of its own in autocommit mode
        rows[0].save(using=using, force_insert=True)
    else:
        OutboxEvent.objects.using(using).bulk_create(rows)
    return [row.pk for row in rows if row.pk is not None]


class Background:
    """A daemon thread that tries freshly committed rows once, off the request."""

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[tuple[str, list[int]]] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.idle = threading.Condition(self.lock)
        self.outstanding = 0
        self.thread: threading.Thread | None = None
        self.pid = 0

    def submit(self, using: str, ids: list[int]) -> None:
        """Queue rows for an immediate attempt (called on commit; never blocks)."""
        with self.lock:
            # After a fork (gunicorn, multiprocessing) the thread is not ours any more.
            if (
                self.thread is None
                or self.pid != os.getpid()
                or not self.thread.is_alive()
            ):
                self.queue = queue.SimpleQueue()
                self.outstanding = 0
                self.pid = os.getpid()
                self.thread = threading.Thread(
                    target=self._run, name="dce-outbox", daemon=True
                )
                self.thread.start()
            self.outstanding += 1
            self.queue.put((using, ids))

    def _run(self) -> None:
        from . import shared_handler
        from .relay import Relay

        while True:
            items = [self.queue.get()]
            while True:  # coalesce everything already queued into few claims
                try:
                    items.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            pending: dict[str, list[int]] = {}
            for using, ids in items:
                pending.setdefault(using, []).extend(ids)
            for using, ids in pending.items():
                relay = Relay(shared_handler(), using=using)
                try:
                    relay.run_once(ids=ids)
                except Exception:
                    logger.exception("Immediate delivery failed; the relay will retry")
                finally:
                    relay.close()
            if self.queue.empty():
                for using in pending:  # idle: give back this thread's connections
                    connections[using].close()
            with self.idle:
                self.outstanding -= len(items)
                self.idle.notify_all()

    def wait(self, timeout: float) -> bool:
        """Wait until every submitted batch was tried (tests, interpreter exit)."""
        with self.idle:
            return self.idle.wait_for(lambda: self.outstanding == 0, timeout)


background = Background()


def kick(using: str, ids: list[int]) -> None:
    """on_commit callback: try these rows now, in the background, if enabled."""
    if ids and conf.outbox()["BACKGROUND"]:
        background.submit(using, ids)


@atexit.register
def _flush_at_exit() -> None:
    # A short grace period so a management command's last events go out; anything
    # left stays pending for the relay.
    if background.thread is not None and background.pid == os.getpid():
        background.wait(timeout=5.0)


def prune(using: str = DEFAULT_DB_ALIAS, older_than: float | None = None) -> int:
    """Delete delivered rows older than ``older_than`` seconds (default RETENTION)."""
    seconds = conf.outbox()["RETENTION"] if older_than is None else older_than
    cutoff = timezone.now() - timedelta(seconds=seconds)
    deleted, _ = (
        OutboxEvent.objects.using(using)
        .filter(status=OutboxEvent.Status.DELIVERED, delivered_at__lt=cutoff)
        .delete()
    )
    return deleted


def stats(using: str = DEFAULT_DB_ALIAS) -> dict[str, Any]:
    """Counts per status, and the oldest pending row's age in seconds."""
    rows = OutboxEvent.objects.using(using)
    counts = dict.fromkeys(OutboxEvent.Status.values, 0)
    for row in rows.values("status").annotate(n=Count("pk")):
        counts[row["status"]] = row["n"]
    oldest: datetime | None = (
        rows.filter(status=OutboxEvent.Status.PENDING)
        .order_by("pk")
        .values_list("created_at", flat=True)
        .first()
    )
    age = (timezone.now() - oldest).total_seconds() if oldest else None
    return {**counts, "oldest_pending_age": age}


def retry(rows: QuerySet[OutboxEvent]) -> int:
    """Send these rows again, with a fresh attempt budget and the same event id."""
    return rows.update(
        status=OutboxEvent.Status.PENDING,
        attempts=0,
        next_attempt_at=timezone.now(),
        locked_until=None,
    )
