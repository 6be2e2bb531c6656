"""The outbox: one INSERT in the caller's transaction, then delivery that loses nothing.

Every test delivers to a real HTTP sink on a loopback port and asserts on what the
sink received: all committed events, with their original ids, in subject order.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import threading
import time

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from django_cloudevents_bridge import events, signals
from django_cloudevents_bridge.bindings import jsonformat
from django_cloudevents_bridge.emit import emit, handlers, outbox
from django_cloudevents_bridge.emit.relay import Relay, retry_delay
from django_cloudevents_bridge.exceptions import DeliveryError
from django_cloudevents_bridge.models import OutboxEvent, RelayHeartbeat
from django_cloudevents_bridge.models._outbox_sql import in_subject_order
from tests.sink import Fault, Sink
from tests.testapp.models import Choice, Question

pytestmark = pytest.mark.django_db(transaction=True)

FAST = {"BACKGROUND": False, "BACKOFF": 0.001, "BACKOFF_MAX": 0.002}
NOW = datetime.datetime(2026, 11, 1, tzinfo=datetime.UTC)


@pytest.fixture
def relay_settings(settings, http_sink):
    """Outbox delivery with the background attempt off: the test drives the relay."""
    settings.CLOUDEVENTS_DELIVERY = "outbox"
    settings.CLOUDEVENTS_OUTBOX = dict(FAST)
    return settings


def relay(settings, **overrides) -> Relay:
    handler = handlers.get_handler(**settings.CLOUDEVENTS_HANDLER_OPTIONS)
    options = {**outbox.conf.outbox(), **overrides}
    return Relay(handler, options=options)


def drain_until_quiet(settings, rounds: int = 50, **overrides) -> None:
    """Run the relay until nothing is pending (retries included)."""
    worker = relay(settings, **overrides)
    for _ in range(rounds):
        worker.drain()
        if not OutboxEvent.objects.filter(status="pending").exists():
            return
        time.sleep(0.005)
    raise AssertionError("events still pending")


def ask(text: str = "q") -> Question:
    return Question.objects.create(question_text=text, pub_date=NOW)


def test_outbox_is_the_default(settings, http_sink):
    del settings.CLOUDEVENTS_DELIVERY
    settings.CLOUDEVENTS_OUTBOX = {"BACKGROUND": False}
    question = ask()
    row = OutboxEvent.objects.get()
    assert row.status == "pending"
    assert row.subject == f"DCE:testapp.question/{question.pk}"
    assert http_sink.received == []


def server_connections() -> int:
    """Sessions on this database, this one included (PostgreSQL); 0 elsewhere."""
    if connection.vendor != "postgresql":
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        )
        return cursor.fetchone()[0]


def test_by_default_a_save_writes_the_row_and_nothing_else(settings, http_sink):
    settings.CLOUDEVENTS_DELIVERY = "outbox"
    del settings.CLOUDEVENTS_OUTBOX  # the defaults, whatever DEBUG is
    settings.DEBUG = True
    threads, sessions = threading.enumerate(), server_connections()
    queued = outbox.background.outstanding
    ask()
    with transaction.atomic():
        ask()
    ask()  # autocommit too
    assert threading.enumerate() == threads  # no sender thread started
    assert outbox.background.outstanding == queued  # nothing handed to one
    assert outbox.background.wait(10)
    assert server_connections() == sessions  # no connection opened
    assert set(OutboxEvent.objects.values_list("status", flat=True)) == {"pending"}
    assert http_sink.received == []  # the relay is the sender


def test_save_adds_exactly_one_insert(relay_settings, django_assert_num_queries):
    ask()  # the first save looks up the outbox table once per process
    with django_assert_num_queries(2):  # the model's INSERT and the outbox's
        ask()


def test_save_does_not_wait_for_a_stalled_sink(settings, http_sink):
    settings.CLOUDEVENTS_DELIVERY = "outbox"
    settings.CLOUDEVENTS_OUTBOX = {"BACKGROUND": True}
    settings.CLOUDEVENTS_HANDLER_OPTIONS = {"timeout": 2.0, "oidc_token_path": None}
    stall = threading.Event()  # the sink answers once it is set
    http_sink.faults.append(Fault(hold=stall))
    ask()  # had it waited for the sink, it would have hit the read timeout,
    stall.set()  # and the event would not be delivered below
    assert outbox.background.wait(10)
    assert OutboxEvent.objects.get().status == "delivered"


def test_background_attempt_delivers_right_after_commit(settings, http_sink):
    settings.CLOUDEVENTS_DELIVERY = "outbox"
    settings.CLOUDEVENTS_OUTBOX = {"BACKGROUND": True}
    with transaction.atomic():
        question = ask()
        Choice.objects.create(question=question, choice_text="a")
    assert outbox.background.wait(10)
    received = http_sink.wait_for(2)
    assert [r.problems for r in received] == [[], []]
    rows = list(OutboxEvent.objects.order_by("pk"))
    assert [r.status for r in rows] == ["delivered", "delivered"]
    # Two subjects go out in parallel: compare ids, not arrival order.
    assert {r.attributes["id"] for r in received} == {r.event_id for r in rows}
    assert all(r.attempts == 1 and r.delivered_at for r in rows)


def test_rollback_writes_no_row(relay_settings):
    with pytest.raises(RuntimeError), transaction.atomic():
        ask()
        raise RuntimeError("roll back")
    assert not OutboxEvent.objects.exists()


def test_stored_event_is_the_complete_event(relay_settings):
    ask("Euro € 😀")
    row = OutboxEvent.objects.get()
    event = jsonformat.from_json(row.event)
    assert event.get_id() == row.event_id
    assert event.get_type() == row.type == "django.orm.post_save"
    assert event.get_extension("djangomodel") == "question"
    assert event.get_data()["data"]["question_text"] == "Euro € 😀"


def test_a_run_of_503s_then_success_keeps_the_id(relay_settings, http_sink):
    http_sink.faults.extend([Fault(status=503), Fault(status=503), Fault(status=500)])
    ask()
    row = OutboxEvent.objects.get()
    drain_until_quiet(relay_settings)
    [received] = http_sink.received
    assert received.attributes["id"] == row.event_id
    row.refresh_from_db()
    assert (row.status, row.attempts, row.last_error) == ("delivered", 4, "")
    assert http_sink.attempts == 4


def test_failure_is_recorded_with_backoff(relay_settings, http_sink):
    relay_settings.CLOUDEVENTS_OUTBOX = {"BACKGROUND": False, "BACKOFF": 30}
    http_sink.faults.append(Fault(status=503, body=b"try later"))
    ask()
    before = timezone.now()
    result = relay(relay_settings).run_once()
    assert (result.claimed, result.delivered, result.failed) == (1, 0, 1)
    row = OutboxEvent.objects.get()
    assert row.status == "pending" and row.attempts == 1
    assert "503" in row.last_error and "try later" in row.last_error
    assert row.locked_until is None
    wait = (row.next_attempt_at - before).total_seconds()
    assert 15 <= wait <= 31  # equal jitter: between half and all of the backoff
    assert relay(relay_settings).run_once().claimed == 0  # not due yet


def test_429_retry_after_is_honoured(relay_settings, http_sink):
    http_sink.faults.append(Fault(status=429, headers={"Retry-After": "120"}))
    ask()
    before = timezone.now()
    relay(relay_settings).run_once()
    row = OutboxEvent.objects.get()
    assert 119 <= (row.next_attempt_at - before).total_seconds() <= 121
    assert "429" in row.last_error


def test_dropped_connection_and_stalled_sink_are_retried(relay_settings, http_sink):
    relay_settings.CLOUDEVENTS_HANDLER_OPTIONS = {
        "timeout": (10.0, 0.3),
        "oidc_token_path": None,
    }
    stall = threading.Event()  # the sink answers once the client gave up
    http_sink.faults.extend([Fault(drop=True), Fault(hold=stall)])
    ask()
    worker = relay(relay_settings)
    worker.run_once()
    assert "connection" in OutboxEvent.objects.get().last_error.lower()
    time.sleep(0.01)
    worker.run_once()
    assert "timeout" in OutboxEvent.objects.get().last_error.lower()
    stall.set()
    drain_until_quiet(relay_settings)
    # The stalled request may have reached the sink late; the id never changes.
    ids = {r.attributes["id"] for r in http_sink.received}
    assert ids == {OutboxEvent.objects.get().event_id}


def test_sink_down_for_a_while_then_back(relay_settings, monkeypatch):
    down = Sink()  # bind a port, then close it: connections are refused
    port = down.server.server_address[1]
    down.server.server_close()
    monkeypatch.setenv("K_SINK", f"http://127.0.0.1:{port}/")
    questions = [ask(str(n)) for n in range(5)]
    worker = relay(relay_settings)
    for _ in range(3):
        assert worker.run_once().failed == 5
        time.sleep(0.005)
    assert set(OutboxEvent.objects.values_list("status", flat=True)) == {"pending"}

    back = Sink(port=port).start()
    try:
        drain_until_quiet(relay_settings)
        received = back.wait_for(5)
    finally:
        back.stop()
    subjects = [r.attributes["subject"] for r in received]
    assert sorted(subjects) == sorted(f"DCE:testapp.question/{q.pk}" for q in questions)
    assert {r.attributes["id"] for r in received} == set(
        OutboxEvent.objects.values_list("event_id", flat=True)
    )


def test_subject_order_holds_across_a_failure(relay_settings, http_sink):
    question = ask("v1")
    for version in ("v2", "v3"):
        question.question_text = version
        question.save()
    other = ask("other")
    http_sink.faults.append(Fault(status=503))  # the first send (v1) fails

    # One send at a time, so the fault surely hits v1 (subjects go in id order).
    first = relay(relay_settings, CONCURRENCY=1).run_once()
    # v1 failed; v2 and v3 were not tried; the other subject went through.
    assert (first.claimed, first.delivered, first.failed) == (4, 1, 1)
    assert OutboxEvent.objects.filter(locked_until__isnull=False).count() == 0
    assert [r.attributes["subject"] for r in http_sink.received] == [
        f"DCE:testapp.question/{other.pk}"
    ]
    drain_until_quiet(relay_settings)
    texts = [
        r.event.get_data()["data"]["question_text"]
        for r in http_sink.received
        if r.attributes["subject"] == f"DCE:testapp.question/{question.pk}"
    ]
    assert texts == ["v1", "v2", "v3"]


def test_one_drain_empties_the_outbox_even_for_one_busy_subject(
    relay_settings, http_sink
):
    # On PostgreSQL the next claim is taken while a batch is in flight, and has
    # to skip that batch's subject; the drain must not stop there.
    question = ask("v0")
    for version in range(1, 25):
        question.question_text = f"v{version}"
        question.save()
    result = relay(relay_settings, BATCH_SIZE=10).drain()
    assert result.delivered == 25
    assert not OutboxEvent.objects.filter(status="pending").exists()
    texts = [r.event.get_data()["data"]["question_text"] for r in http_sink.received]
    assert texts == [f"v{version}" for version in range(25)]


def test_drain_stops_at_its_deadline_with_the_batch_in_hand_done(
    relay_settings, http_sink
):
    for n in range(5):
        ask(str(n))
    result = relay(relay_settings, BATCH_SIZE=2).drain(until=time.monotonic())
    assert result.claimed == 0  # past the deadline: nothing claimed
    result = relay(relay_settings, BATCH_SIZE=2).drain()
    assert result.delivered == 5


def test_parked_after_max_attempts_then_retried_by_command(relay_settings, http_sink):
    relay_settings.CLOUDEVENTS_OUTBOX = {**FAST, "MAX_ATTEMPTS": 3}
    http_sink.faults.extend([Fault(status=500)] * 3)
    parked = []

    def on_parked(sender, outbox_event, **kwargs):
        parked.append(outbox_event)

    signals.event_parked.connect(on_parked)
    ask()
    question = Question.objects.get()
    question.question_text = "later change"
    question.save()  # same subject: must not be blocked by the parked event

    drain_until_quiet(relay_settings)
    first, second = OutboxEvent.objects.order_by("pk")
    assert (first.status, first.attempts) == ("parked", 3)
    assert "500" in first.last_error
    signals.event_parked.disconnect(on_parked)
    assert [row.pk for row in parked] == [first.pk]
    # The receiver sees the row as recorded, not as it was claimed.
    assert (parked[0].status, parked[0].attempts) == ("parked", 3)
    assert (parked[0].last_error, parked[0].locked_until) == (first.last_error, None)
    assert second.status == "delivered"

    call_command("cloudevents_outbox", "retry", "--id", first.event_id)
    first.refresh_from_db()
    assert (first.status, first.attempts, first.locked_by) == ("pending", 0, "")
    drain_until_quiet(relay_settings)
    ids = [r.attributes["id"] for r in http_sink.received]
    assert ids == [second.event_id, first.event_id]


def test_too_old_events_are_parked(relay_settings, http_sink):
    relay_settings.CLOUDEVENTS_OUTBOX = {**FAST, "MAX_AGE": 60}
    http_sink.faults.append(Fault(status=503))
    ask()
    OutboxEvent.objects.update(created_at=timezone.now() - datetime.timedelta(hours=1))
    relay(relay_settings).run_once()
    assert OutboxEvent.objects.get().status == "parked"


def test_delivered_signal(relay_settings, http_sink):
    seen = []

    def on_delivered(sender, outbox_event, **kwargs):
        seen.append(outbox_event.event_id)

    signals.event_delivered.connect(on_delivered)
    try:
        ask()
        relay(relay_settings).drain()
    finally:
        signals.event_delivered.disconnect(on_delivered)
    assert seen == [OutboxEvent.objects.get().event_id]


def test_a_delivered_row_reads_back_as_the_orm_would_have_written_it(
    relay_settings, http_sink
):
    # The delivered mark is written in SQL of our own (one parameter for all the
    # ids): its timestamp must compare and sort like the ORM's.
    before = timezone.now()
    ask()
    relay(relay_settings).drain()
    row = OutboxEvent.objects.get()
    assert row.status == "delivered" and row.attempts == 1
    assert before <= row.delivered_at <= timezone.now()
    assert OutboxEvent.objects.filter(delivered_at__gte=before).count() == 1
    assert OutboxEvent.objects.filter(delivered_at__lt=before).count() == 0


def test_the_serial_drain_signals_a_delivery_once_it_is_committed(
    relay_settings, http_sink
):
    # One batch at a time (SQLite's way, or inside a transaction): a batch's
    # results are recorded in the transaction that claims the next batch, and
    # the signal waits for that commit.
    seen = []

    def on_delivered(sender, outbox_event, **kwargs):
        stored = OutboxEvent.objects.get(pk=outbox_event.pk)
        seen.append((outbox_event.pk, stored.status, connection.in_atomic_block))

    for text in "abc":
        ask(text)
    signals.event_delivered.connect(on_delivered)
    try:
        result = relay(relay_settings, BATCH_SIZE=2)._drain(None, None, overlap=False)
    finally:
        signals.event_delivered.disconnect(on_delivered)
    pks = list(OutboxEvent.objects.order_by("pk").values_list("pk", flat=True))
    assert (result.claimed, result.delivered) == (3, 3)
    assert sorted(seen) == [(pk, "delivered", False) for pk in pks]  # any order


def drain_with_a_failing_second_claim(worker: Relay, signal, monkeypatch) -> list:
    """Drain one batch at a time, the second claim failing; the signal's rows."""
    seen = []

    def receiver(sender, outbox_event, **kwargs):
        seen.append(outbox_event.pk)

    claim, calls = worker.claim, []

    def claim_once(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise DatabaseError("connection lost")
        return claim(*args, **kwargs)

    monkeypatch.setattr(worker, "claim", claim_once)
    signal.connect(receiver)
    try:
        with pytest.raises(DatabaseError):
            worker._drain(None, None, overlap=False)
    finally:
        signal.disconnect(receiver)
    return seen


def test_a_claim_that_fails_after_a_batch_still_records_the_batch(
    relay_settings, http_sink, monkeypatch
):
    for text in "abc":
        ask(text)
    worker = relay(relay_settings, BATCH_SIZE=2)
    seen = drain_with_a_failing_second_claim(
        worker, signals.event_delivered, monkeypatch
    )
    pks = list(OutboxEvent.objects.order_by("pk").values_list("pk", flat=True))
    statuses = dict(OutboxEvent.objects.values_list("pk", "status"))
    assert [statuses[pk] for pk in pks] == ["delivered", "delivered", "pending"]
    assert sorted(seen) == pks[:2]  # once each, after the record that held


def test_a_failed_attempt_recorded_again_after_a_failed_claim_counts_once(
    relay_settings, http_sink, monkeypatch
):
    ask()
    http_sink.faults.append(Fault(status=500))
    worker = relay(relay_settings, MAX_ATTEMPTS=2)
    parked = drain_with_a_failing_second_claim(
        worker, signals.event_parked, monkeypatch
    )
    row = OutboxEvent.objects.get()
    assert (row.attempts, row.status, parked) == (1, "pending", [])


def test_a_heartbeat_after_every_group_was_recorded_renews_nothing(
    relay_settings, http_sink, monkeypatch
):
    # A worker can be switched out between handing in its last group and
    # returning; the heartbeat then finds nothing left to renew.
    ask()
    # A lease long enough that a slow start of the send does not lose it; a
    # tick (a third of it) short enough to fall inside the pause below.
    worker = relay(relay_settings, LEASE=1.5)
    send_groups = Relay._send_groups

    def slow_to_return(self, todo, finished):
        send_groups(self, todo, finished)
        time.sleep(1.0)  # longer than a tick

    monkeypatch.setattr(Relay, "_send_groups", slow_to_return)
    assert worker.send(worker.claim()).delivered == 1
    assert OutboxEvent.objects.get().status == "delivered"


def test_a_heartbeat_after_the_claim_lost_every_row_extends_nothing(relay_settings):
    # Another relay took the rows over (their lease ran out): nothing of theirs
    # is extended, and the senders see the lease lost.
    ask()
    rows = relay(relay_settings).claim()
    OutboxEvent.objects.update(locked_by="other")
    theirs = OutboxEvent.objects.get().locked_until
    OutboxEvent.objects.renew(rows, lease=600.0)
    assert [row.locked_until for row in rows] == [None]
    assert OutboxEvent.objects.get().locked_until == theirs


@pytest.mark.postgres
def test_a_claim_in_a_session_not_in_utc_reads_what_the_orm_reads(relay_settings):
    # Django's loader labels the session's wall-clock time as UTC; psycopg's
    # would not, so it is used only while the session really is in UTC.
    if connection.vendor != "postgresql":
        pytest.skip("a session time zone is PostgreSQL's")
    ask()
    with connection.cursor() as cursor:
        cursor.execute("SET TIME ZONE 'Asia/Kolkata'")
    try:
        [claimed] = relay(relay_settings).claim()
        stored = OutboxEvent.objects.get()
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET TIME ZONE 'UTC'")
    assert claimed.created_at == stored.created_at
    assert claimed.created_at.tzinfo is stored.created_at.tzinfo


def test_a_lease_held_by_a_live_relay_is_respected_and_an_expired_one_reclaimed(
    relay_settings, http_sink
):
    ask()
    OutboxEvent.objects.update(
        locked_by="other", locked_until=timezone.now() + datetime.timedelta(minutes=1)
    )
    assert relay(relay_settings).run_once().claimed == 0
    OutboxEvent.objects.update(
        locked_until=timezone.now() - datetime.timedelta(seconds=1)
    )
    assert relay(relay_settings).run_once().delivered == 1


def test_a_handler_bug_does_not_stop_the_relay(relay_settings):
    def broken(event):
        raise KeyError("bug")

    relay_settings.CLOUDEVENTS_HANDLER = broken
    relay_settings.CLOUDEVENTS_HANDLER_OPTIONS = {}
    ask()
    result = relay(relay_settings).run_once()
    assert result.failed == 1
    assert "KeyError" in OutboxEvent.objects.get().last_error


@pytest.mark.parametrize("atomic", [False, True], ids=["autocommit", "atomic"])
def test_a_failed_outbox_write_never_looks_saved(
    settings, sent_events, failing_outbox_insert, atomic
):
    # A row that cannot be written: where the failure leaves the caller's
    # transaction able to commit (autocommit, or SQLite), the save stands and
    # the event goes out once. Where it aborted the transaction (PostgreSQL in
    # atomic()), the COMMIT would roll back without a word: the error is raised.
    settings.CLOUDEVENTS_DELIVERY = "outbox"
    settings.CLOUDEVENTS_OUTBOX = {"BACKGROUND": True}
    aborts = atomic and connection.vendor == "postgresql"
    block = transaction.atomic if atomic else contextlib.nullcontext
    ran_on_commit = []
    with block():
        transaction.on_commit(lambda: ran_on_commit.append(True))
        if aborts:
            with pytest.raises(DatabaseError):  # caught in the block, by the caller
                ask()
        else:
            ask()
    assert outbox.background.wait(10)
    # Caught or not, an aborted block rolls back: nothing of it looks committed.
    assert ran_on_commit == ([] if aborts else [True])
    assert Question.objects.count() == (0 if aborts else 1)
    assert [e.get_type() for e in sent_events] == (
        [] if aborts else ["django.orm.post_save"]
    )
    assert not OutboxEvent.objects.exists()


def test_rows_written_before_a_failed_insert_are_relayed_the_rest_sent_once(
    settings, sent_events
):
    settings.CLOUDEVENTS_DELIVERY = "outbox"
    settings.CLOUDEVENTS_OUTBOX = {"BACKGROUND": True}
    inserts = []

    def second_insert_fails(execute, sql, params, many, context):
        table = f'INSERT INTO "{OutboxEvent._meta.db_table}"'
        if table in sql or "dce_outbox_write(" in sql:  # PostgreSQL: the function
            inserts.append(sql)
            if len(inserts) == 2:
                raise DatabaseError("the second row")
        return execute(sql, params, many, context)

    batch = [events.new("t", data={"n": n}) for n in range(3)]
    with connection.execute_wrapper(second_insert_fails):
        emit(batch)
    assert outbox.background.wait(10)
    [row] = OutboxEvent.objects.all()
    assert (row.event_id, row.status) == (batch[0].get_id(), "delivered")
    # Each event once: the written row through the outbox, the rest directly.
    assert sorted(e.get_id() for e in sent_events) == sorted(e.get_id() for e in batch)


def test_retry_finds_an_event_by_an_id_longer_than_its_column(
    relay_settings, http_sink
):
    event = events.new("t", id="y" * 300)
    emit([event])
    OutboxEvent.objects.update(status=OutboxEvent.Status.PARKED)
    call_command("cloudevents_outbox", "retry", "--id", "y" * 300)
    assert OutboxEvent.objects.get().status == OutboxEvent.Status.PENDING


def test_an_id_longer_than_its_column_is_stored_whole_in_the_event(
    relay_settings, http_sink
):
    event = events.new("t", id="x" * 300)
    with transaction.atomic():
        ask()
        emit([event])
    row = OutboxEvent.objects.get(type="t")
    assert row.event_id == "x" * 255  # the column, for lookups
    relay(relay_settings).drain()
    ids = {r.event.get_id() for r in http_sink.wait_for(2)}
    assert "x" * 300 in ids  # the event as it was made


def test_missing_table_falls_back_to_one_background_send(
    settings, sent_events, monkeypatch
):
    settings.CLOUDEVENTS_DELIVERY = "outbox"
    monkeypatch.setattr(outbox, "_present", set())
    monkeypatch.setattr(outbox, "_missing_since", {connection.alias: time.monotonic()})
    with transaction.atomic():
        ask()
        assert sent_events == []
    assert outbox.background.wait(10)
    assert [e.get_type() for e in sent_events] == ["django.orm.post_save"]
    assert not OutboxEvent.objects.exists()


def test_missing_table_is_looked_for_again(settings, monkeypatch):
    settings.CLOUDEVENTS_DELIVERY = "outbox"
    settings.CLOUDEVENTS_OUTBOX = {"BACKGROUND": False}
    monkeypatch.setattr(outbox, "_present", set())
    monkeypatch.setattr(
        outbox, "_missing_since", {connection.alias: time.monotonic() - 61}
    )
    ask()  # a minute later the table exists: the event goes to the outbox
    assert OutboxEvent.objects.count() == 1


def test_many_events_in_one_transaction_all_go_out_at_once(settings, http_sink):
    settings.CLOUDEVENTS_DELIVERY = "outbox"
    settings.CLOUDEVENTS_OUTBOX = {"BATCH_SIZE": 10, "BACKGROUND": True}
    with transaction.atomic():
        for n in range(25):
            ask(str(n))
    assert outbox.background.wait(20)
    http_sink.wait_for(25)
    assert set(OutboxEvent.objects.values_list("status", flat=True)) == {"delivered"}


def test_a_permanent_refusal_is_parked_at_once(relay_settings, http_sink):
    http_sink.faults.append(Fault(status=400, body=b'{"error": "bad event"}'))
    ask()
    result = relay(relay_settings).run_once()
    row = OutboxEvent.objects.get()
    assert (result.parked, row.status, row.attempts) == (1, "parked", 1)
    assert "400" in row.last_error


def test_overrides_are_applied_by_the_sending_process(
    relay_settings, http_sink, monkeypatch
):
    ask()  # saved without overrides
    monkeypatch.setenv("K_CE_OVERRIDES", '{"extensions": {"cluster": "prod"}}')
    events.parse_overrides.cache_clear()
    relay(relay_settings).drain()
    [received] = http_sink.wait_for(1)
    assert received.attributes["cluster"] == "prod"
    assert '"cluster"' not in OutboxEvent.objects.get().event  # stored as built


@pytest.mark.parametrize("status", ["delivered", "pending"])
def test_a_relay_that_lost_its_lease_does_not_overwrite_the_row(
    relay_settings, http_sink, caplog, status
):
    ask()
    worker = relay(relay_settings)
    [row] = worker.claim()
    # Another relay took the row over (lease expired): it delivered the row, or
    # is still sending it.
    OutboxEvent.objects.update(locked_by="other:1", status=status)
    result = worker.send([row])
    assert result.delivered == 1  # it did send (at least once) ...
    stored = OutboxEvent.objects.get()
    assert (stored.status, stored.locked_by) == (status, "other:1")  # ... no flip
    assert stored.delivered_at is None and stored.attempts == 0
    assert "delivered after this relay's lease ran out" in caplog.text


def test_no_chunk_starts_after_the_lease_is_over(relay_settings, http_sink):
    ask()
    worker = relay(relay_settings)
    [row] = worker.claim()
    row.locked_until = timezone.now() - datetime.timedelta(seconds=1)
    result = worker.send([row])
    assert result.delivered == 0
    assert http_sink.received == []


def test_relay_command_once(relay_settings, http_sink, capsys):
    for n in range(3):
        ask(str(n))
    call_command("cloudevents_relay", "--once")
    assert "claimed 3, delivered 3, failed 0, parked 0" in capsys.readouterr().out
    assert len(http_sink.received) == 3
    # A cron relay leaves its heartbeat: when it last ran.
    assert RelayHeartbeat.objects.last_seen() is not None


class DownBatchHandler(handlers.BaseHandler):
    """A project's batch handler whose error does not say how much it carried."""

    batch = True

    def send_events(self, events):
        raise DeliveryError("the broker is down")


def test_a_batch_handler_that_fails_without_saying_fails_the_whole_batch(
    relay_settings,
):
    for n in range(3):
        ask(str(n))
    result = Relay(DownBatchHandler(), options=outbox.conf.outbox()).run_once()
    assert (result.delivered, result.failed) == (0, 3)
    assert set(OutboxEvent.objects.values_list("attempts", flat=True)) == {1}


def test_relay_command_without_a_sink_fails_and_claims_nothing(
    relay_settings, http_sink, monkeypatch
):
    ask()
    monkeypatch.delenv("K_SINK")
    with pytest.raises(CommandError, match="no sink: K_SINK is not set"):
        call_command("cloudevents_relay", "--once")
    row = OutboxEvent.objects.get()
    assert (row.status, row.attempts, row.locked_until) == ("pending", 0, None)


def test_outbox_command_stats_and_purge(relay_settings, http_sink, capsys):
    ask()
    ask()
    call_command("cloudevents_outbox", "stats", "--json")
    assert '"pending": 2' in capsys.readouterr().out
    relay(relay_settings).drain()
    OutboxEvent.objects.filter(pk=OutboxEvent.objects.first().pk).update(
        delivered_at=timezone.now() - datetime.timedelta(days=10)
    )
    call_command("cloudevents_outbox", "purge")
    assert "1 delivered event(s) deleted" in capsys.readouterr().out
    call_command("cloudevents_outbox", "purge", "--days", "0")
    assert OutboxEvent.objects.count() == 0


def test_admin_lists_filters_and_acts(relay_settings, http_sink, admin_client):
    ask()
    ask()
    first, second = OutboxEvent.objects.order_by("pk")
    response = admin_client.get(
        "/admin/django_cloudevents_bridge/outboxevent/?status=pending"
    )
    assert response.status_code == 200
    assert first.event_id in response.content.decode()
    admin_client.post(
        "/admin/django_cloudevents_bridge/outboxevent/",
        {"action": "park_events", "_selected_action": [first.pk]},
    )
    first.refresh_from_db()
    assert first.status == "parked"
    admin_client.post(
        "/admin/django_cloudevents_bridge/outboxevent/",
        {"action": "retry_events", "_selected_action": [first.pk, second.pk]},
    )
    # Only the parked one is reset; a pending one may be in flight in a relay.
    assert set(OutboxEvent.objects.values_list("status", flat=True)) == {"pending"}
    first.refresh_from_db()
    assert first.created_at > second.created_at  # its age counts from the retry


@pytest.mark.parametrize(
    "found, before, kept",
    [
        ([(1, "a"), (2, "a"), (3, "b")], {"a": [1]}, [1, 2, 3]),
        ([(2, "a"), (3, "b")], {"a": [1]}, [3]),  # 1 is pending but not ours
        ([(1, "a"), (3, "a")], {"a": [1, 2]}, [1]),  # 2 waits between them
        ([(1, ""), (2, "")], {}, [1, 2]),  # no subject, no order constraint
    ],
)
def test_in_subject_order(found, before, kept):
    assert in_subject_order(found, before) == kept


# Rows as (subject, state); the claim must take exactly the rows marked "x".
CLAIMS = {
    "all due": ([("a", "due x"), ("a", "due x"), ("b", "due x")], 100),
    "an earlier retry blocks its subject": (
        [("a", "retry"), ("a", "due"), ("b", "due x")],
        100,
    ),
    "a row leased by another relay blocks what follows": (
        [("a", "due x"), ("a", "leased"), ("a", "due"), ("b", "due x")],
        100,
    ),
    "an expired lease is taken": ([("a", "expired x"), ("a", "due x")], 100),
    "a waiting subject does not use up the batch": (
        [("a", "retry"), ("a", "due"), ("a", "due"), ("b", "due x")],
        1,
    ),
    "parked and delivered rows do not block": (
        [("a", "parked"), ("a", "delivered"), ("a", "due x")],
        100,
    ),
    "no subject, no order": ([("", "retry"), ("", "due x"), ("", "leased")], 100),
    "the batch size cuts, earlier rows first": (
        [("a", "due x"), ("b", "due x"), ("a", "due")],
        2,
    ),
}


@pytest.mark.parametrize("way", ["_claim_in_one_statement", "_claim_portably"])
@pytest.mark.parametrize("rows", list(CLAIMS.values()), ids=list(CLAIMS))
def test_both_claims_take_the_same_rows(relay_settings, rows, way):
    now = timezone.now()
    minute = datetime.timedelta(minutes=1)
    states = {
        "due": {},
        "retry": {"next_attempt_at": now + minute},
        "leased": {"locked_by": "other", "locked_until": now + minute},
        "expired": {"locked_by": "other", "locked_until": now - minute},
        "parked": {"status": OutboxEvent.Status.PARKED},
        "delivered": {"status": OutboxEvent.Status.DELIVERED},
    }
    expected = []
    for n, (subject, state) in enumerate(rows[0]):
        row = OutboxEvent.objects.create(
            event_id=str(n),
            source="urn:test",
            type="t",
            subject=subject,
            event="{}",
            **{"created_at": now, "next_attempt_at": now, **states[state.split()[0]]},
        )
        if state.endswith(" x"):
            expected.append(row.pk)
    claimed = getattr(OutboxEvent.objects.all(), way)("mine", None, rows[1], 60.0)
    assert sorted(getattr(row, "pk", row) for row in claimed) == expected
    assert (
        list(OutboxEvent.objects.filter(locked_by="mine").values_list("pk", flat=True))
        == expected
    )


@pytest.mark.parametrize("use_tz", [True, False])
def test_claimed_rows_are_the_stored_rows(relay_settings, use_tz):
    # The one-statement claim builds its rows from RETURNING: every field must
    # come back as a query would load it (datetimes, on SQLite, from text), with
    # USE_TZ (aware, UTC) or without it (naive, in TIME_ZONE).
    for text in ("a", "b"):
        ask(text)
    relay_settings.USE_TZ = use_tz
    claimed = relay(relay_settings).claim()
    stored = list(OutboxEvent.objects.order_by("pk"))
    assert [row.pk for row in claimed] == [row.pk for row in stored]
    for mine, theirs in zip(claimed, stored, strict=True):
        for model_field in OutboxEvent._meta.concrete_fields:
            name = model_field.attname
            assert getattr(mine, name) == getattr(theirs, name), name
        for name in ("created_at", "next_attempt_at", "locked_until"):
            # Read with psycopg's own loader on PostgreSQL: the same tzinfo too.
            assert getattr(mine, name).tzinfo is getattr(theirs, name).tzinfo, name
        assert isinstance(mine.created_at, datetime.datetime)
        assert (mine.created_at.tzinfo is not None) is use_tz
        assert not mine._state.adding and mine._state.db == "default"


def test_retry_delay_grows_and_is_capped():
    options = {"BACKOFF": 1.0, "BACKOFF_MAX": 8.0, "MAX_AGE": 100.0}
    assert 0.5 <= retry_delay(1, None, options) <= 1.0
    assert 2.0 <= retry_delay(3, None, options) <= 4.0
    assert 4.0 <= retry_delay(30, None, options) <= 8.0
    assert retry_delay(1, 50.0, options) == 50.0
    assert retry_delay(1, 5000.0, options) == 100.0


@pytest.fixture
def batch_sink(relay_settings, monkeypatch):
    server = Sink(batches=True).start()
    monkeypatch.setenv("K_SINK", server.url)
    relay_settings.CLOUDEVENTS_HANDLER_OPTIONS = {
        "batch": True,
        "timeout": 2.0,
        "oidc_token_path": None,
    }
    yield server
    server.stop()


def test_batched_mode_sends_one_request_per_claim(relay_settings, batch_sink):
    questions = [ask(str(n)) for n in range(7)]
    question = questions[0]
    question.question_text = "edited"
    question.save()
    result = relay(relay_settings, BATCH_SIZE=5).drain()
    assert result.delivered == 8
    # 5 + 3; or, where the next claim is taken while the first batch is in
    # flight (PostgreSQL), 5 + 2 + 1: the edit of question 0 waits for its first.
    expected = {2, 3} if connection.vendor == "postgresql" else {2}
    assert batch_sink.requests in expected
    received = batch_sink.wait_for(8)
    assert all(r.problems == [] for r in received)
    assert (
        received[0]
        .headers["content-type"]
        .startswith("application/cloudevents-batch+json")
    )
    rows = list(OutboxEvent.objects.order_by("pk"))
    assert [r.attributes["id"] for r in received] == [row.event_id for row in rows]


@pytest.mark.parametrize("overrides", [False, True])
def test_a_claim_larger_than_batch_max_bytes_goes_in_several_requests(
    relay_settings, batch_sink, monkeypatch, overrides
):
    # With K_CE_OVERRIDES the events are decoded and encoded again; without,
    # the stored JSON goes as it is. Either way the limit holds.
    if overrides:
        monkeypatch.setenv("K_CE_OVERRIDES", '{"extensions": {"cluster": "prod"}}')
    events.parse_overrides.cache_clear()
    for n in range(6):
        ask(str(n))
    size = max(len(row.event) for row in OutboxEvent.objects.all()) + 40
    relay_settings.CLOUDEVENTS_HANDLER_OPTIONS = {
        **relay_settings.CLOUDEVENTS_HANDLER_OPTIONS,
        "batch_max_bytes": 2 * size,  # room for two events a request, not three
    }
    result = relay(relay_settings, BATCH_SIZE=6)._drain(None, None, overlap=False)
    assert result.delivered == 6
    assert batch_sink.requests == 3
    received = batch_sink.wait_for(6)
    rows = list(OutboxEvent.objects.order_by("pk"))
    assert [r.attributes["id"] for r in received] == [row.event_id for row in rows]
    assert all(r.problems == [] for r in received)
    assert all(int(r.headers["content-length"]) <= 2 * size for r in received)


def test_a_claim_larger_than_batch_max_events_goes_in_several_requests(
    relay_settings, batch_sink
):
    for n in range(5):
        ask(str(n))
    relay_settings.CLOUDEVENTS_HANDLER_OPTIONS = {
        **relay_settings.CLOUDEVENTS_HANDLER_OPTIONS,
        "batch_max_events": 2,  # a receiver's MAX_BATCH
    }
    result = relay(relay_settings, BATCH_SIZE=5)._drain(None, None, overlap=False)
    assert result.delivered == 5
    assert batch_sink.requests == 3
    received = batch_sink.wait_for(5)
    rows = list(OutboxEvent.objects.order_by("pk"))
    assert [r.attributes["id"] for r in received] == [row.event_id for row in rows]


def test_a_failed_request_of_a_split_batch_fails_it_alone(relay_settings, batch_sink):
    for n in range(6):
        ask(str(n))
    size = max(len(row.event) for row in OutboxEvent.objects.all()) + 40
    relay_settings.CLOUDEVENTS_HANDLER_OPTIONS = {
        **relay_settings.CLOUDEVENTS_HANDLER_OPTIONS,
        "batch_max_bytes": 2 * size,
    }
    batch_sink.faults.extend([Fault(), Fault(status=413)])
    result = relay(relay_settings, BATCH_SIZE=6).run_once()
    assert (result.delivered, result.failed) == (2, 2)
    rows = OutboxEvent.objects.order_by("pk").values_list("status", "attempts")
    # 413: the second request's events are refused for good; the third request
    # was never sent, so its events wait for the next claim, no attempt counted.
    assert (
        list(rows)
        == [("delivered", 1)] * 2 + [("parked", 1)] * 2 + [("pending", 0)] * 2
    )
    assert batch_sink.attempts == 2  # the third request was never made
    assert relay(relay_settings, BATCH_SIZE=6).run_once().delivered == 2


def test_a_batch_carries_the_stored_events_with_the_senders_overrides(
    relay_settings, batch_sink, monkeypatch
):
    ask("plain")
    relay(relay_settings).drain()
    monkeypatch.setenv("K_CE_OVERRIDES", '{"extensions": {"cluster": "prod"}}')
    events.parse_overrides.cache_clear()
    ask("overridden")
    relay(relay_settings).drain()

    plain, overridden = batch_sink.wait_for(2)
    stored = [json.loads(row.event) for row in OutboxEvent.objects.order_by("pk")]
    for received, document in zip((plain, overridden), stored, strict=True):
        assert received.problems == []
        data = document.pop("data")
        assert received.event.get_data() == data
        attributes = {
            name: events.canonical(value)
            for name, value in received.attributes.items()
            if name != "cluster"
        }
        assert attributes == document
    assert "cluster" not in plain.attributes
    assert overridden.attributes["cluster"] == "prod"


def test_a_failed_batch_backs_off_every_row(relay_settings, batch_sink):
    relay_settings.CLOUDEVENTS_OUTBOX = {"BACKGROUND": False, "BACKOFF": 30}
    batch_sink.faults.append(Fault(status=503))
    for n in range(3):
        ask(str(n))
    result = relay(relay_settings).run_once()
    assert (result.claimed, result.failed) == (3, 3)
    rows = OutboxEvent.objects.all()
    assert {(r.status, r.attempts) for r in rows} == {("pending", 1)}
    assert all(r.next_attempt_at > timezone.now() for r in rows)
    assert relay(relay_settings).run_once().claimed == 0  # no hot loop
