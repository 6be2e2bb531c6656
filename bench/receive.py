"""Receiver throughput under gunicorn: ReceiverView with dedupe vs a bare view.

``python -m bench.receive`` starts one gunicorn (gthread workers) serving three
URLs of one Django project, through one middleware stack:

- ``/bare/``: a view that reads the body and answers 202 (the baseline: what any
  Django receiver pays before doing work);
- ``/insert/``: the same plus one autocommit INSERT, for reference (the least a
  receiver that stores anything pays on this machine);
- ``/atomic/``: the same INSERT inside ``transaction.atomic()`` (BEGIN, INSERT,
  COMMIT: the round trips any receiver pays that runs a target in the
  transaction that stores the event), for reference;
- ``/cloudevents/``: ``ReceiverView`` with the received-event store on PostgreSQL
  and one trivial group handler: each event parsed, stored once, its target
  claimed, run and marked done;
- ``/deferred/``: ``ReceiverView`` in deferred mode: each event parsed, stored
  once with its target's run due, 202 (no task backend). After the load, the
  worker's loop (``cloudevents_worker --once``) drains those runs in a
  subprocess, timed: the drain rate with the trivial target;
- ``/deferred-tasks/``: the same, then the enqueue on ``django-tasks-db`` that a
  configured task backend adds (a second write: the task's row).

The PostgreSQL database is this run's own (created, migrated and dropped). A load
generator in this process posts binary-mode events, each with a new id, from
keep-alive connections in a closed loop, through raw sockets and prepared bytes so
that it costs little next to the server. Rounds rotate the URLs' order; the table
gives events/s (median over rounds), p50/p99 latency (all requests), the ratio
to the bare view, and the CPU time per request of gunicorn's processes and of
PostgreSQL's (median over rounds, from /proc): steadier than events/s on a shared
machine, and where each event's cost goes. The run fails (exit 1) unless every
request got a 202, every receiver event was stored once with its target done, and
the server logged no warning or error; missing the throughput target is reported,
not a failure.

The runner never configures Django in its own process (``python -m bench`` may
have): ``configure()`` runs in gunicorn's workers and in the one subprocess that
migrates the bench database.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MODULE = "bench.receive"  # not __name__, which is "__main__" under -m
DATABASE_VAR = "BENCH_RECEIVE_DATABASE"
LISTENING = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")
START_TIMEOUT = 30.0
TARGET = 0.6  # DESIGN.md, Performance: receiver >= 0.6x the bare view
# Issue 14: inline >= 0.7x and deferred >= 0.8x the raw-INSERT view; the worker
# drains >= 700 trivial target runs/s.
INSERT_TARGETS = {"receiver": 0.7, "deferred": 0.8}
DRAIN_TARGET = 700.0
FLOOR_RUNS = 3000  # rows the drain's floor is measured over
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django_cloudevents_bridge.middleware.ReceiverSlashMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
LOG_MARK = "BENCH-LOG"  # prefixes warnings and errors in the server's log
INSERT_SOURCE = "urn:bench:insert-view"  # rows of the reference view, not events
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

urlpatterns: list[Any] = []  # ROOT_URLCONF; filled by configure()


# -- the server side: runs in gunicorn's workers -------------------------------


def postgres(name: str | None = None) -> dict[str, Any]:
    """PostgreSQL as the test suite reaches it (PGHOST, PGPORT, PGUSER, ...)."""
    return {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": os.environ.get("PGHOST", "127.0.0.1"),
        "PORT": os.environ.get("PGPORT", "5432"),
        "USER": os.environ.get("PGUSER", "postgres"),
        "PASSWORD": os.environ.get("PGPASSWORD", ""),
        "NAME": name or os.environ.get("PGDATABASE", "test"),
        # Persistent connections, as a production receiver would run.
        "CONN_MAX_AGE": None,
    }


def configure() -> None:
    """Settings for the bench project, on the database named by DATABASE_VAR."""
    import django
    from django.conf import settings
    from django.db import transaction
    from django.http import HttpRequest, HttpResponse
    from django.urls import include, path
    from django.views.decorators.csrf import csrf_exempt

    settings.configure(
        SECRET_KEY="bench-only",
        DEBUG=False,
        ALLOWED_HOSTS=["127.0.0.1"],
        USE_TZ=True,
        TIME_ZONE="UTC",
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django_cloudevents_bridge",
            "django_tasks_db",
        ],
        # One URL enqueues on django-tasks-db itself; the others have no backend.
        TASKS={"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}},
        CLOUDEVENTS_RECEIVER={"TASK_BACKEND": False},
        DATABASES={"default": postgres(os.environ[DATABASE_VAR])},
        MIDDLEWARE=MIDDLEWARE,
        ROOT_URLCONF=MODULE,
        CLOUDEVENTS_HANDLER="locmem",
        CLOUDEVENTS_SOURCE="urn:django:bench",
        # Open on purpose: no auth's cost in the numbers (and no warning).
        SILENCED_SYSTEM_CHECKS=["cloudevents_bridge.W003"],
        LOGGING={
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"marked": {"format": f"{LOG_MARK} %(name)s: %(message)s"}},
            "handlers": {
                "stderr": {"class": "logging.StreamHandler", "formatter": "marked"}
            },
            "loggers": {
                name: {"handlers": ["stderr"], "level": "WARNING"}
                for name in ("django", "django_cloudevents_bridge")
            },
        },
    )
    django.setup()
    from django_cloudevents_bridge.models import ReceivedEvent
    from django_cloudevents_bridge.receive import store
    from django_cloudevents_bridge.receive.views import ReceiverView

    class Deferred(ReceiverView):
        """ReceiverView.post with MODE "deferred", on this URL only."""

        def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            self.authenticate(request)
            received = self.receive(request)
            for event in received:
                store.check(event)
            return self.defer(received)

    class DeferredTasks(ReceiverView):
        """Deferred, and enqueued on django-tasks-db as ``work.enqueue`` does
        when it is the project's backend (settings are global: so by hand)."""

        def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            from django_cloudevents_bridge import work
            from django_cloudevents_bridge.tasks import process_events

            self.authenticate(request)
            received = self.receive(request)
            for event in received:
                store.check(event)
            stored = work.store(received)  # committed: one event, autocommit
            if stored:
                process_events.using(backend="default").enqueue(stored)
            return HttpResponse(status=202)

    @csrf_exempt
    def bare(request: HttpRequest) -> HttpResponse:
        request.body  # noqa: B018  (read it, as any receiver must)
        return HttpResponse(status=202)

    @csrf_exempt
    def insert(request: HttpRequest) -> HttpResponse:
        ReceivedEvent.objects.create(
            source=INSERT_SOURCE,
            event_id=request.headers["ce-id"],
            type=request.headers["ce-type"],
            event=request.body.decode(),
        )
        return HttpResponse(status=202)

    @csrf_exempt
    def atomic(request: HttpRequest) -> HttpResponse:
        with transaction.atomic():
            return insert(request)

    urlpatterns[:] = [
        path("bare/", bare),
        path("insert/", insert),
        path("atomic/", atomic),
        path("cloudevents/", include("django_cloudevents_bridge.urls")),
        path("deferred/", Deferred.as_view()),
        path("deferred-tasks/", DeferredTasks.as_view()),
    ]


