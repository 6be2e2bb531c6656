"""Real ``cloudevents_relay`` processes against a real loopback sink.

Each test commits outbox rows, runs relay subprocesses on the same database,
kills or stops them at a known point (the sink holds requests mid-batch instead of
guessing with sleeps) and asserts on what the sink received: every committed event
with its original id, duplicates only where the guarantees allow them, and each
subject's events first arriving in the order of their rows.
"""

from __future__ import annotations

import datetime
import random
import re
import signal
import time
from collections import defaultdict
from collections.abc import Iterator

import pytest
from django.db import connection, transaction
from django.utils import timezone

from django_cloudevents_bridge.models import OutboxEvent
from tests.relay_proc import CountingSink, Relays, SharedDatabase
from tests.sink import Fault
from tests.testapp.models import Question

pytestmark = pytest.mark.django_db(transaction=True)

NOW = datetime.datetime(2026, 11, 1, tzinfo=datetime.UTC)
BATCH = 50
# Relay tuning for the subprocesses: small batches, quick polls and retries.
FAST = {
    "BATCH_SIZE": BATCH,
    "CONCURRENCY": 4,
    "POLL_INTERVAL": 0.05,
    "BACKOFF": 0.05,
    "BACKOFF_MAX": 0.1,
}
SUMMARY = re.compile(r"claimed (\d+), delivered (\d+), failed (\d+), parked (\d+)")


@pytest.fixture
def outbox_settings(settings):
    """Outbox delivery with no background attempt: the rows wait for the relays."""
    settings.CLOUDEVENTS_DELIVERY = "outbox"
    settings.CLOUDEVENTS_OUTBOX = {"BACKGROUND": False}
    return settings


@pytest.fixture
def sink() -> Iterator[CountingSink]:
    server = CountingSink()
    server.start()
    try:
        yield server
    finally:
        server.release()
        server.stop()


@pytest.fixture
def shared_db(tmp_path) -> SharedDatabase:
    return SharedDatabase(tmp_path)


@pytest.fixture
def relays(tmp_path, sink, shared_db) -> Iterator[Relays]:
    """Starts relay subprocesses; every one is killed at teardown."""
    started = Relays(tmp_path, sink, shared_db)
    try:
        yield started
    finally:
        started.stop_all()


def need_postgres() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE=postgres); SKIP LOCKED is PG-only")


def commit_events(count: int, subjects: int, seed: int = 0) -> list[OutboxEvent]:
    """Commit ``count`` events over ``subjects`` questions, subjects interleaved."""
    order = [n % subjects for n in range(count - subjects)]
    random.Random(seed).shuffle(order)
    with transaction.atomic():
        questions = [
            Question.objects.create(question_text="v0", pub_date=NOW)
            for _ in range(subjects)
        ]
        for version, index in enumerate(order, start=1):
            questions[index].question_text = f"v{version}"
            questions[index].save()
    rows = list(OutboxEvent.objects.order_by("pk"))
    assert len(rows) == count
    return rows


def by_subject(rows: list[OutboxEvent]) -> dict[str, list[int]]:
    """Each subject's row ids in id order: the order its events must arrive in."""
    order: dict[str, list[int]] = defaultdict(list)
    for row in sorted(rows, key=lambda row: row.pk):
        order[row.subject].append(row.pk)
    return dict(order)


def first_arrivals(sink: CountingSink, rows: list[OutboxEvent]) -> dict[str, list]:
    """Each subject's row ids in the order their events first reached the sink."""
    pk = {row.event_id: row.pk for row in rows}
    seen: set[str] = set()
    order: dict[str, list] = defaultdict(list)
    for received in list(sink.received):
        assert received.problems == []
        event_id = received.attributes["id"]
        if event_id not in seen:
            seen.add(event_id)
            order[received.attributes["subject"]].append(pk.get(event_id, event_id))
    return dict(order)


def claimed_now() -> set[str]:
    """Ids of the events whose rows are under a live lease."""
    return set(
        OutboxEvent.objects.filter(
            status="pending", locked_until__gt=timezone.now()
        ).values_list("event_id", flat=True)
    )


def summary(output: str) -> tuple[int, int, int, int]:
    match = SUMMARY.search(output)
    assert match, f"no summary line in {output!r}"
    claimed, delivered, failed, parked = map(int, match.groups())
    return claimed, delivered, failed, parked


