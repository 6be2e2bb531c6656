"""Deferred mode: validate, store, 202; the targets run on a worker, exactly once."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import close_old_connections, connection
from django.test import Client
from django.utils import timezone

from django_cloudevents_bridge import events, signals, work
from django_cloudevents_bridge.bindings import pubsub
from django_cloudevents_bridge.emit.handlers import locmem
from django_cloudevents_bridge.models import ReceivedEvent, TargetRun
from django_cloudevents_bridge.targets.groups import (
    register_group_handler,
    unregister_group_handler,
)
from tests import deferred_targets
from tests.deferred_targets import (
    CRASH_GROUP,
    GROUP,
    TYPE,
    crashing,
    failing,
    slow,
    starts,
)
from tests.receive.test_pubsub_push import envelope, push
from tests.relay_proc import Relays, SharedDatabase
from tests.sink import Sink
from tests.testapp import events as named_events
from tests.testapp.models import Tag

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/cloudevents/"
Status = TargetRun.Status


@pytest.fixture
def flags(tmp_path: Path, monkeypatch) -> Path:
    """The targets' trace directory (also seen by worker subprocesses)."""
    monkeypatch.setenv("DEFERRED_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture
def deferred(settings, flags: Path) -> Iterator[Path]:
    """Deferred mode with no task backend, and the slow target registered."""
    settings.CLOUDEVENTS_RECEIVER = {"MODE": "deferred", "TASK_BACKEND": False}
    register_group_handler(slow, group=GROUP)
    yield flags
    unregister_group_handler(slow)


@pytest.fixture
def with_failing() -> Iterator[None]:
    register_group_handler(failing, group=GROUP)
    yield
    unregister_group_handler(failing)


def post(id: str, data: dict | None = None, type: str = TYPE, source: str = "/shop"):
    """POST one binary-mode event with JSON data."""
    return Client(enforce_csrf_checks=True).generic(
        "POST",
        URL,
        json.dumps(data or {}).encode(),
        content_type="application/json",
        headers={
            "ce-specversion": "1.0",
            "ce-id": id,
            "ce-source": source,
            "ce-type": type,
        },
    )


def runs(**filters) -> dict[str, tuple[str, int]]:
    """{target: (status, attempts)} of the stored runs."""
    return {
        run.target.rsplit(".", 1)[-1]: (run.status, run.attempts)
        for run in TargetRun.objects.filter(**filters)
    }


def in_thread(function, *args, **kwargs) -> tuple[threading.Thread, list]:
    """Run ``function`` in a thread with its own database connection."""
    result: list = []

    def target() -> None:
        try:
            result.append(function(*args, **kwargs))
        finally:
            close_old_connections()
            connection.close()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, result


def wait_for(check, timeout: float = 30.0) -> None:
    event = threading.Event()
    deadline = timezone.now() + timedelta(seconds=timeout)
    while not check():
        assert timezone.now() < deadline, "condition not reached"
        event.wait(0.01)


def test_202_before_the_slow_target_finishes_then_the_worker_runs_it_once(deferred):
    response = post("e-1", {"block": True})

    # Answered with the target not even started (inline mode would block here).
    assert response.status_code == 202
    assert response.content == b""
    assert not starts("e-1")
    assert runs() == {"slow": (Status.PENDING, 0)}

    worker, outcome = in_thread(work.process)
    wait_for(lambda: starts("e-1"))  # the worker is inside the target now
    (deferred / "release").touch()
    worker.join(30)

    assert outcome == [Counter(done=1)]
    assert list(Tag.objects.values_list("name", flat=True)) == ["e-1"]
    assert runs() == {"slow": (Status.DONE, 1)}
    assert work.process() == Counter()  # nothing is due any more
    assert len(starts("e-1")) == 1


@pytest.mark.postgres
def test_two_workers_never_take_the_same_run(deferred):
    if connection.vendor != "postgresql":
        pytest.skip("SKIP LOCKED claims are PostgreSQL's")
    post("e-1", {"block": True})
    first, first_outcome = in_thread(work.process)
    wait_for(lambda: starts("e-1"))

    # The run is locked by the first worker: the second skips it.
    assert work.process() == Counter()
    (deferred / "release").touch()
    first.join(30)
    assert first_outcome == [Counter(done=1)]
    assert len(starts("e-1")) == 1
    assert Tag.objects.count() == 1


def test_a_failing_target_is_retried_alone_with_backoff_then_parked(
    deferred, with_failing, settings
):
    settings.CLOUDEVENTS_RECEIVER = {
        **settings.CLOUDEVENTS_RECEIVER,
        "MAX_ATTEMPTS": 3,
        "BACKOFF": 100.0,
        "BACKOFF_MAX": 150.0,
    }
    assert post("e-1").status_code == 202
    before = timezone.now()

    assert work.process() == Counter(done=1, failed=1)
    assert runs() == {"slow": (Status.DONE, 1), "failing": (Status.FAILED, 1)}
    failed = TargetRun.objects.get(status=Status.FAILED)
    assert failed.error == "RuntimeError: downstream unavailable"
    assert before + timedelta(seconds=100) <= failed.next_attempt_at
    assert failed.next_attempt_at <= timezone.now() + timedelta(seconds=100)
    assert work.process() == Counter()  # not due yet

    def time_passes() -> None:
        TargetRun.objects.filter(status=Status.FAILED).update(
            next_attempt_at=timezone.now()
        )

    time_passes()
    before = timezone.now()
    assert work.process() == Counter(failed=1)
    failed.refresh_from_db()
    assert failed.attempts == 2
    assert failed.next_attempt_at >= before + timedelta(seconds=150)  # capped
    time_passes()
    assert work.process() == Counter(parked=1)
    assert runs() == {"slow": (Status.DONE, 1), "failing": (Status.PARKED, 3)}
    assert TargetRun.objects.get(status=Status.PARKED).next_attempt_at is None
    time_passes()
    assert work.process() == Counter()  # parked: never again by itself
    assert len(starts("e-1")) == 1
    assert len(list(deferred.glob("failed-e-1-*"))) == 3


@pytest.fixture
def signups() -> Iterator[list]:
    named_events.calls.clear()
    yield named_events.calls
    named_events.calls.clear()


def test_invalid_named_event_data_is_400_and_never_stored(deferred, signups):
    response = post("s-1", {"email": "nobody"}, type="testapp.Signup")

    assert response.status_code == 400
    assert response.json() == {"error": "invalid event data: email is not an address"}
    assert not ReceivedEvent.objects.exists()
    assert not TargetRun.objects.exists()

    assert post("s-2", {"email": "A@B.C"}, type="testapp.Signup").status_code == 202
    assert signups == []  # stored, not run
    assert work.process() == Counter(done=2)
    assert [call[0] for call in signups] == ["welcome", "count"]


def test_a_validation_error_on_the_worker_is_rejected_at_once(deferred):
    from django.core.exceptions import ValidationError

    def picky(event) -> None:
        raise ValidationError("no such customer")

    register_group_handler(picky, group=GROUP)
    try:
        post("e-1")
        assert work.process() == Counter(done=1, rejected=1)
    finally:
        unregister_group_handler(picky)
    assert runs()["picky"] == (Status.REJECTED, 1)
    TargetRun.objects.update(next_attempt_at=timezone.now())
    assert work.process() == Counter()


def test_duplicates_answer_202_and_enqueue_nothing(deferred, settings, monkeypatch):
    settings.CLOUDEVENTS_RECEIVER = {"MODE": "deferred", "TASK_BACKEND": "default"}
    enqueued: list = []
    monkeypatch.setattr(work, "enqueue", lambda ids, at=None: enqueued.append(ids))

    assert [post("e-1").status_code, post("e-1").status_code] == [202, 202]

    assert len(enqueued) == 1
    assert ReceivedEvent.objects.get().deliveries == 2
    assert TargetRun.objects.count() == 1


def test_a_task_enqueued_twice_runs_the_target_once(deferred, settings):
    # "default" is django.tasks' ImmediateBackend: the task runs on enqueue.
    settings.CLOUDEVENTS_RECEIVER = {"MODE": "deferred", "TASK_BACKEND": "default"}

    assert post("e-1").status_code == 202  # enqueued after the commit, and run

    assert runs() == {"slow": (Status.DONE, 1)}
    from django_cloudevents_bridge.tasks import process_events

    stored = ReceivedEvent.objects.get().pk
    result = process_events.enqueue([stored])  # a duplicate task
    assert result.return_value == 0
    assert len(starts("e-1")) == 1
    assert Tag.objects.count() == 1


def test_a_lost_enqueue_is_run_by_cloudevents_worker_once(
    deferred, settings, monkeypatch, caplog, capsys
):
    settings.CLOUDEVENTS_RECEIVER = {"MODE": "deferred", "TASK_BACKEND": "db"}
    from django_cloudevents_bridge.tasks import process_events

    def broker_down(*args, **kwargs):
        raise ConnectionError("broker down")

    backend = process_events.using(backend="db").get_backend()
    monkeypatch.setattr(backend, "enqueue", broker_down)

    with caplog.at_level(logging.WARNING, "django_cloudevents_bridge"):
        assert post("e-1").status_code == 202
    assert "broker down" in caplog.text
    assert runs() == {"slow": (Status.PENDING, 0)}

    call_command("cloudevents_worker", "--once")

    assert capsys.readouterr().out.strip() == "done 1, failed 0, parked 0, rejected 0"
    assert runs() == {"slow": (Status.DONE, 1)}
    call_command("cloudevents_worker", "--once")
    assert len(starts("e-1")) == 1


@pytest.fixture
def received() -> Iterator[list]:
    """What ``event_received`` reports: (id, ran, deferred) per signal."""
    got: list = []

    def observe(sender, event, report, **kwargs) -> None:
        got.append((event.get_id(), report.ran, report.deferred))

    signals.event_received.connect(observe)
    yield got
    signals.event_received.disconnect(observe)


def test_event_received_is_sent_when_the_event_is_stored(deferred, signups, received):
    slow_target = "group:tests.deferred_targets.slow"

    post("e-1")
    post("e-1")  # a duplicate: nothing new for the worker
    post("s-1", {"email": "nobody"}, type="testapp.Signup")  # 400, not stored
    post("other", type="com.example.elsewhere")  # stored, no target
    assert received == [
        ("e-1", [], [slow_target]),
        ("e-1", [], []),
        ("other", [], []),
    ]

    assert work.process() == Counter(done=1)
    assert len(received) == 3  # the worker sends no second one


def test_pubsub_push_follows_the_mode(deferred):
    sent = events.new(TYPE, source="//pubsub.test", id="p-1", data={"n": 1})
    data, attributes = pubsub.to_pubsub(sent)

    assert push(envelope(data, attributes)).status_code == 202
    assert runs() == {"slow": (Status.PENDING, 0)}
    assert work.process() == Counter(done=1)


def test_replies_go_out_through_the_emit_path(deferred, sent_events, caplog):
    def replying(event):
        return events.new("com.example.reply", source="/replies", id="r-1")

    register_group_handler(replying, group=GROUP)
    try:
        post("e-1")
        assert work.process() == Counter(done=2)
    finally:
        unregister_group_handler(replying)
    assert [event.get_id() for event in locmem.sent] == ["r-1"]
    assert TargetRun.objects.filter(reply="").count() == 2


def test_replies_are_kept_with_a_warning_without_a_sink(
    deferred, settings, monkeypatch, caplog
):
    settings.CLOUDEVENTS_HANDLER = "http"
    monkeypatch.delenv("K_SINK", raising=False)

    def replying(event):
        return events.new("com.example.reply", source="/replies", id="r-1")

    register_group_handler(replying, group=GROUP)
    try:
        post("e-1")
        with caplog.at_level(logging.WARNING, "django_cloudevents_bridge"):
            assert work.process() == Counter(done=2)
    finally:
        unregister_group_handler(replying)
    assert "no sink" in caplog.text
    kept = TargetRun.objects.exclude(reply="").get()
    assert '"r-1"' in kept.reply


def snapshot() -> list[tuple]:
    """The target-run records, without what differs by design (timestamps)."""
    return sorted(
        (
            run.event.source,
            run.event.event_id,
            run.target,
            run.status,
            run.attempts,
            run.error,
            run.reply,
        )
        for run in TargetRun.objects.select_related("event")
    )


def test_deferred_and_inline_modes_give_the_same_target_runs(
    deferred, with_failing, signups, settings
):
    def deliveries() -> None:
        post("e-1")
        post("e-2", {"n": 2})
        post("e-1")  # a duplicate
        post("s-1", {"email": "A@B.C"}, type="testapp.Signup")
        post("other", type="com.example.elsewhere")  # no target

    settings.CLOUDEVENTS_RECEIVER = {"MODE": "inline"}
    deliveries()
    inline = snapshot()
    ReceivedEvent.objects.all().delete()
    Tag.objects.all().delete()

    settings.CLOUDEVENTS_RECEIVER = {"MODE": "deferred", "TASK_BACKEND": False}
    deliveries()
    work.process()
    # Inline, the sender's redelivery of e-1 retried its failed target; here the
    # worker retries it once its backoff is over.
    TargetRun.objects.filter(event__event_id="e-1").update(
        next_attempt_at=timezone.now()
    )
    work.process()

    assert snapshot() == inline
    assert len(inline) == 6
    assert {(run[1], run[3], run[4]) for run in inline if run[3] == "failed"} == {
        ("e-1", "failed", 2),
        ("e-2", "failed", 1),
    }


# Real worker processes: django-tasks-db's own, and ours killed mid-target.


@pytest.fixture
def workers(deferred, tmp_path: Path) -> Iterator[tuple[Relays, SharedDatabase]]:
    """Worker subprocesses on the test's database (see tests.relay_proc)."""
    database = SharedDatabase(tmp_path)
    sink = Sink().start()
    processes = Relays(tmp_path, sink, database)
    yield processes, database
    processes.stop_all()
    sink.stop()


def test_django_tasks_db_worker_process_runs_deferred_events(workers, settings):
    processes, database = workers
    settings.CLOUDEVENTS_RECEIVER = {"MODE": "deferred", "TASK_BACKEND": "db"}
    for n in range(3):
        assert post(f"e-{n}").status_code == 202
    assert runs(status=Status.PENDING).keys() == {"slow"}
    database.publish()

    worker = processes.start(
        "--batch", "--backend", "db", "--no-startup-delay", command="db_worker"
    )
    assert worker.wait(60) == 0, processes.report()
    database.refresh()

    assert sorted(Tag.objects.values_list("name", flat=True)) == ["e-0", "e-1", "e-2"]
    assert set(TargetRun.objects.values_list("status", "attempts")) == {
        (Status.DONE, 1)
    }


def test_a_worker_killed_mid_target_runs_it_again_exactly_once(workers, monkeypatch):
    processes, database = workers
    monkeypatch.setenv("DEFERRED_RECEIVER", json.dumps({"BACKOFF": 0}))
    assert post("e-1", {"block": True}).status_code == 202
    database.publish()

    first = processes.start(command="cloudevents_worker")
    processes.until(lambda: bool(starts("e-1")), timeout=60)
    first.send(signal.SIGKILL)  # inside the target, before its commit
    first.wait()
    (deferred_targets.directory() / "release").touch()

    second = processes.start("--once", command="cloudevents_worker")
    assert second.wait(60) == 0, processes.report()
    database.refresh()

    assert len(starts("e-1")) == 2  # started by each worker
    assert list(Tag.objects.values_list("name", flat=True)) == ["e-1"]
    # The killed attempt left nothing but its count (taken before the target ran).
    assert runs() == {"slow": (Status.DONE, 2)}
    assert "done 1," in second.output()[0]


def test_a_target_that_kills_its_worker_is_parked_after_its_attempts(
    workers, monkeypatch
):
    processes, database = workers
    monkeypatch.setenv(
        "DEFERRED_RECEIVER", json.dumps({"BACKOFF": 0, "MAX_ATTEMPTS": 3})
    )
    register_group_handler(crashing, group=CRASH_GROUP)  # stored, never run here
    try:
        assert post("c-1", type="com.example.crash.now").status_code == 202
    finally:
        unregister_group_handler(crashing)
    assert post("e-1").status_code == 202  # other work in the same backlog
    database.publish()

    exits = []
    for _ in range(3):  # each worker dies inside the target, recording nothing
        worker = processes.start("--once", command="cloudevents_worker")
        exits.append(worker.wait(60))
    last = processes.start("--once", command="cloudevents_worker")
    assert last.wait(60) == 0, processes.report()
    database.refresh()

    assert exits == [-signal.SIGKILL] * 3
    assert len(starts("c-1")) == 3  # never a fourth time
    assert "parked 1," in last.output()[0]
    assert runs() == {"crashing": (Status.PARKED, 3), "slow": (Status.DONE, 1)}
    parked = TargetRun.objects.get(status=Status.PARKED)
    assert parked.error == (
        "WorkerDied: the worker died during the last attempt (killed or crashed)"
    )
    assert parked.next_attempt_at is None
    assert len(starts("e-1")) == 1


def test_an_attempt_is_counted_before_its_target_runs(deferred, settings):
    settings.CLOUDEVENTS_RECEIVER = {**settings.CLOUDEVENTS_RECEIVER, "BACKOFF": 50}

    def dies(event) -> None:
        raise KeyboardInterrupt  # not an Exception: nothing records an outcome

    register_group_handler(dies, group=GROUP, deferred=True)
    unregister_group_handler(slow)
    try:
        post("e-1")
        before = timezone.now()
        with pytest.raises(KeyboardInterrupt):
            work.process()
    finally:
        unregister_group_handler(dies)
    run = TargetRun.objects.get()
    # Still due, after the backoff, with the attempt counted and said so.
    assert (run.status, run.attempts) == (Status.PENDING, 1)
    assert run.error.startswith("no outcome recorded")
    assert run.next_attempt_at >= before + timedelta(seconds=50)
    assert work.process() == Counter()


def test_the_worker_beats_while_it_runs_and_stops_on_sigterm(workers, tmp_path):
    processes, database = workers
    heartbeat = tmp_path / "beat"
    worker = processes.start(
        "--heartbeat-file", str(heartbeat), command="cloudevents_worker"
    )
    processes.until(heartbeat.exists, timeout=60)
    os.utime(heartbeat, (1, 1))  # stale: the loop touches it again while idle
    processes.until(lambda: heartbeat.stat().st_mtime > 1, timeout=60)
    worker.send(signal.SIGTERM)
    assert worker.wait(60) == 0, processes.report()


def test_logged_named_events_run_their_handlers_on_the_worker(
    deferred, signups, sent_events
):
    from django_cloudevents_bridge import log
    from django_cloudevents_bridge.bindings import http

    logged = log("testapp.Signup", {"email": "Ann@Example.com"})
    [sent] = sent_events  # emitted as in inline mode
    headers, body = http.to_http(sent)
    client = Client(enforce_csrf_checks=True)
    for _ in range(2):  # delivered, then redelivered
        response = client.generic(
            "POST", URL, body, content_type=None, headers=dict(headers)
        )
        assert response.status_code == 202
    assert signups == []

    assert work.process() == Counter(done=2)
    assert signups == [
        ("welcome", "testapp.Signup", {"email": "ann@example.com"}),
        ("count", "testapp.Signup", {"email": "ann@example.com"}),
    ]
    assert ReceivedEvent.objects.get().event_id == logged.get_id()
    assert work.process() == Counter()


def test_parked_runs_are_rerun_by_cloudevents_replay(deferred, settings):
    settings.CLOUDEVENTS_RECEIVER = {**settings.CLOUDEVENTS_RECEIVER, "MAX_ATTEMPTS": 1}
    calls: list = []

    def flaky(event) -> None:
        calls.append(event.get_id())
        if len(calls) == 1:
            raise RuntimeError("down")

    register_group_handler(flaky, group=GROUP)
    try:
        post("e-1")
        assert work.process() == Counter(done=1, parked=1)
        call_command("cloudevents_replay", stdout=io.StringIO())
    finally:
        unregister_group_handler(flaky)
    assert runs() == {"slow": (Status.DONE, 1), "flaky": (Status.DONE, 2)}
    assert calls == ["e-1", "e-1"]


def test_backlog_counts_and_probes(deferred, with_failing, settings, admin_client):
    def backlog(*args: str) -> str:
        out = io.StringIO()
        call_command("cloudevents_backlog", *args, stdout=out)
        return out.getvalue().strip()

    settings.CLOUDEVENTS_RECEIVER = {**settings.CLOUDEVENTS_RECEIVER, "MAX_ATTEMPTS": 2}
    post("e-1")
    post("e-2")
    ReceivedEvent.objects.filter(event_id="e-1").update(
        received_at=timezone.now() - timedelta(hours=1)
    )
    assert backlog().startswith("pending 4, failed 0, parked 0, rejected 0; oldest")
    with pytest.raises(CommandError, match="waited 3"):
        backlog("--max-age", "600")
    # Due and not taken: overdue once a worker should have had them.
    TargetRun.objects.update(next_attempt_at=timezone.now() - timedelta(hours=1))
    assert backlog().endswith(", due for 3600s")
    with pytest.raises(CommandError, match="due for 3600s: no worker"):
        backlog("--max-overdue", "600")

    work.process()
    TargetRun.objects.filter(status=Status.FAILED).update(
        next_attempt_at=timezone.now()
    )
    work.process()
    assert backlog() == (
        "pending 0, failed 0, parked 2, rejected 0; oldest waiting 0s, due for 0s"
    )
    assert backlog("--max-age", "600", "--max-parked", "2", "--max-overdue", "1")
    with pytest.raises(CommandError, match="2 run"):
        backlog("--max-parked", "1")

    page = admin_client.get(
        "/admin/django_cloudevents_bridge/targetrun/?status=parked"
    ).content.decode()
    assert page.count("downstream unavailable") == 2


def test_an_always_deferred_target_runs_on_the_worker_in_inline_mode(
    flags, settings, monkeypatch, received
):
    settings.CLOUDEVENTS_RECEIVER = {"TASK_BACKEND": "default"}  # inline mode
    enqueued: list = []
    monkeypatch.setattr(work, "enqueue", lambda ids, at=None: enqueued.append(ids))
    quick: list = []

    def fast(event) -> None:
        quick.append(event.get_id())

    register_group_handler(slow, group=GROUP, deferred=True)
    register_group_handler(fast, group=GROUP)
    try:
        # The inline target ran; the slow one is stored and due, not started.
        assert post("e-1", {"block": True}).status_code == 202
        assert quick == ["e-1"] and not starts("e-1")
        assert runs() == {"slow": (Status.PENDING, 0), "fast": (Status.DONE, 1)}
        assert post("e-1", {"block": True}).status_code == 202  # a redelivery
        assert enqueued == [[ReceivedEvent.objects.get().pk]]  # once
        assert [(len(ran), later) for _, ran, later in received] == [
            (1, ["group:tests.deferred_targets.slow"]),
            (0, []),  # fast skipped as done, nothing new for the worker
        ]

        (flags / "release").touch()
        assert work.process() == Counter(done=1)
    finally:
        unregister_group_handler(slow)
        unregister_group_handler(fast)
    assert runs() == {"slow": (Status.DONE, 1), "fast": (Status.DONE, 1)}
    assert quick == ["e-1"] and len(starts("e-1")) == 1


def order(id: str, data: dict):
    return post(id, data, type="testapp.Order")


def test_an_always_deferred_named_handler_runs_on_the_worker_in_inline_mode(
    flags, settings, signups
):
    settings.CLOUDEVENTS_RECEIVER = {"TASK_BACKEND": False}  # inline mode

    assert order("o-1", {"sku": "A1"}).status_code == 202
    assert order("o-1", {"sku": "A1"}).status_code == 202  # a redelivery
    assert [call[0] for call in signups] == ["reserve"]
    assert runs() == {
        "reserve": (Status.DONE, 1),
        "confirm": (Status.PENDING, 0),
    }
    assert work.process() == Counter(done=1)
    assert [call[0] for call in signups] == ["reserve", "confirm"]


def test_invalid_data_for_a_deferred_named_handler_is_400_in_inline_mode(
    flags, settings, signups
):
    settings.CLOUDEVENTS_RECEIVER = {"TASK_BACKEND": False}

    response = order("o-1", {"name": "no sku"})

    assert response.status_code == 400
    assert response.json() == {"error": "invalid event data: missing data key(s): sku"}
    assert not ReceivedEvent.objects.exists()
    assert signups == []


def test_a_deferred_function_handler_beside_inline_ones(flags, settings, signups):
    from django_cloudevents_bridge import handler
    from django_cloudevents_bridge.targets.named import unregister_handler

    settings.CLOUDEVENTS_RECEIVER = {"TASK_BACKEND": False}
    mailed: list = []

    def mail(event) -> None:
        mailed.append(event.get_id())

    handler("testapp.Sign*", deferred=True)(mail)
    try:
        assert post("s-1", {"email": "A@B.C"}, type="testapp.Signup").status_code == 202
        assert [call[0] for call in signups] == ["welcome", "count"]
        assert mailed == []
        assert work.process() == Counter(done=1)
    finally:
        unregister_handler(mail)
    assert mailed == ["s-1"]
    assert {status for status, _ in runs().values()} == {Status.DONE}


def test_handler_deferred_without_a_name_is_for_methods():
    from django_cloudevents_bridge import handler

    def plain(event) -> None: ...

    with pytest.raises(TypeError, match="an event name"):
        handler(deferred=True)(plain)