def noop(event: Any) -> None:
    """The one group handler: no work of its own, so the store's cost shows."""


def application() -> Any:
    """gunicorn's entry point (``bench.receive:application()``)."""
    configure()
    from django.core.wsgi import get_wsgi_application

    from django_cloudevents_bridge import register_group_handler

    register_group_handler(noop, group=r"^bench\.")
    return get_wsgi_application()


def drain() -> None:
    """Run the deferred runs the load left due, as the worker does; print the rate."""
    application()
    from django_cloudevents_bridge import work

    started = time.perf_counter()
    outcomes = work.process()
    print(sum(outcomes.values()), time.perf_counter() - started, dict(outcomes))


def migrate() -> None:
    """Create the bench database's tables (run in a subprocess)."""
    configure()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


# -- the runner ----------------------------------------------------------------


def connect(name: str | None = None) -> Any:
    import psycopg

    db = postgres(name)
    return psycopg.connect(
        host=db["HOST"],
        port=db["PORT"],
        user=db["USER"],
        password=db["PASSWORD"] or None,
        dbname=db["NAME"],
        connect_timeout=3,
        autocommit=True,
    )


@contextlib.contextmanager
def scratch_database() -> Any:
    """A PostgreSQL database of this run's own, dropped at the end."""
    name = f"bench_receive_{os.getpid()}"
    with connect() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with connect() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def server_env(database: str) -> dict[str, str]:
    """The environment of the server's processes: the bench database's name."""
    env = dict(os.environ)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env[DATABASE_VAR] = database
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])
    )
    return env


