"""`make demo`: the polls project end to end on SQLite, under a real WSGI server.

It migrates a fresh SQLite database, starts the project under gunicorn on a free
loopback port with K_SINK pointing at the project's own receiver (standing in for
the Knative broker), starts the outbox relay (the sender: the web workers only
write each event to the outbox), creates and edits questions and casts votes over
real HTTP, then prints every event the receiver took (like Knative's
event-display) and a one-line summary. Nothing is left running. With --serve it
keeps serving (admin user "admin", password "admin") until Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import os
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


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        args,
        cwd=HERE,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: stopped as one
    )


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


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

    workdir = Path(tempfile.mkdtemp(prefix="dce-demo-"))
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
    # The relay sends every event (BACKGROUND is off: gunicorn's workers only write
    # the outbox). SQLite has no LISTEN/NOTIFY, so it polls, here every 0.2 s.
    relay = start(
        [*manage, "cloudevents_relay", "--interval", "0.2"], env, workdir / "relay.log"
    )
    try:
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
                    "-c",
                    "from django.contrib.auth.models import User;"
                    "User.objects.filter(username='admin').exists() or "
                    "User.objects.create_superuser('admin', '', 'admin')",
                ],
                cwd=HERE,
                env=env,
                check=True,
            )
            print(f"demo: serving {base}/admin/ (admin/admin); Ctrl-C stops")
            with contextlib.suppress(KeyboardInterrupt):
                server.wait()
        return 0 if ok else 1
    finally:
        stop(relay)
        stop(server)


if __name__ == "__main__":
    sys.exit(main())
