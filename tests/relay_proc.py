"""Real relay processes for tests, the database they share, and a sink that counts.

``Relays.start()`` runs ``python -m django cloudevents_relay`` with
``tests.relay_settings`` against the test's own database: the PostgreSQL test
database itself, or for SQLite (whose test database lives in the test process's
memory) a file that ``SharedDatabase`` copies the test database to and back from.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import connection

from django_cloudevents_bridge.emit import _claimant
from tests.sink import Fault, Sink

ROOT = Path(__file__).resolve().parent.parent
HOLD_TIMEOUT = 20.0  # a held request is let go after this, whatever the test does


def _ignore(request: Any, client_address: Any) -> None:
    pass


class CountingSink(Sink):
    """A sink that counts arrivals per event id and can hold requests on demand.

    ``hold_after(n)``: answer the first ``n`` requests, then keep each later one
    waiting (before it is recorded) until ``release()``; ``held`` counts the held
    requests not yet recorded. That stops a relay mid-batch at a known point,
    without timing guesses.
    """

    def __init__(self, port: int = 0) -> None:
        super().__init__(port)
        self._limit: int | None = None
        self._gate = threading.Event()
        self._gate.set()
        self._local = threading.local()
        self.held = 0
        # A relay killed mid-request leaves the sink answering a closed socket.
        self.server.handle_error = _ignore  # type: ignore[method-assign]

    def hold_after(self, count: int) -> None:
        with self._lock:
            self._limit = count
            self._gate.clear()

    def release(self) -> None:
        with self._lock:
            self._limit = None
            self._gate.set()

    def _next_fault(self) -> Fault | None:
        fault = super()._next_fault()
        with self._lock:
            hold = self._limit is not None and self.attempts > self._limit
            if hold:
                self.held += 1
        if hold:
            self._gate.wait(HOLD_TIMEOUT)
            if fault and (fault.drop or fault.status):  # will not be recorded
                with self._lock:
                    self.held -= 1
            else:
                self._local.held = True
        return fault

    def _record(self, received: Any) -> None:
        with self._arrived:
            self.received.append(received)
            if getattr(self._local, "held", False):
                self._local.held = False
                self.held -= 1
            self._arrived.notify_all()

    def ids(self) -> list[str]:
        """Event ids in the order they arrived, duplicates included."""
        with self._lock:
            return [r.attributes["id"] for r in self.received]

    def counts(self) -> Counter[str]:
        return Counter(self.ids())

    def duplicates(self) -> dict[str, int]:
        """Event ids that arrived more than once, with how often."""
        return {id_: n for id_, n in self.counts().items() if n > 1}

    def distinct(self) -> int:
        """How many different events arrived."""
        return len({r.attributes["id"] for r in self.received})


@dataclass
class SharedDatabase:
    """The test's database as relay subprocesses see it."""

    directory: Path
    file: Path | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if connection.vendor == "sqlite":
            self.file = self.directory / "outbox.sqlite3"
        elif connection.vendor != "postgresql":  # pragma: no cover - not supported
            raise NotImplementedError(connection.vendor)

    def env(self) -> dict[str, str]:
        if self.file is not None:
            return {"RELAY_SQLITE": str(self.file)}
        return {"PGDATABASE": connection.settings_dict["NAME"]}

    def publish(self) -> None:
        """Make what the test committed visible to subprocesses (SQLite: copy out)."""
        if self.file is not None:
            connection.ensure_connection()
            with contextlib.closing(sqlite3.connect(self.file)) as target:
                connection.connection.backup(target)

    def refresh(self) -> None:
        """Make what subprocesses committed visible to the test (SQLite: copy in)."""
        if self.file is not None:
            connection.ensure_connection()
            with contextlib.closing(sqlite3.connect(self.file, timeout=30)) as source:
                source.backup(connection.connection)


@dataclass
class RelayProcess:
    """One ``cloudevents_relay`` subprocess; its output goes to files."""

    process: subprocess.Popen
    stdout: Path
    stderr: Path
    signalled: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def name(self) -> str:
        """The prefix of every ``locked_by`` this relay writes (see Relay.name)."""
        return f"{_claimant.host()}:{self.pid}"

    def send(self, signum: int) -> None:
        self.signalled = True
        self.process.send_signal(signum)

    def wait(self, timeout: float = 15.0) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired as err:
            self.stop()
            raise AssertionError(
                f"relay {self.pid} still running after {timeout}s"
            ) from err

    def output(self) -> tuple[str, str]:
        return self.stdout.read_text(), self.stderr.read_text()

    def stop(self) -> None:
        """SIGKILL the process if it still runs, and reap it."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)


@dataclass
class Relays:
    """Starts relay subprocesses for one test; ``stop_all()`` ends every one."""

    directory: Path
    sink: Sink
    database: SharedDatabase
    started: list[RelayProcess] = field(default_factory=list)

    def start(
        self, *args: str, command: str = "cloudevents_relay", **outbox: Any
    ) -> RelayProcess:
        """Run ``command *args`` with ``CLOUDEVENTS_OUTBOX`` overrides."""
        number = len(self.started)
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("K_CE_OVERRIDES", "K_SOURCE", "RELAY_SQLITE")
        }
        env.update(
            DJANGO_SETTINGS_MODULE="tests.relay_settings",
            PYTHONPATH=os.pathsep.join(
                filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])
            ),
            PYTHONUNBUFFERED="1",
            K_SINK=self.sink.url,
            RELAY_OUTBOX=json.dumps(outbox),
            **self.database.env(),
        )
        stdout = self.directory / f"relay{number}.out"
        stderr = self.directory / f"relay{number}.err"
        with stdout.open("wb") as out, stderr.open("wb") as err:
            process = subprocess.Popen(
                [sys.executable, "-m", "django", command, *args],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,  # a Ctrl-C in the terminal is not theirs
            )
        relay = RelayProcess(process, stdout, stderr)
        self.started.append(relay)
        return relay

    def until(self, check: Callable[[], bool], timeout: float = 15.0) -> None:
        """Poll ``check``; fail at the timeout, or at once if a relay died unasked."""
        deadline = time.monotonic() + timeout
        while not check():
            crashed = [r for r in self.started if not r.signalled and r.process.poll()]
            if crashed or time.monotonic() > deadline:
                why = "a relay exited" if crashed else f"not reached in {timeout}s"
                raise AssertionError(f"condition {why}\n{self.report()}")
            time.sleep(0.02)

    def report(self) -> str:
        """Each relay's pid, exit status and the end of its stderr."""
        lines = []
        for relay in self.started:
            tail = relay.stderr.read_text(errors="replace")[-1500:]
            lines.append(f"relay {relay.pid}: exit {relay.process.poll()}\n{tail}")
        return "\n".join(lines)

    def stop_all(self) -> None:
        for relay in self.started:
            relay.stop()
