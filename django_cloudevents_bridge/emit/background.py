"""The in-process sender (``CLOUDEVENTS_OUTBOX["BACKGROUND"]``): a daemon thread of
the saving process tries freshly committed outbox rows once, off the request;
whatever it cannot deliver stays pending for the relay.

``store()`` (``outbox.py``) hands it the rows on commit; ``outbox.background`` is
the process's sender.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import queue
import threading
import time
from typing import Any

from django.db import connections

from .. import conf
from ..models import OutboxEvent

logger = logging.getLogger("django_cloudevents_bridge")

COALESCE = 0.005  # seconds the background sender waits for more rows
EXIT_GRACE = 5.0  # seconds an exiting process waits for its background sends


# A batch of outbox row ids on a database alias, or ("", events) to send once.
Job = tuple[str, list[Any]]


class Background:
    """A daemon thread that tries freshly committed events once, off the request."""

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[Job] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.idle = threading.Condition(self.lock)
        self.outstanding = 0
        self.thread: threading.Thread | None = None
        self.pid = 0
        self.holding: tuple[str, str] | None = None  # (alias, claim) being sent

    def submit(self, job: Job) -> None:
        """Queue a job (called on commit; never blocks)."""
        if job[0] and not conf.outbox()["BACKGROUND"]:
            return  # rows wait for the relay
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
            self.queue.put(job)

    def _run(self) -> None:
        while True:
            jobs = [self.queue.get()]
            # A moment for the rest of a burst to arrive: one claim (and one
            # commit) for many rows costs the web threads far less of the GIL.
            time.sleep(COALESCE)
            while True:  # coalesce everything already queued into few claims
                try:
                    jobs.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            rows: dict[str, list[int]] = {}
            for using, items in jobs:
                if using:
                    rows.setdefault(using, []).extend(items)
                else:
                    from . import deliver

                    deliver(items)
            for using, ids in rows.items():
                try:
                    attempt(using, ids)
                except Exception:
                    logger.exception("Immediate delivery failed; the relay will retry")
            if self.queue.empty():
                for using in rows:  # idle: give back this thread's connections
                    connections[using].close()
            with self.idle:
                self.outstanding -= len(jobs)
                self.idle.notify_all()

    def wait(self, timeout: float) -> bool:
        """Wait until every submitted job was tried (tests, interpreter exit)."""
        with self.idle:
            return self.idle.wait_for(lambda: self.outstanding == 0, timeout)


def attempt(using: str, ids: list[int]) -> None:
    """Try each of these rows once (more than one claim if there are many)."""
    from . import shared_handler
    from .relay import Relay

    relay = Relay(shared_handler(), using=using, daemon=True)
    remaining = set(ids)
    try:
        while remaining:
            claimed = relay.claim(remaining)
            if not claimed:
                return  # the rest is not due, or waits behind its subject
            remaining.difference_update(row.pk for row in claimed)
            background.holding = (using, claimed[0].locked_by)
            relay.send(claimed)
            background.holding = None
    finally:
        background.holding = None
        relay.close()


background = Background()


@atexit.register
def _flush_at_exit() -> None:
    # A short grace period so a management command's last events go out; anything
    # left stays pending for the relay.
    if background.thread is None or background.pid != os.getpid():
        return
    if background.wait(timeout=EXIT_GRACE):
        return
    holding = background.holding
    if holding is not None:
        # Still sending (a sink that does not answer): give the claim back now,
        # or the relay would wait out the whole lease for rows this process
        # will never record. The send may still have reached the sink: the
        # relay sends it again, with the same id.
        using, token = holding
        with contextlib.suppress(Exception):
            OutboxEvent.objects.using(using).held(token).release()
            logger.warning(
                "Exiting while CloudEvents were being sent; the relay will send "
                "them (claim %s given back)",
                token,
            )
