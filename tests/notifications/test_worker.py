"""``cloudevents_worker`` processes send the notifications that are due."""

from __future__ import annotations

import json
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.utils import timezone

from django_cloudevents_bridge.models import Delivery
from django_cloudevents_bridge.notifications import record
from tests.relay_proc import Relays, SharedDatabase
from tests.sink import Sink

from .conftest import BASE_URL, event, items

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def workers(
    smtp, tmp_path: Path, monkeypatch
) -> Iterator[tuple[Relays, SharedDatabase]]:
    """Worker subprocesses on the test's database, sending to the SMTP server."""
    monkeypatch.setenv("NOTIFY_SMTP_PORT", str(smtp.port))
    monkeypatch.setenv("NOTIFY_SETTINGS", json.dumps({"BASE_URL": BASE_URL}))
    database = SharedDatabase(tmp_path)
    sink = Sink().start()
    processes = Relays(tmp_path, sink, database)
    yield processes, database
    processes.stop_all()
    sink.stop()


def received(smtp) -> Counter[str]:
    return Counter(to for _, [to] in smtp.mailbox.envelopes)


def test_the_worker_sends_due_notifications_once(workers, smtp):
    processes, database = workers
    people = [f"p{n}@example.com" for n in range(3)]
    record(event(), "email", items(*people))
    database.publish()

    for _ in range(2):  # a second run finds nothing due
        worker = processes.start("--once", command="cloudevents_worker")
        assert worker.wait(60) == 0, processes.report()
    database.refresh()

    assert received(smtp) == Counter(people)
    assert smtp.mailbox.connections == 1
    assert "notifications: sent 3, failed 0, parked 0" in worker_output(processes, 0)
    assert set(Delivery.objects.values_list("status", flat=True)) == {"sent"}


def test_a_worker_killed_mid_batch_resends_at_most_the_message_in_flight(workers, smtp):
    processes, database = workers
    people = [f"p{n}@example.com" for n in range(10)]
    record(event(), "email", items(*people))
    database.publish()
    smtp.mailbox.hold_after(3)  # the 4th message is taken, its "250" held back

    first = processes.start(command="cloudevents_worker")
    processes.until(lambda: smtp.mailbox.held == 1, timeout=60)
    first.send(signal.SIGKILL)
    first.wait()
    # The crash fell between the server taking the 4th message and the ledger
    # recording it.
    smtp.mailbox.release()
    assert len(smtp.mailbox.messages) == 4
    database.refresh()
    assert Delivery.objects.filter(status="sent").count() == 3  # recorded at once
    # The dead worker's claim runs out (its lease, made short here).
    Delivery.objects.exclude(status="sent").update(next_attempt_at=timezone.now())
    database.publish()

    second = processes.start("--once", command="cloudevents_worker")
    assert second.wait(60) == 0, processes.report()
    database.refresh()

    counts = received(smtp)
    assert set(counts) == set(people)
    assert sorted(counts.values()) == [1] * 9 + [2]  # only the one in flight
    assert set(Delivery.objects.values_list("status", "attempts")) == {("sent", 1)}


def test_a_task_enqueued_after_commit_sends_on_a_task_worker(workers, smtp, settings):
    """django-tasks-db's own worker process runs the enqueued task."""
    from django.db import transaction

    processes, database = workers
    settings.CLOUDEVENTS_RECEIVER = {"TASK_BACKEND": "db"}
    with transaction.atomic():
        record(event(), "email", items("ann@example.com", "bob@example.com"))
    assert smtp.mailbox.messages == []  # enqueued, not sent
    database.publish()

    worker = processes.start(
        "--batch", "--backend", "db", "--no-startup-delay", command="db_worker"
    )
    assert worker.wait(60) == 0, processes.report()
    database.refresh()

    assert received(smtp) == Counter(["ann@example.com", "bob@example.com"])
    assert set(Delivery.objects.values_list("status", flat=True)) == {"sent"}


def worker_output(processes: Relays, number: int) -> str:
    return processes.started[number].stdout.read_text()