def test_a_relay_killed_mid_batch_loses_nothing_and_resends_only_that_batch(
    outbox_settings, sink, shared_db, relays
):
    rows = commit_events(300, subjects=20)
    shared_db.publish()
    # Answer the first batch and 10 events of the second, then hold the rest.
    sink.hold_after(BATCH + 10)
    first = relays.start(**FAST, LEASE=2.0)
    relays.until(lambda: sink.held >= 1)
    first.send(signal.SIGKILL)
    assert first.wait() == -signal.SIGKILL

    shared_db.refresh()
    # The first batch is done; of the second, the subjects that finished before
    # the kill are recorded delivered and the rest stays claimed under the lease.
    claimed = claimed_now()
    first_batch = {row.event_id for row in rows[:BATCH]}
    second_batch = {row.event_id for row in rows[BATCH : 2 * BATCH]}
    done = OutboxEvent.objects.filter(status="delivered")
    delivered = set(done.values_list("event_id", flat=True))
    assert claimed and claimed <= second_batch
    assert first_batch <= delivered
    assert claimed | (delivered - first_batch) == second_batch
    assert not claimed & delivered
    # Held requests now reach the sink (the sender is gone): in flight at the kill.
    sink.release()
    relays.until(lambda: sink.held == 0)
    arrived_before = set(sink.ids())
    assert len(arrived_before) > BATCH + 10

    second = relays.start(**FAST)  # runs until SIGTERM; reclaims when leases end
    relays.until(lambda: sink.distinct() == len(rows))
    second.send(signal.SIGTERM)
    assert second.wait() == 0
    left = len(rows) - len(delivered)
    assert summary(second.output()[0]) == (left, left, 0, 0)

    shared_db.refresh()
    final = list(OutboxEvent.objects.order_by("pk"))
    assert {row.status for row in final} == {"delivered"}
    assert all(row.locked_until is None for row in final)
    assert [row.event_id for row in final] == [row.event_id for row in rows]
    # Every event arrived with its original id; only the killed batch's events
    # that had reached the sink came twice.
    assert first_arrivals(sink, rows) == by_subject(rows)
    assert sink.duplicates() == dict.fromkeys(claimed & arrived_before, 2)
    assert set(sink.counts()) == {row.event_id for row in rows}


def test_sigterm_finishes_the_batch_in_hand_then_exits(
    outbox_settings, sink, shared_db, relays
):
    rows = commit_events(150, subjects=10)
    shared_db.publish()
    sink.hold_after(BATCH + 10)
    relay = relays.start(**FAST)
    relays.until(lambda: sink.held >= 1)
    relay.send(signal.SIGTERM)
    relays.until(lambda: "SIGTERM: finishing the batch" in relay.output()[1])

    shared_db.refresh()
    in_hand = rows[BATCH : 2 * BATCH]
    # Subjects that finished are recorded already; the rest of the batch is held.
    assert claimed_now() and claimed_now() <= {row.event_id for row in in_hand}
    sink.release()
    assert relay.wait() == 0
    out, err = relay.output()
    assert summary(out) == (2 * BATCH, 2 * BATCH, 0, 0)
    assert "Traceback" not in err

    shared_db.refresh()
    final = list(OutboxEvent.objects.order_by("pk"))
    delivered = [row for row in final if row.status == "delivered"]
    assert [row.pk for row in delivered] == [row.pk for row in rows[: 2 * BATCH]]
    assert not any(row.locked_until for row in final)  # nothing left claimed
    rest = final[2 * BATCH :]
    assert {(row.status, row.attempts, row.locked_by) for row in rest} == {
        ("pending", 0, "")
    }
    assert sink.counts() == dict.fromkeys((row.event_id for row in delivered), 1)
    assert first_arrivals(sink, rows) == by_subject(delivered)


# A save, then the process ends at once: what a script or a cron job does.
SAVE_AND_EXIT = (
    "from django.utils import timezone; from tests.testapp.models import Question; "
    "Question.objects.create(question_text='last words', pub_date=timezone.now())"
)


def test_a_process_that_exits_right_after_a_save_still_sends_its_event(
    sink, shared_db, relays
):
    shared_db.publish()
    process = relays.start("-c", SAVE_AND_EXIT, command="shell", BACKGROUND=True)
    assert process.wait() == 0
    _out, err = process.output()
    assert "Traceback" not in err, err
    shared_db.refresh()
    [row] = OutboxEvent.objects.all()
    # Sent by the background sender before the interpreter exited, and recorded:
    # not left claimed, which would hold its subject back for a whole lease.
    assert (row.status, row.attempts, row.locked_until) == ("delivered", 1, None)
    assert sink.counts() == {row.event_id: 1}


