"""Commit-to-sink latency with the relay running, woken by NOTIFY (PostgreSQL).

A ``cloudevents_relay`` subprocess (default settings except a ten-minute poll
interval, so only the outbox INSERT's notification can wake it) delivers to a
loopback sink in this process that records when each event arrives. ``count``
creates in autocommit, spread out (``GAP`` apart), each timed at the moment its
commit returned; latency is arrival minus commit, on the same monotonic clock.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from django.db import connections
from django.utils import timezone

from bench.emit import bridge
from bench.models import Question
from bench.relay import truncate
from bench.settings import POSTGRES
from django_cloudevents_bridge.models import RelayHeartbeat

GAP = 0.02  # seconds between creates: spread out, not a burst
ARRIVAL_WAIT = 60.0  # seconds for every event to reach the sink
ROOT = Path(__file__).resolve().parent.parent


class Arrivals(ThreadingHTTPServer):
    """A keep-alive HTTP/1.1 sink: ``ce-subject`` -> perf_counter() at arrival."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: dict[str, float] = {}
        self.changed = threading.Condition()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Arrivals

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        arrived = time.perf_counter()
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()
        with self.server.changed:
            self.server.seen[self.headers.get("ce-subject", "")] = arrived
            self.server.changed.notify_all()

    def log_message(self, format: str, *args: object) -> None:
        pass


def run(count: int) -> tuple[list[float], str | None]:
    """Latencies in ms of ``count`` creates, and a problem (None when all arrived)."""
    sink = Arrivals()
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    db = connections[POSTGRES].settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.relay_settings",
        "PYTHONPATH": str(ROOT),
        "K_SINK": sink.url,
        "PGDATABASE": db["NAME"],
    }
    relay = subprocess.Popen(
        [sys.executable, "-m", "django", "cloudevents_relay"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    commits: dict[str, float] = {}
    try:
        deadline = time.monotonic() + ARRIVAL_WAIT
        heartbeats = RelayHeartbeat.objects.using(POSTGRES)
        # Listening: it writes its first heartbeat after the LISTEN.
        while not heartbeats.exists():
            if relay.poll() is not None or time.monotonic() > deadline:
                return [], "the relay did not start"
            time.sleep(0.05)
        objects = Question.objects.db_manager(POSTGRES)
        with bridge("outbox", "http", {"sink": sink.url}):
            for _ in range(count):
                question = objects.create(question_text="?", pub_date=timezone.now())
                commits[f"DCE:bench.question/{question.pk}"] = time.perf_counter()
                time.sleep(GAP)
        with sink.changed:
            sink.changed.wait_for(lambda: len(sink.seen) >= count, timeout=ARRIVAL_WAIT)
            seen = dict(sink.seen)
    finally:
        relay.send_signal(signal.SIGTERM)
        try:
            relay.wait(30)
        except subprocess.TimeoutExpired:
            relay.kill()
            relay.wait()
        sink.shutdown()
        sink.server_close()
        truncate(POSTGRES)
        RelayHeartbeat.objects.using(POSTGRES).all().delete()
    latencies = [(seen[s] - commits[s]) * 1000 for s in commits if s in seen]
    missing = count - len(latencies)
    return latencies, f"{missing} of {count} never arrived" if missing else None


def main(aliases: list[str], count: int) -> tuple[list[str], bool]:
    """The section's lines, and success."""
    if POSTGRES not in aliases:
        return ["", "Commit-to-sink latency: skipped (needs PostgreSQL)"], True
    latencies, problem = run(count)
    lines = [
        "",
        "Commit-to-sink latency: a cloudevents_relay subprocess woken by NOTIFY"
        " (POLL_INTERVAL 600 s),",
        f"{count} creates in autocommit, {GAP * 1000:.0f} ms apart, to a loopback"
        " sink in this process",
        "",
    ]
    if latencies:
        cuts = statistics.quantiles(latencies, n=100, method="inclusive")
        lines.append(
            f"  p50 {cuts[49]:.1f} ms, p90 {cuts[89]:.1f} ms, p99 {cuts[98]:.1f} ms,"
            f" max {max(latencies):.1f} ms (target p99 <= 50 ms)"
        )
    if problem:
        lines.append(f"  problem: {problem}")
    return lines, problem is None
