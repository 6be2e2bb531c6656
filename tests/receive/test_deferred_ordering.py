"""Per-key ordering of deferred runs (``CLOUDEVENTS_RECEIVER["ORDERING"]``)."""

from __future__ import annotations

import json
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection
from django.test import Client

from django_cloudevents_bridge import work
from django_cloudevents_bridge.models import ReceivedEvent, TargetRun
from django_cloudevents_bridge.targets.groups import (
    register_group_handler,
    unregister_group_handler,
)
from tests.deferred_targets import ORDERED_GROUP, directory, ordered
from tests.receive.test_deferred import URL, runs, workers
from tests.testapp.models import Tag

pytestmark = pytest.mark.django_db(transaction=True)

Status = TargetRun.Status
TYPE = "com.example.ordered.step"

__all__ = ["workers"]  # a fixture, used below


@pytest.fixture
def flags(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("DEFERRED_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture
def deferred(settings, flags: Path) -> Iterator[Path]:
    """Deferred mode with ORDERING on, and the ordered target registered."""
    settings.CLOUDEVENTS_RECEIVER = {
        "MODE": "deferred",
        "TASK_BACKEND": False,
        "ORDERING": True,
        "BACKOFF": 0,
        "MAX_ATTEMPTS": 2,
    }
    register_group_handler(ordered, group=ORDERED_GROUP)
    yield flags
    unregister_group_handler(ordered)


def post(id: str, key: str, n: int, source: str = "/shop", **extra) -> int:
    """POST event ``n`` of ``key`` (its subject, unless ``partitionkey`` is given)."""
    headers = {
        "ce-specversion": "1.0",
        "ce-id": id,
        "ce-source": source,
        "ce-type": TYPE,
        "ce-subject": extra.pop("subject", key),
    }
    if "partitionkey" in extra:
        headers["ce-partitionkey"] = extra.pop("partitionkey")
    data = {"key": key, "n": n, **extra}
    response = Client(enforce_csrf_checks=True).generic(
        "POST",
        URL,
        json.dumps(data).encode(),
        content_type="application/json",
        headers=headers,
    )
    return response.status_code


def tags() -> set[str]:
    return set(Tag.objects.values_list("name", flat=True))


def test_a_failing_head_holds_its_key_back_and_no_other(deferred):
    assert post("a-0", "a", 0, flaky=True) == 202
    assert post("a-1", "a", 1) == 202
    assert post("b-0", "b", 0) == 202

    # a-0 fails once; a-1 waits behind it, b-0 does not.
    assert work.run_one() == "failed"
    assert work.run_one() == "done"
    assert tags() == {"b:0"}
    assert work.run_one() == "done"  # a-0's retry (no backoff here)
    assert tags() == {"b:0", "a:0"}
    assert work.run_one() == "done"
    assert work.run_one() is None
    assert tags() == {"b:0", "a:0", "a:1"}
    assert not list(directory().glob("violation-*"))


def test_a_parked_head_releases_the_events_behind_it(deferred):
    assert post("a-0", "a", 0, poison=True) == 202
    assert post("a-1", "a", 1, poisoned=[0]) == 202

    assert work.process() == Counter(failed=1, parked=1, done=1)
    assert runs(event__event_id="a-0") == {"ordered": (Status.PARKED, 2)}
    assert runs(event__event_id="a-1") == {"ordered": (Status.DONE, 1)}


def test_a_task_held_back_by_its_key_is_enqueued_again(deferred, settings):
    post("a-0", "a", 0)
    post("a-1", "a", 1)
    first, second = ReceivedEvent.objects.order_by("id").values_list("id", flat=True)
    assert work.process([second]) == Counter()  # a-1's task: held back by a-0

    # "default" is django.tasks' ImmediateBackend: an enqueued task runs at once.
    settings.CLOUDEVENTS_RECEIVER = {
        **settings.CLOUDEVENTS_RECEIVER,
        "TASK_BACKEND": "default",
    }
    assert work.process([first]) == Counter(done=1)  # a-0's, which enqueues a-1's
    assert tags() == {"a:0", "a:1"}
    assert not list(directory().glob("violation-*"))


def test_the_partitionkey_wins_over_the_subject_and_keys_are_per_source(deferred):
    # One key "p" across two subjects; the same subject from another source is
    # another key.
    assert post("x-0", "p", 0, subject="s1", partitionkey="p", flaky=True) == 202
    assert post("x-1", "p", 1, subject="s2", partitionkey="p") == 202
    assert post("y-0", "s1", 0, source="/elsewhere") == 202

    assert work.run_one() == "failed"  # x-0
    assert work.run_one() == "done"  # y-0: not behind x-0
    assert tags() == {"s1:0"}
    assert work.process() == Counter(done=2)
    assert tags() == {"s1:0", "p:0", "p:1"}
    assert not list(directory().glob("violation-*"))


def test_events_without_a_key_and_ordering_off_are_not_held(deferred, settings):
    settings.CLOUDEVENTS_RECEIVER = {
        **settings.CLOUDEVENTS_RECEIVER,
        "ORDERING": False,
    }
    assert post("a-0", "a", 0, flaky=True) == 202
    assert post("a-1", "a", 1) == 202
    assert set(ReceivedEvent.objects.values_list("ordering_key", flat=True)) == {""}

    assert work.run_one() == "failed"
    assert work.run_one() == "done"  # a-1 overtakes its failing head
    assert list(directory().glob("violation-a-1-*"))


@pytest.mark.postgres
def test_several_workers_keep_each_key_in_order(deferred, workers, monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("several workers at once: PostgreSQL's SKIP LOCKED")
    processes, database = workers
    monkeypatch.setenv(
        "DEFERRED_RECEIVER",
        json.dumps({"ORDERING": True, "BACKOFF": 0.01, "MAX_ATTEMPTS": 3}),
    )
    keys, per_key = "abcd", 12
    for n in range(per_key):
        for key in keys:
            poison = key == "d" and n == 3  # parked; d's later events go on
            extra = {"poison": True} if poison else {"flaky": n % 4 == 1}
            if key == "d" and n > 3:
                extra["poisoned"] = [3]
            assert post(f"{key}-{n}", key, n, **extra) == 202
    database.publish()

    started = [processes.start(command="cloudevents_worker") for _ in range(3)]
    unfinished = TargetRun.objects.filter(status__in=[Status.PENDING, Status.FAILED])
    processes.until(lambda: not unfinished.exists(), timeout=120)
    for worker in started:
        worker.send(signal.SIGTERM)
        assert worker.wait(60) == 0, processes.report()

    assert not list(directory().glob("violation-*")), processes.report()
    expected = {f"{k}:{n}" for k in keys for n in range(per_key)} - {"d:3"}
    assert tags() == expected
    assert runs(event__event_id="d-3") == {"ordered": (Status.PARKED, 3)}
    assert TargetRun.objects.filter(status=Status.DONE).count() == len(expected)