@dataclass
class Gunicorn:
    """gunicorn serving ``application()`` in a process group of its own."""

    database: str
    log: Path
    workers: int
    threads: int
    process: subprocess.Popen | None = None
    port: int = 0

    def __enter__(self) -> Gunicorn:
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind=127.0.0.1:0",
            f"--workers={self.workers}",
            "--worker-class=gthread",
            f"--threads={self.threads}",
            "--keep-alive=30",
            "--graceful-timeout=2",
            "--error-logfile=-",
            f"{MODULE}:application()",
        ]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=server_env(self.database),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self.port = self._port()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _port(self) -> int:
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            found = LISTENING.search(self.log.read_text(errors="replace"))
            if found:
                return int(found.group(1))
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"gunicorn did not start:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def __exit__(self, *exc: object) -> None:
        process = self.process
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)
        with contextlib.suppress(ProcessLookupError):  # workers must not outlive it
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5)
        self.process = None


@dataclass
class Round:
    """One timed run of the load generator against one URL."""

    requests: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # connections that broke
    server_cpu: float = 0.0  # seconds of CPU gunicorn's processes used
    database_cpu: float = 0.0  # seconds of CPU PostgreSQL's processes used

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def accepted(self) -> int:
        return self.statuses.get(202, 0)


def request_template(path: str, port: int) -> bytes:
    """A binary-mode POST with a ``%d`` where each request's id goes."""
    body = b'{"question_text": "What is up?", "pub_date": "2026-11-01T00:00:00Z"}'
    head = (
        f"POST {path} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        "ce-specversion: 1.0\r\n"
        "ce-id: %d\r\n"
        "ce-source: urn:bench:load\r\n"
        "ce-type: bench.created\r\n"
        "ce-time: 2026-11-01T00:00:00Z\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body.replace(b"%", b"%%")


def read_response(sock: socket.socket, buffer: bytearray) -> int:
    """Read one response off a keep-alive connection; return its status code."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        buffer += chunk
    end = buffer.index(b"\r\n\r\n") + 4
    head = bytes(buffer[:end]).lower()
    length = 0
    for line in head.split(b"\r\n"):
        if line.startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    while len(buffer) < end + length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        buffer += chunk
    status = int(head.split(b" ", 2)[1])
    del buffer[: end + length]
    return status


def load(
    port: int, path: str, connections: int, seconds: float, ids: Iterator[int]
) -> Round:
    """Closed loop from ``connections`` keep-alive sockets for ``seconds``."""
    template = request_template(path, port)
    result = Round()
    lock = threading.Lock()
    sockets = [
        socket.create_connection(("127.0.0.1", port), 5) for _ in range(connections)
    ]
    start = threading.Barrier(connections + 1)
    deadline = 0.0

    def worker(sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(30)
        latencies: list[float] = []
        statuses: dict[int, int] = {}
        buffer = bytearray()
        start.wait()
        clock = time.perf_counter
        error = None
        try:
            while (sent := clock()) < deadline:
                sock.sendall(template % next(ids))  # itertools.count: thread-safe
                status = read_response(sock, buffer)
                latencies.append(clock() - sent)
                statuses[status] = statuses.get(status, 0) + 1
        except OSError as err:  # counted: the run fails
            error = f"{type(err).__name__}: {err}"
        with lock:
            if error:
                result.errors.append(error)
            result.latencies += latencies
            for status, count in statuses.items():
                result.statuses[status] = result.statuses.get(status, 0) + count

    threads = [threading.Thread(target=worker, args=(s,)) for s in sockets]
    try:
        for thread in threads:
            thread.start()
        began = time.perf_counter()
        deadline = began + seconds
        start.wait()
        for thread in threads:
            thread.join()
        result.seconds = time.perf_counter() - began
    finally:
        for sock in sockets:
            sock.close()
    result.requests = len(result.latencies)
    return result


def cpu_seconds(server_group: int) -> tuple[float, float]:
    """CPU time so far of gunicorn's process group and of PostgreSQL's processes.

    Read from /proc (Linux; zeros elsewhere). CPU per request is steadier than
    requests/s on a shared machine, and shows where an event's cost goes. The
    PostgreSQL processes are all of the server's: nothing else should use it
    during the run.
    """
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    server = database = 0.0
    try:
        pids = [name for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return 0.0, 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                text = stat.read()
        except OSError:  # gone meanwhile
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        fields = text[text.rindex(")") + 2 :].split()
        used = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
        if int(fields[2]) == server_group:  # pgrp
            server += used
        elif name == "postgres":
            database += used
    return server, database


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def stored(database: str) -> tuple[int, int, int]:
    """(events stored, target runs done, target runs not done) in the bench DB."""
    with connect(database) as db:
        events = db.execute(
            "SELECT count(*) FROM django_cloudevents_bridge_receivedevent"
            " WHERE source <> %s",
            [INSERT_SOURCE],
        ).fetchone()[0]
        done, other = db.execute(
            "SELECT count(*) FILTER (WHERE status = 'done'),"
            " count(*) FILTER (WHERE status <> 'done')"
            " FROM django_cloudevents_bridge_targetrun"
        ).fetchone()
    return events, done, other


def header(workers: int, threads: int, connections: int) -> str:
    with connect() as db:
        server = db.execute("SHOW server_version").fetchone()[0].split()[0]
        commit = db.execute("SHOW synchronous_commit").fetchone()[0]
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}"
    return (
        f"django-cloudevents-bridge {version('django-cloudevents-bridge')}, "
        f"Python {platform.python_version()}, Django {version('Django')}, "
        f"gunicorn {version('gunicorn')}, psycopg {version('psycopg')},\n"
        f"PostgreSQL {server} (synchronous_commit={commit}, CONN_MAX_AGE=None), "
        f"{machine}\n"
        f"gunicorn: {workers} gthread workers x {threads} threads; load: "
        f"{connections} keep-alive connections, closed loop, binary-mode events"
    )


VARIANTS = {  # name: (path, label); "bare" is the baseline
    "bare": ("/bare/", "bare Django view (202)"),
    "insert": ("/insert/", "view + one INSERT (reference)"),
    "atomic": ("/atomic/", "view + INSERT in atomic() (reference)"),
    "receiver": ("/cloudevents/", "ReceiverView, dedupe on PostgreSQL"),
    "deferred": ("/deferred/", "ReceiverView, deferred (store, 202)"),
    "tasks": ("/deferred-tasks/", "deferred + django-tasks-db enqueue"),
}


def run(
    rounds: int = 5,
    seconds: float = 3.0,
    connections: int = 8,
    workers: int = 2,
    threads: int = 4,
) -> tuple[list[str], bool]:
    """Measure; return the table's lines and whether every check passed."""
    results: dict[str, list[Round]] = {name: [] for name in VARIANTS}
    ids = itertools.count()  # event ids, unique over the run (dedupe is on)
    with (
        tempfile.TemporaryDirectory(prefix="bench-receive-") as directory,
        scratch_database() as database,
    ):
        subprocess.run(
            [sys.executable, "-c", f"import {MODULE} as m; m.migrate()"],
            cwd=ROOT,
            env=server_env(database),
            check=True,
            timeout=60,
        )
        log = Path(directory) / "gunicorn.log"
        with Gunicorn(database, log, workers, threads) as server:
            warm = [
                load(server.port, path, connections, 1.0, ids)
                for path, _ in VARIANTS.values()
            ]
            names = list(VARIANTS)
            for number in range(rounds):
                # Rotate the order, so no variant always follows the same one.
                order = names[number % len(names) :] + names[: number % len(names)]
                for name in order:
                    path = VARIANTS[name][0]
                    assert server.process is not None
                    before = cpu_seconds(server.process.pid)  # its own group
                    result = load(server.port, path, connections, seconds, ids)
                    after = cpu_seconds(server.process.pid)
                    result.server_cpu = after[0] - before[0]
                    result.database_cpu = after[1] - before[1]
                    results[name].append(result)
            tail = server.tail()
            logged = [
                line
                for line in server.log.read_text(errors="replace").splitlines()
                if line.startswith(LOG_MARK)
            ]
        drained = subprocess.run(
            [sys.executable, "-c", f"import {MODULE} as m; m.drain()"],
            cwd=ROOT,
            env=server_env(database),
            check=True,
            timeout=600,
            capture_output=True,
            text=True,
        ).stdout.split(maxsplit=2)
        events, done, not_done = stored(database)
        floor = floor_drain(database, min(int(drained[0]), FLOOR_RUNS))

    every = [*warm, *(r for rs in results.values() for r in rs)]
    sent = sum(r.requests for r in every)
    accepted = sum(r.accepted for r in every)
    receiver = sum(
        r.requests
        for name in ("receiver", "deferred", "tasks")
        for r in [warm[list(VARIANTS).index(name)], *results[name]]
    )
    ok = accepted == sent and events == done == receiver and not not_done
    errors = [error for r in every for error in r.errors]
    ok = ok and not logged and not errors
    rates = {
        name: statistics.median(r.rate for r in rs) for name, rs in results.items()
    }
    lines = [
        f"receiver throughput, {rounds} rounds x {seconds:g} s per URL, interleaved"
        " (events/s: median over rounds; latency: all requests)",
        f"  {'':36}{'events/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'vs bare':>9}"
        f"{'CPU us/request: gunicorn':>26}{'PostgreSQL':>12}",
    ]
    for name, rs in results.items():
        latencies = [latency for r in rs for latency in r.latencies]
        server = statistics.median(r.server_cpu / r.requests * 1e6 for r in rs)
        database = statistics.median(r.database_cpu / r.requests * 1e6 for r in rs)
        lines.append(
            f"  {VARIANTS[name][1]:36}{rates[name]:>10,.0f}"
            f"{percentile(latencies, 0.5) * 1000:>9.2f}"
            f"{percentile(latencies, 0.99) * 1000:>9.2f}"
            f"{rates[name] / rates['bare']:>8.2f}x"
            f"{server:>26,.0f}{database:>12,.0f}"
        )
    ratios = [
        r.rate / b.rate
        for r, b in zip(results["receiver"], results["bare"], strict=True)
    ]
    ratio = rates["receiver"] / rates["bare"]
    verdict = "meets" if ratio >= TARGET else "MISSES"
    lines.append(
        f"  receiver / bare: {ratio:.2f}x (rounds {min(ratios):.2f}-{max(ratios):.2f});"
        f" {verdict} the target >= {TARGET}x"
    )
    for name, target in INSERT_TARGETS.items():
        ratio = rates[name] / rates["insert"]
        verdict = "meets" if ratio >= target else "MISSES"
        lines.append(
            f"  {name} / one-INSERT view: {ratio:.2f}x; {verdict} the target"
            f" >= {target}x"
        )
    lines.append(
        f"  deferred with the django-tasks-db enqueue / one-INSERT view:"
        f" {rates['tasks'] / rates['insert']:.2f}x (the enqueue is a second write;"
        " the target applies without a backend)"
    )
    runs, seconds = int(drained[0]), float(drained[1])
    verdict = "meets" if runs / seconds >= DRAIN_TARGET else "MISSES"
    lines.append(
        f"  worker drain (one process, trivial target): {runs} runs in"
        f" {seconds:.1f} s, {runs / seconds:,.0f} runs/s; {verdict} the target"
        f" >= {DRAIN_TARGET:,.0f}/s"
    )
    lines.append(
        f"  its floor (a run's statements and two commits, prebuilt, psycopg"
        f" alone): {floor:,.0f} runs/s; the worker drains at"
        f" {runs / seconds / floor:.2f}x of it"
        + ("; the target is above this run's floor" if floor < DRAIN_TARGET else "")
    )
    if ok:
        lines.append(
            f"  checked: all {sent} requests answered 202; the receiver's {receiver}"
            " events stored once each, their target done"
        )
    else:
        statuses: dict[int, int] = {}
        for r in every:
            for status, count in r.statuses.items():
                statuses[status] = statuses.get(status, 0) + count
        lines.append(
            f"  check FAILED: statuses {statuses} for {sent} requests; receiver:"
            f" {receiver} requests, {events} events stored, {done} targets done,"
            f" {not_done} not done; {len(logged)} warnings or errors logged;"
            f" connection errors: {errors[:3]}\n{tail}"
        )
    return lines, ok


def floor_drain(database: str, count: int) -> float:
    """The drain's floor: the statements and commits of a worker's run, prebuilt,
    from psycopg alone, over ``count`` rows of a scratch table; runs/s.

    Per run, as ``work.run_one``: the claim (an UPDATE of the next due row with
    ``SKIP LOCKED``, committed on its own), then one transaction that locks the
    run, reads its event and records it done. On a machine where a commit's
    flush is slow this, not Python, sets the pace.
    """
    with connect(database) as conn:
        conn.execute(
            "CREATE TABLE bench_floor (id bigserial PRIMARY KEY, status text NOT "
            "NULL, attempts int NOT NULL DEFAULT 0, locked_until timestamptz, "
            "event text NOT NULL)"
        )
        conn.execute(
            "CREATE INDEX bench_floor_due ON bench_floor (id) WHERE status = 'pending'"
        )
        conn.execute(
            "INSERT INTO bench_floor (status, event) SELECT 'pending', "
            "repeat('x', 400) FROM generate_series(1, %s)",
            (count,),
        )
        conn.execute("ANALYZE bench_floor")
        claim = (
            "UPDATE bench_floor SET attempts = attempts + 1, locked_until = now() + "
            "interval '60 seconds' WHERE id = (SELECT id FROM bench_floor WHERE "
            "status = 'pending' AND (locked_until IS NULL OR locked_until < now()) "
            "ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id"
        )
        done = 0
        started = time.perf_counter()
        while True:
            row = conn.execute(claim).fetchone()
            if row is None:
                break
            with conn.transaction():
                conn.execute(
                    "SELECT id FROM bench_floor WHERE id = %s AND status = "
                    "'pending' FOR UPDATE",
                    row,
                )
                conn.execute("SELECT event FROM bench_floor WHERE id = %s", row)
                conn.execute(
                    "UPDATE bench_floor SET status = 'done', locked_until = NULL "
                    "WHERE id = %s",
                    row,
                )
            done += 1
        elapsed = time.perf_counter() - started
        conn.execute("DROP TABLE bench_floor")
    return done / elapsed


def postgres_problem() -> str | None:
    import psycopg

    try:
        with connect() as db:
            db.execute("SELECT 1")
    except psycopg.Error as err:
        return " ".join(str(err).split()) or type(err).__name__
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.receive",
        description="Receiver throughput under gunicorn vs a bare Django view.",
    )
    parser.add_argument("--rounds", type=int, default=5, help="default: %(default)s")
    parser.add_argument(
        "--seconds", type=float, default=3.0, help="per URL and round (%(default)s)"
    )
    parser.add_argument("--connections", type=int, default=8, help="%(default)s")
    parser.add_argument("--workers", type=int, default=2, help="%(default)s")
    parser.add_argument("--threads", type=int, default=4, help="%(default)s")
    args = parser.parse_args(argv)
    started = time.monotonic()
    problem = postgres_problem()
    if problem:
        print(f"skipped: PostgreSQL unavailable ({problem})", file=sys.stderr)
        return 1 if CI else 0
    print(header(args.workers, args.threads, args.connections), flush=True)
    lines, ok = run(
        args.rounds, args.seconds, args.connections, args.workers, args.threads
    )
    print("\n".join(lines))
    print(f"run time: {time.monotonic() - started:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
