"""`make demo`: the polls project end to end on SQLite, under a real WSGI server.

It migrates a fresh SQLite database, starts the project under gunicorn on a free
loopback port with K_SINK pointing at the project's own receiver (standing in for
the Knative broker), starts the outbox relay (the sender: the web workers only
write each event to the outbox), creates and edits questions and casts votes over
real HTTP, then prints every event the receiver took (like Knative's
event-display) and a one-line summary. With --serve it keeps serving (admin user
"admin", password "admin") until Ctrl-C or SIGTERM. However it ends (done, failed,
Ctrl-C, SIGTERM, SIGHUP), nothing is left running and its temporary directory is
removed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Stopped(Exception):
    """SIGTERM or SIGHUP: unwind like Ctrl-C does, so that the clean-up runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def on_signal(signum: int, frame: object) -> None:
    raise Stopped(signum)


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("wb") as output:
        return subprocess.Popen(
            args,
            cwd=HERE,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as one
        )


def stop(process: subprocess.Popen) -> None:
    """Stop the process's whole group (gunicorn's workers too), gently first."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(10)
    with contextlib.suppress(ProcessLookupError):  # whatever outlived the leader
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def show_logs(workdir: Path) -> None:
    """The end of each server log, before the directory goes."""
    for log in sorted(workdir.glob("*.log")):
        lines = log.read_text(errors="replace").splitlines()[-20:]
        print(f"demo: the end of {log.name}:", *lines, sep="\n  ", file=sys.stderr)


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise SystemExit(f"demo: timed out waiting for {what}")


def answering(url: str) -> bool:
    try:
        requests.get(url, timeout=5)
        return True
    except requests.RequestException:
        return False


def exercise(base: str) -> int:
    """Drive the project like a user would; return how many votes were cast."""
    api = f"{base}/api/questions"
    created = []
    for text, choices in [
        ("What's up?", ["Not much", "The sky"]),
        ("Tabs or spaces?", ["Tabs", "Spaces"]),
        ("Best CloudEvents mode?", ["binary", "structured"]),
    ]:
        response = requests.post(
            api, json={"question_text": text, "choices": choices}, timeout=10
        )
        response.raise_for_status()
        created.append(response.json())
    first = created[0]
    requests.post(
        f"{api}/{first['id']}", json={"question_text": "What's new?"}, timeout=10
    ).raise_for_status()
    votes = 0
    for question in created:
        for choice in question["choices"]:
            requests.post(
                f"{api}/{question['id']}/vote",
                json={"choice": choice["id"]},
                timeout=10,
            ).raise_for_status()
            votes += 1
    requests.delete(f"{api}/{created[-1]['id']}", timeout=10).raise_for_status()
    return votes


def report() -> bool:
    """Print what the receiver took, and the summary; True if nothing is missing."""
    import django

    django.setup()
    from polls.models import SeenEvent

    from django_cloudevents_bridge.bindings import jsonformat
    from django_cloudevents_bridge.emit.handlers.console import display
    from django_cloudevents_bridge.models import OutboxEvent, ReceivedEvent, TargetRun

    for row in SeenEvent.objects.order_by("id"):
        print(display(jsonformat.from_json(row.event)))
    emitted = OutboxEvent.objects.count()
    delivered = OutboxEvent.objects.filter(status="delivered").count()
    received = ReceivedEvent.objects.count()
    handled = TargetRun.objects.filter(status="done").count()
    failed = TargetRun.objects.exclude(status="done").count()
    replies = ReceivedEvent.objects.filter(type="polls.VoteCast").count()
    print(
        f"emitted {emitted}, delivered {delivered}, received {received}, "
        f"handled {handled} (targets run), failed {failed}, replies {replies}"
    )
    seen = SeenEvent.objects.count()
    return emitted == delivered == received == seen > 0 and failed == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help="keep serving")
    parser.add_argument("--port", type=int, default=0)
    options = parser.parse_args()

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)
    workdir = Path(tempfile.mkdtemp(prefix="dce-demo-"))
    children: list[subprocess.Popen] = []
    status = 1
    try:
        status = run(options, workdir, children)
    except (KeyboardInterrupt, Stopped) as stopped:
        name = stopped.args[0] if isinstance(stopped, Stopped) else "SIGINT"
        signum = stopped.signum if isinstance(stopped, Stopped) else signal.SIGINT
        print(f"demo: stopped by {name}", file=sys.stderr)
        status = 128 + signum
    finally:
        # A second signal must not cut the clean-up short.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        for process in reversed(children):
            stop(process)
        if status == 1:  # failed (not stopped): say why before the logs go
            show_logs(workdir)
        shutil.rmtree(workdir, ignore_errors=True)
    return status


def run(
    options: argparse.Namespace, workdir: Path, children: list[subprocess.Popen]
) -> int:
    """The demo itself; every process it starts goes into ``children``."""
    port = options.port or free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "PYTHONPATH": str(HERE),
        "DJANGO_SETTINGS_MODULE": "polls_project.settings",
        "DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}",
        "K_SINK": f"{base}/cloudevents/",  # our own receiver stands in for the broker
        "CLOUDEVENTS_SOURCE": "urn:django:polls-demo",
    }
    os.environ.update(env)
    sys.path.insert(0, str(HERE))
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "-v", "0"], cwd=HERE, env=env, check=True)
    print(f"demo: SQLite database in {workdir}; serving on {base}", flush=True)

    server = start(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "polls_project.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--threads",
            "4",
        ],
        env,
        workdir / "gunicorn.log",
    )
    children.append(server)
    # The relay sends every event (BACKGROUND is off: gunicorn's workers only write
    # the outbox). SQLite has no LISTEN/NOTIFY, so it polls, here every 0.2 s.
    children.append(
        start(
            [*manage, "cloudevents_relay", "--interval", "0.2"],
            env,
            workdir / "relay.log",
        )
    )
    wait_until(lambda: answering(base), 30, "gunicorn to answer")
    votes = exercise(base)
    print(f"demo: created 3 questions, edited 1, cast {votes} votes, deleted 1")

    import sqlite3

    def settled() -> bool:
        with sqlite3.connect(workdir / "db.sqlite3", timeout=20) as db:
            pending = db.execute(
                "SELECT COUNT(*) FROM django_cloudevents_bridge_outboxevent "
                "WHERE status != 'delivered'"
            ).fetchone()[0]
            emitted = db.execute(
                "SELECT COUNT(*) FROM django_cloudevents_bridge_outboxevent"
            ).fetchone()[0]
            seen = db.execute("SELECT COUNT(*) FROM polls_seenevent").fetchone()[0]
        return pending == 0 and seen == emitted

    wait_until(settled, 60, "every event to be delivered and handled")
    ok = report()
    if options.serve:
        subprocess.run(
            [
                *manage,
                "shell",
                "-v",
                "0",
                "-c",
                "from django.contrib.auth.models import User;"
                "User.objects.filter(username='admin').exists() or "
                "User.objects.create_superuser('admin', '', 'admin')",
            ],
            cwd=HERE,
            env=env,
            check=True,
        )
        # A signal from here on is the way to stop --serve: caught before the line
        # that says so is printed, so it never lands between the two.
        with contextlib.suppress(KeyboardInterrupt, Stopped):
            print(
                f"demo: serving {base}/admin/ (admin/admin); Ctrl-C stops", flush=True
            )
            server.wait()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
