"""``manage.py cloudevents_worker``: run deferred target runs that are due, and
send the notifications that are due.

Needs no task backend: with none it is the whole engine of deferred mode; with
one it is the sweeper for lost enqueues, retries and crashed task workers.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

from ... import conf, notifications, work

logger = logging.getLogger("django_cloudevents_bridge")

HEARTBEAT_EVERY = 5.0  # seconds: at most this long between touches of the file


class Heartbeat:
    """Touches a file (if given) when called, at most once a second unless forced."""

    def __init__(self, path: str | None) -> None:
        self.path = Path(path) if path else None
        self.last = -math.inf

    def __call__(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.path is not None and (force or now - self.last >= 1.0):
            self.path.touch()
            self.last = now


class Command(BaseCommand):
    help = (
        "Run the received events' deferred target runs that are due. With --once, "
        "drain and exit; otherwise run until SIGTERM/SIGINT, finishing the run "
        "in hand."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="drain and exit")
        parser.add_argument(
            "--interval", type=float, help="idle poll interval, seconds"
        )
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS)
        parser.add_argument(
            "--heartbeat-file",
            help="touch this file between runs, at least every few seconds while "
            "idle (a liveness probe's signal; a target that hangs stops it)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        using = options["database"]
        interval = options["interval"] or conf.receiver()["POLL_INTERVAL"]
        stop = threading.Event()
        total: Counter[str] = Counter()
        sent: Counter[str] = Counter()
        beat = Heartbeat(options["heartbeat_file"])
        try:
            if options["once"]:
                total = work.process(using=using, after_each=beat)
                sent = notifications.send_due(using=using)
            else:
                self.trap(stop)
                while not stop.is_set():
                    beat(force=True)
                    try:
                        total += work.process(stop=stop, using=using, after_each=beat)
                        sent += notifications.send_due(stop=stop, using=using)
                    except DatabaseError as err:  # a restart or failover
                        logger.warning("Worker database error, retrying: %s", err)
                        connections[using].close()
                    stop.wait(min(interval, HEARTBEAT_EVERY))
        finally:
            connections[using].close()
        self.stdout.write(
            ", ".join(
                f"{outcome} {total[outcome]}"
                for outcome in ("done", "failed", "parked", "rejected")
            )
        )
        if sent:
            self.stdout.write(
                "notifications: "
                + ", ".join(f"{o} {sent[o]}" for o in ("sent", "failed", "parked"))
            )

    def trap(self, stop: threading.Event) -> None:
        def on_signal(signum: int, frame: Any) -> None:
            self.stderr.write(f"{signal.Signals(signum).name}: finishing the run")
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