@pytest.mark.parametrize("pause", [0, 0.5], ids=["at-once", "after-a-pause"])
def test_a_process_that_exits_while_its_sink_hangs_gives_its_claim_back(
    sink, shared_db, relays, pause
):
    # After a pause the send threads are running when the interpreter exits:
    # they must not hold it up until the read timeout.
    shared_db.publish()
    sink.hold_after(0)  # the first attempt never gets an answer
    code = f"{SAVE_AND_EXIT}; import time; time.sleep({pause})"
    process = relays.start("-c", code, command="shell", BACKGROUND=True)
    assert process.wait(30) == 0  # after the exit grace, not the 15 s read timeout
    assert "the relay will send them" in process.output()[1]
    sink.release()
    shared_db.refresh()
    [row] = OutboxEvent.objects.all()
    # Claimable at once, not after the lease: the relay takes it now.
    assert (row.status, row.attempts, row.locked_until) == ("pending", 0, None)
    shared_db.publish()
    relay = relays.start("--once", **FAST)
    assert relay.wait() == 0
    shared_db.refresh()
    assert OutboxEvent.objects.get().status == "delivered"
    assert row.event_id in sink.ids()


@pytest.mark.postgres
@pytest.mark.parametrize("inserting", [False, True], ids=["backlog", "inserting"])
def test_two_relays_at_once_send_each_event_once_in_subject_order(
    outbox_settings, sink, shared_db, relays, inserting
):
    need_postgres()
    commit_events(500, subjects=100)
    # Hold every request until both relays hold a claim at the same time. The
    # first 100 rows are 100 subjects' first events: with batches of 25, one
    # relay holds its batch in flight and the next it claimed ahead, and the
    # other still finds a batch of subjects nobody holds.
    sink.hold_after(0)
    options = {**FAST, "BATCH_SIZE": 25}
    pair = [relays.start(**options), relays.start(**options)]

    def owners() -> set[str]:
        tokens = OutboxEvent.objects.filter(
            status="pending", locked_until__isnull=False
        ).values_list("locked_by", flat=True)
        return {
            relay.name
            for relay in pair
            for token in tokens
            if token.startswith(f"{relay.name}:")
        }

    relays.until(lambda: owners() == {relay.name for relay in pair})
    sink.release()
    if inserting:  # more commits while both relays run: new subjects and old
        questions = list(Question.objects.order_by("pk"))
        for round_ in range(10):
            with transaction.atomic():
                for n in range(20):
                    if n % 4 == 0:
                        Question.objects.create(question_text="new", pub_date=NOW)
                    else:
                        question = questions[(round_ * 20 + n) % len(questions)]
                        question.question_text = f"r{round_}.{n}"
                        question.save()
            time.sleep(0.03)
    rows = list(OutboxEvent.objects.order_by("pk"))
    assert len(rows) == (700 if inserting else 500)

    relays.until(lambda: sink.distinct() == len(rows), timeout=20)
    for relay in pair:
        relay.send(signal.SIGTERM)
    results = [relay.wait() for relay in pair]
    assert results == [0, 0]

    final = list(OutboxEvent.objects.order_by("pk"))
    assert {row.status for row in final} == {"delivered"}
    assert sink.counts() == dict.fromkeys((row.event_id for row in rows), 1)
    assert sink.duplicates() == {}
    assert first_arrivals(sink, rows) == by_subject(rows)
    # Both did part of the work, and their summaries add up to every row once.
    per_relay = [summary(relay.output()[0]) for relay in pair]
    for relay, (claimed, delivered, failed, parked) in zip(
        pair, per_relay, strict=True
    ):
        assert claimed == delivered > 0 and (failed, parked) == (0, 0)
        assert delivered == sum(
            row.locked_by.startswith(f"{relay.name}:") for row in final
        )
    assert sum(delivered for _, delivered, _, _ in per_relay) == len(rows)


