"""`make demo` leaves nothing behind when it is stopped with SIGTERM."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parent.parent / "examples" / "polls" / "demo.py"

# The demo runs on its own SQLite database: the SQLite half covers it.
pytestmark = pytest.mark.sqlite_only


def processes() -> list[tuple[int, int, int]]:
    """Every live process as (pid, parent pid, session id), from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue  # gone meanwhile
        # pid (comm) state ppid pgrp session ...; comm may hold spaces and parens
        state, ppid, _, session = text[text.rindex(")") + 2 :].split()[:4]
        if state != "Z":
            found.append((int(stat.parent.name), int(ppid), int(session)))
    return found


def test_sigterm_stops_the_served_demo_and_everything_it_started(tmp_path):
    demo = subprocess.Popen(
        [sys.executable, str(DEMO), "--serve"],
        env={**os.environ, "TMPDIR": str(tmp_path)},  # its temporary directory
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in demo.stdout:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    started: set[int] = set()
    try:
        output = []
        while not output or "Ctrl-C stops" not in output[-1]:
            output.append(lines.get(timeout=120))  # the demo has its own deadlines
        workdir = Path(re.search(r"database in (\S+);", "".join(output))[1])
        assert workdir.parent == tmp_path and workdir.is_dir()
        # gunicorn and the relay, each the leader of a session of its own
        started = {pid for pid, ppid, _ in processes() if ppid == demo.pid}
        assert len(started) == 2

        demo.send_signal(signal.SIGTERM)

        status = demo.wait(60)
        # gunicorn (its workers too) and the relay are gone, and so is the directory
        assert not [pid for pid, _, sid in processes() if sid in started]
        assert not workdir.exists()
        assert status == 0  # SIGTERM stops --serve as Ctrl-C does
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        for pid, _, sid in processes():  # what a failed run left behind
            if sid in started:
                os.kill(pid, signal.SIGKILL)
