"""The test project under a real WSGI server (gunicorn), for end-to-end tests.

``Server.start()`` runs gunicorn (several workers and threads) in a process group
of its own, on a free loopback port, with ``tests.e2e_settings`` against the
test's own database; ``stop()`` ends the whole group. Its workers load
``tests.server:application()``, which registers the group handlers below. Each
run of a handler writes one ``Tag`` row, so ``effects()`` counts how many times a
handler ran (and committed) for each event.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
FAIL_FLAG = "e2e-fail"  # while a Tag with this name exists, flaky() raises
LISTENING = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")
START_TIMEOUT = 30.0


def application() -> Any:
    """gunicorn's entry point: the WSGI app, with the e2e group handlers."""
    from django.core.wsgi import get_wsgi_application

    app = get_wsgi_application()  # django.setup() first: the package needs apps
    from django_cloudevents_bridge import register_group_handler

    register_group_handler(record, group=r"^e2e\.")
    register_group_handler(flaky, group=r"^e2e\.flaky$")
    return app


def record(event: Any) -> None:
    """Every ``e2e.*`` event: one row per run; ``e2e.slow`` holds its claim a bit."""
    if event.get_type() == "e2e.slow":
        time.sleep(0.05)  # widen the window in which duplicates overlap
    write_effect("record", event.get_id())


def flaky(event: Any) -> None:
    """``e2e.flaky`` events: fails while the FAIL_FLAG row exists."""
    from tests.testapp.models import Tag

    if Tag.objects.filter(name=FAIL_FLAG).exists():
        raise RuntimeError("flaky target told to fail")
    write_effect("flaky", event.get_id())


def write_effect(handler: str, event_id: str) -> None:
    from tests.testapp.models import Tag

    # A fresh suffix per run: a second run adds a row instead of colliding.
    Tag.objects.create(name=f"{handler}:{event_id}:{uuid.uuid4().hex[:8]}")


def effects() -> Counter[tuple[str, str]]:
    """How many committed runs each (handler, event id) has, from the Tag rows."""
    from tests.testapp.models import Tag

    counts: Counter[tuple[str, str]] = Counter()
    for name in Tag.objects.exclude(name=FAIL_FLAG).values_list("name", flat=True):
        handler, event_id, _ = name.split(":")
        counts[handler, event_id] += 1
    return counts


@dataclass
class SharedDatabase:
    """The test's database as the server sees it.

    PostgreSQL: the test database itself. SQLite: the test database lives in the
    test process's memory, so it is copied to a file for the server (``publish``)
    and back (``refresh``) with SQLite's backup API.
    """

    directory: Path
    file: Path | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if connection.vendor == "sqlite":
            self.file = self.directory / "e2e.sqlite3"
        elif connection.vendor != "postgresql":  # pragma: no cover - not supported
            raise NotImplementedError(connection.vendor)

    def env(self) -> dict[str, str]:
        if self.file is not None:
            return {"E2E_SQLITE": str(self.file)}
        return {"PGDATABASE": connection.settings_dict["NAME"]}

    def publish(self) -> None:
        """Make what the test committed visible to the server (SQLite: copy out)."""
        if self.file is not None:
            connection.ensure_connection()
            with contextlib.closing(sqlite3.connect(self.file, timeout=30)) as target:
                connection.connection.backup(target)

    def refresh(self) -> None:
        """Make what the server committed visible to the test (SQLite: copy in)."""
        if self.file is not None:
            connection.ensure_connection()
            with contextlib.closing(sqlite3.connect(self.file, timeout=30)) as source:
                source.backup(connection.connection)


@dataclass
class Server:
    """One gunicorn arbiter and its workers; output goes to ``log``."""

    directory: Path
    database: SharedDatabase
    workers: int = 2
    threads: int = 8
    environment: dict[str, str] = field(default_factory=dict)  # for the settings
    process: subprocess.Popen | None = None
    url: str = ""

    @property
    def log(self) -> Path:
        return self.directory / "gunicorn.log"

    def start(self) -> Server:
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("E2E_SQLITE", "K_SINK", "K_CE_OVERRIDES", "K_SOURCE")
        }
        env.update(
            DJANGO_SETTINGS_MODULE="tests.e2e_settings",
            PYTHONPATH=os.pathsep.join(
                filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])
            ),
            PYTHONUNBUFFERED="1",
            **self.database.env(),
            **self.environment,
        )
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind=127.0.0.1:0",  # the arbiter picks a free port and logs it
            f"--workers={self.workers}",
            "--worker-class=gthread",
            f"--threads={self.threads}",
            "--timeout=30",
            "--graceful-timeout=2",
            "--access-logfile=-",
            "--error-logfile=-",
            "tests.server:application()",
        ]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: stop() ends every worker
            )
        try:
            self.url = f"http://127.0.0.1:{self._port()}"
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _port(self) -> int:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            found = LISTENING.search(self.log.read_text(errors="replace"))
            if found:
                return int(found.group(1))
            self._check_alive()
            time.sleep(0.05)
        raise AssertionError(f"gunicorn did not bind a port\n{self.tail()}")

    def _wait_ready(self) -> None:
        """Until a worker answers (the arbiter listens before workers boot)."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                response = requests.options(f"{self.url}/cloudevents/", timeout=2)
            except requests.RequestException:
                time.sleep(0.05)
                continue
            if response.status_code != 200:
                raise AssertionError(
                    f"gunicorn answered {response.status_code}\n{self.tail()}"
                )
            return
        raise AssertionError(f"gunicorn workers did not answer\n{self.tail()}")

    def _check_alive(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(
                f"gunicorn exited with {self.process.returncode}\n{self.tail()}"
            )

    def tail(self, lines: int = 60) -> str:
        """The end of the server's log, for failure messages."""
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL it if it lingers, reap the arbiter."""
        process = self.process
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)
        # Workers of a killed arbiter would linger: the group goes in any case.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5)
        self.process = None