@pytest.mark.postgres
def test_a_slow_sink_does_not_make_two_live_relays_send_twice(
    outbox_settings, sink, shared_db, relays
):
    # One busy object with 20 pending changes and a sink answering in 0.2 s: one
    # relay needs ~4 s for them, twice its 2 s lease. Its heartbeat keeps the
    # lease, so the second relay never takes those rows while they are sent.
    question = Question.objects.create(question_text="v0", pub_date=NOW)
    with transaction.atomic():
        for n in range(1, 20):
            question.question_text = f"v{n}"
            question.save()
    rows = list(OutboxEvent.objects.order_by("pk"))
    shared_db.publish()
    sink.faults.extend([Fault(delay=0.2)] * 200)
    first = relays.start(**{**FAST, "LEASE": 2.0})
    relays.until(lambda: sink.attempts >= 1)
    second = relays.start(**{**FAST, "LEASE": 2.0})
    relays.until(lambda: sink.distinct() == len(rows), timeout=30)
    time.sleep(2.2)  # longer than a lease: time for a second relay to resend
    for relay in (first, second):
        relay.send(signal.SIGTERM)
    assert [relay.wait() for relay in (first, second)] == [0, 0]
    assert sink.duplicates() == {}
    texts = [r.event.get_data()["data"]["question_text"] for r in sink.received]
    assert texts == [f"v{n}" for n in range(20)]


def idle_after_first_drain(relays: Relays, relay_name: str) -> None:
    """Wait until the relay beat twice: its first drain is over and it waits.

    The loop beats, drains, then waits; it beats again HEARTBEAT_EVERY later
    without draining (a beat never triggers a claim). So once ``last_seen``
    has moved past ``started_at``, the only drains left are the ones a
    notification or the poll interval starts.
    """
    from django_cloudevents_bridge.models import RelayHeartbeat

    def beat_twice() -> bool:
        row = RelayHeartbeat.objects.filter(name=relay_name).first()
        return row is not None and row.last_seen > row.started_at

    relays.until(beat_twice, timeout=60)


@pytest.mark.postgres
def test_the_relay_is_woken_by_the_insert_not_the_poll_interval(
    settings, sink, shared_db, relays
):
    need_postgres()
    settings.CLOUDEVENTS_DELIVERY = "outbox"
    del settings.CLOUDEVENTS_OUTBOX  # the defaults: the web process sends nothing
    heartbeat = shared_db.directory / "alive"
    # A 10-minute poll interval: an event that arrives within a minute can only
    # have been claimed because the INSERT's notification woke the relay.
    relay = relays.start("--heartbeat-file", str(heartbeat), POLL_INTERVAL=600)
    idle_after_first_drain(relays, relay.name)
    assert heartbeat.exists()

    question = Question.objects.create(question_text="now", pub_date=NOW)
    row = OutboxEvent.objects.get()
    relays.until(lambda: sink.counts() == {row.event_id: 1}, timeout=60)
    with transaction.atomic():  # a burst in one transaction: one notification
        for n in range(5):
            question.question_text = f"v{n}"
            question.save()
    relays.until(lambda: sink.distinct() == 6, timeout=60)
    relays.until(lambda: not OutboxEvent.objects.filter(status="pending").exists())

    relay.send(signal.SIGTERM)
    assert relay.wait() == 0
    out, err = relay.output()
    assert summary(out) == (6, 6, 0, 0)
    assert "Traceback" not in err
    from django_cloudevents_bridge.models import RelayHeartbeat

    assert not RelayHeartbeat.objects.exists()  # a clean exit removes its row


def test_a_running_relay_keeps_its_heartbeat_and_silences_the_check(
    outbox_settings, sink, shared_db, relays
):
    from django_cloudevents_bridge import checks
    from django_cloudevents_bridge.models import RelayHeartbeat

    Question.objects.create(question_text="waiting", pub_date=NOW)
    sink.hold_after(0)  # the event stays in flight: pending, and old
    OutboxEvent.objects.update(created_at=timezone.now() - datetime.timedelta(hours=1))
    [warning] = checks.check_relay(databases=["default"])
    assert warning.id == "cloudevents_bridge.W005"
    shared_db.publish()
    relay = relays.start(**FAST)
    relays.until(lambda: sink.held >= 1)

    def seen() -> bool:
        shared_db.refresh()
        return RelayHeartbeat.objects.filter(name=relay.name).exists()

    relays.until(seen)
    assert checks.check_relay(databases=["default"]) == []
    sink.release()
    relay.send(signal.SIGTERM)
    assert relay.wait() == 0
    shared_db.refresh()
    assert not RelayHeartbeat.objects.exists()
