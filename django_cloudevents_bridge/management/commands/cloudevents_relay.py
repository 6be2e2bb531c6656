"""``manage.py cloudevents_relay``: deliver the outbox through the handler."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.utils import timezone

from ... import conf
from ...emit.handlers import get_handler, http
from ...emit.outbox import prune
from ...emit.relay import Relay, Result
from ...emit.wakeup import Wakeup
from ...models import RelayHeartbeat

logger = logging.getLogger("django_cloudevents_bridge")

PRUNE_EVERY = 300.0  # seconds between retention sweeps while running
HEARTBEAT_EVERY = 5.0  # seconds between heartbeats (one UPSERT each)


class Command(BaseCommand):
    help = (
        "Deliver pending CloudEvents from the outbox. With --once, drain and exit; "
        "otherwise run until SIGTERM/SIGINT, finishing the batch in hand."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="drain and exit")
        parser.add_argument("--batch-size", type=int, help="rows claimed per round")
        parser.add_argument("--concurrency", type=int, help="sends in flight at once")
        parser.add_argument(
            "--interval", type=float, help="idle poll interval, seconds"
        )
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS)
        parser.add_argument(
            "--heartbeat-file",
            help="touch this file with every heartbeat (a liveness probe's signal)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        settings = conf.outbox()
        if not settings["RELAY"]:
            raise CommandError(
                "CLOUDEVENTS_OUTBOX['RELAY'] is False: the outbox is read by change "
                "data capture (Debezium), not sent by a relay (nothing sent)"
            )
        for key in ("batch_size", "concurrency", "interval"):
            if options[key] is not None:
                name = "POLL_INTERVAL" if key == "interval" else key.upper()
                settings[name] = options[key]
        stop = threading.Event()
        with get_handler(**conf.handler_options()) as handler:
            # The HTTP handler itself; a project's subclass may find its sink.
            if type(handler) is http.Handler and not handler.current_sink():
                # Every attempt would fail and count: a misconfigured cron job
                # would park the whole outbox. Claim nothing, and say so.
                raise CommandError(
                    f"no sink: {conf.env()['SINK_VAR']} is not set (nothing sent)"
                )
            relay = Relay(handler, using=options["database"], options=settings)
            try:
                if options["once"]:
                    # Kept after the exit: it says when the (cron) relay last ran.
                    self.beat(relay, options["heartbeat_file"])
                    relay.recover()
                    self.report(relay.drain())
                else:
                    self.trap(stop)
                    self.loop(
                        relay,
                        stop,
                        settings["POLL_INTERVAL"],
                        options["heartbeat_file"],
                    )
            finally:
                relay.close()
                connections[options["database"]].close()

    def loop(
        self,
        relay: Relay,
        stop: threading.Event,
        interval: float,
        heartbeat_file: str | None = None,
    ) -> None:
        """Drain; then wait for a notification or the poll interval; repeat.

        The heartbeat and the retention sweep run on their own schedules and
        never trigger a drain: with LISTEN, a long poll interval means no
        claims at all while nothing is written.
        """
        total = Result()
        next_prune = next_beat = next_poll = 0.0
        # Listening before the first drain: a row committed in between wakes it.
        wakeup = Wakeup(relay.using, stop)
        try:
            while not stop.is_set():
                try:
                    if time.monotonic() >= next_beat:
                        next_beat = time.monotonic() + HEARTBEAT_EVERY
                        self.beat(relay, heartbeat_file)
                    if time.monotonic() >= next_prune:
                        relay.recover()  # claims of this host's dead relays (SQLite)
                        prune(relay.using)
                        self.forget_gone(relay.using)
                        next_prune = time.monotonic() + PRUNE_EVERY
                    if time.monotonic() >= next_poll:
                        # Until nothing is due, SIGTERM, or the next beat or sweep.
                        until = min(next_prune, next_beat)
                        total += relay.drain(stop, until=until)
                        if time.monotonic() >= until:
                            continue  # cut short: more may be due
                        next_poll = time.monotonic() + interval
                except DatabaseError as err:
                    # The database restarted or failed over: reconnect and go on;
                    # rows this relay had claimed come back at once (PostgreSQL: the
                    # session that held them is gone) or when their lease ends.
                    logger.warning("Relay database error, retrying: %s", err)
                    connections[relay.using].close()
                    stop.wait(max(interval, 1.0))
                    continue
                wake = min(next_poll, next_beat, next_prune)
                if wakeup.wait(wake - time.monotonic()):
                    next_poll = 0.0  # rows were written: drain now
        finally:
            wakeup.close()
            with contextlib.suppress(DatabaseError):  # a clean exit: not running
                RelayHeartbeat.objects.using(relay.using).filter(
                    name=relay.name
                ).delete()
        self.report(total)

    def forget_gone(self, using: str) -> None:
        """Delete the heartbeats of relays that ended without a word a day ago."""
        cutoff = timezone.now() - timedelta(days=1)
        RelayHeartbeat.objects.using(using).filter(last_seen__lt=cutoff).delete()

    def beat(self, relay: Relay, heartbeat_file: str | None) -> None:
        """Say this relay runs: the file for a probe, the row for everyone else."""
        if heartbeat_file:
            Path(heartbeat_file).touch()
        RelayHeartbeat.objects.using(relay.using).beat(relay.name)

    def trap(self, stop: threading.Event) -> None:
        def on_signal(signum: int, frame: Any) -> None:
            self.stderr.write(f"{signal.Signals(signum).name}: finishing the batch")
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    def report(self, result: Result) -> None:
        self.stdout.write(
            f"claimed {result.claimed}, delivered {result.delivered}, "
            f"failed {result.failed}, parked {result.parked}"
        )
