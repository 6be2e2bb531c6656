"""``manage.py cloudevents_relay``: deliver the outbox through the handler."""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

from ... import conf
from ...emit.handlers import get_handler, http
from ...emit.outbox import prune
from ...emit.relay import Relay, Result

logger = logging.getLogger("django_cloudevents_bridge")

PRUNE_EVERY = 300.0  # seconds between retention sweeps while running


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

    def handle(self, *args: Any, **options: Any) -> None:
        settings = conf.outbox()
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
                    relay.recover()
                    self.report(relay.drain())
                else:
                    self.trap(stop)
                    self.loop(relay, stop, settings["POLL_INTERVAL"])
            finally:
                relay.close()
                connections[options["database"]].close()

    def loop(self, relay: Relay, stop: threading.Event, interval: float) -> None:
        total = Result()
        next_prune = 0.0
        while not stop.is_set():
            try:
                if time.monotonic() >= next_prune:
                    relay.recover()  # claims of this host's dead relays (SQLite)
                    prune(relay.using)
                    next_prune = time.monotonic() + PRUNE_EVERY
                # Until nothing is due, SIGTERM, or the next retention sweep.
                result = relay.drain(stop, until=next_prune)
            except DatabaseError as err:
                # The database restarted or failed over: reconnect and go on;
                # rows this relay had claimed come back at once (PostgreSQL: the
                # session that held them is gone) or when their lease ends.
                logger.warning("Relay database error, retrying: %s", err)
                connections[relay.using].close()
                stop.wait(max(interval, 1.0))
                continue
            total += result
            if time.monotonic() < next_prune:  # not cut short by the sweep
                stop.wait(interval)
        self.report(total)

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
