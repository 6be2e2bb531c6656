"""The background sender (``CLOUDEVENTS_OUTBOX["BACKGROUND"]``) is cheap.

One thread per process, not one per event; one database connection kept between
batches (opened again when the server drops it, never shared with a forked
child); rows written already claimed by it, so a batch costs one UPDATE. Real
databases, a real loopback sink.
"""

from __future__ import annotations

import datetime
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection, transaction
from django.db.backends.signals import connection_created
from django.utils import timezone

from django_cloudevents_bridge.emit import handlers, outbox
from django_cloudevents_bridge.emit.relay import Relay
from django_cloudevents_bridge.models import OutboxEvent
from tests.emit import test_relay_processes as processes
from tests.sink import Fault, Sink
from tests.testapp.models import Question

pytestmark = pytest.mark.django_db(transaction=True)

# Subprocesses on the test's database, and a sink they reach.
sink = processes.sink
shared_db = processes.shared_db
relays = processes.relays

NOW = datetime.datetime(2026, 11, 1, tzinfo=datetime.UTC)
SAVES = 12
WAIT = 30.0  # seconds for the sender to finish a batch: generous


@pytest.fixture
def sending(settings, http_sink):
    settings.CLOUDEVENTS_DELIVERY = "outbox"
    settings.CLOUDEVENTS_OUTBOX = {"BACKGROUND": True}
    return http_sink


def ask(text: str = "q") -> Question:
    question = Question.objects.create(question_text=text, pub_date=NOW)
    assert outbox.background.wait(WAIT)
    return question


@pytest.fixture
def started(monkeypatch) -> list[str]:
    """Names of the bridge's threads started from now on."""
    names: list[str] = []
    start = threading.Thread.start

    def counting(thread: threading.Thread) -> None:
        if thread.name.startswith("dce-"):
            names.append(thread.name)
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", counting)
    return names


@pytest.fixture
def sender_sql() -> Iterator[list[str]]:
    """The statements of the sender's connections opened from now on."""
    statements: list[str] = []

    def record(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        statements.append(sql)
        return execute(sql, params, many, context)

    def opened(sender: Any, connection: Any, **kwargs: Any) -> None:
        if threading.current_thread().name == "dce-outbox":
            connection.execute_wrappers.append(record)

    connection_created.connect(opened, weak=False)
    try:
        yield statements
    finally:
        connection_created.disconnect(opened)


def sessions() -> int:
    """Sessions on the test database (PostgreSQL), this one included."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        )
        return cursor.fetchone()[0]


def test_saves_spread_out_share_one_thread_and_one_connection(
    sending, started, sender_sql
):
    connection.ensure_connection()  # the test's own
    before = sessions() if connection.vendor == "postgresql" else 0
    for n in range(SAVES):
        ask(str(n))  # and the sender is done before the next one
    assert started == ["dce-outbox"]  # not a thread per event
    if connection.vendor == "postgresql":
        assert sessions() == before + 1  # the sender's, kept
    rows = list(OutboxEvent.objects.order_by("pk"))
    assert {row.status for row in rows} == {"delivered"}
    assert len(sending.wait_for(SAVES)) == SAVES
    # The first row was written before the sender had a connection: it claimed
    # it. Every later one was written claimed by the sender, with one token ...
    token = outbox.background.tokens["default"]
    assert [row.locked_by for row in rows[1:]] == [token] * (SAVES - 1)
    assert rows[0].locked_by != token
    # ... and cost the sender one statement: the UPDATE that records it.
    first = sender_sql.index(next(s for s in sender_sql if "'delivered'" in s))
    later = sender_sql[first + 1 :]
    assert len(later) == SAVES - 1
    assert all(s.startswith("UPDATE") and "'delivered'" in s for s in later)


@pytest.fixture
def batch_sink(settings, monkeypatch) -> Iterator[Sink]:
    server = Sink(batches=True).start()
    monkeypatch.setenv("K_SINK", server.url)
    settings.CLOUDEVENTS_DELIVERY = "outbox"
    settings.CLOUDEVENTS_OUTBOX = {"BACKGROUND": True}
    settings.CLOUDEVENTS_HANDLER = "http"
    settings.CLOUDEVENTS_HANDLER_OPTIONS = {
        "batch": True,
        "timeout": 10.0,
        "oidc_token_path": None,
    }
    yield server
    server.stop()


def test_a_batch_written_claimed_is_recorded_in_one_update(batch_sink, sender_sql):
    ask("warm-up")  # the sender connects and claims this one
    del sender_sql[:]
    with transaction.atomic():
        questions = [
            Question.objects.create(question_text=str(n), pub_date=NOW)
            for n in range(5)
        ]
    assert outbox.background.wait(WAIT)
    [update] = sender_sql  # no claim, no SELECT: one UPDATE for the five
    assert update.startswith("UPDATE") and "'delivered'" in update
    assert len(batch_sink.wait_for(6)) == 6
    assert batch_sink.requests == 2  # the warm-up's, and one for the five
    rows = OutboxEvent.objects.filter(
        subject__in=[f"DCE:testapp.question/{q.pk}" for q in questions]
    )
    assert {row.status for row in rows} == {"delivered"}


def test_a_later_event_of_an_object_waits_for_its_earlier_one(sending):
    ask("warm-up")
    sending.faults.append(Fault(status=503))
    question = ask("first")  # refused: waits for a retry
    question.question_text = "second"
    question.save()  # an earlier event of its object is pending: not claimed
    assert outbox.background.wait(WAIT)
    first, second = OutboxEvent.objects.filter(
        subject=f"DCE:testapp.question/{question.pk}"
    ).order_by("pk")
    assert (first.status, first.attempts) == ("pending", 1)
    assert (second.status, second.attempts, second.locked_until) == ("pending", 0, None)
    assert [r.problems for r in sending.received] == [[]]  # only the warm-up's


def test_a_sink_that_is_down_leaves_the_rows_to_the_relay_with_the_attempt_counted(
    sending, settings
):
    ask("warm-up")
    token = outbox.background.tokens["default"]
    sending.faults.extend([Fault(status=503), Fault(drop=True)])
    with transaction.atomic():
        ask_a = Question.objects.create(question_text="a", pub_date=NOW)
        ask_b = Question.objects.create(question_text="b", pub_date=NOW)
    assert outbox.background.wait(WAIT)
    rows = list(OutboxEvent.objects.exclude(status="delivered").order_by("pk"))
    assert [row.subject for row in rows] == [
        f"DCE:testapp.question/{ask_a.pk}",
        f"DCE:testapp.question/{ask_b.pk}",
    ]
    for row in rows:
        assert (row.status, row.attempts, row.locked_by) == ("pending", 1, token)
        assert row.locked_until is None and row.next_attempt_at > row.created_at
        assert row.last_error
    # The relay sends them once they are due.
    OutboxEvent.objects.update(next_attempt_at=timezone.now())
    handler = handlers.get_handler(**settings.CLOUDEVENTS_HANDLER_OPTIONS)
    assert Relay(handler).drain().delivered == 2
    assert {
        row.attempts for row in OutboxEvent.objects.filter(pk__in=[r.pk for r in rows])
    } == {2}


@pytest.mark.postgres
def test_a_connection_the_server_ended_is_opened_again(sending):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE=postgres)")
    ask("warm-up")
    old = outbox.background.wrappers["default"].connection.info.backend_pid
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [old])
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [old])
    # Written claimed by the ended session: free for any relay, and for the
    # sender, which claims it on its new connection.
    question = ask("after")
    row = OutboxEvent.objects.get(subject=f"DCE:testapp.question/{question.pk}")
    assert (row.status, row.attempts) == ("delivered", 1)
    new = outbox.background.wrappers["default"].connection.info.backend_pid
    assert new != old
    ask("next")  # written claimed again, by the new session
    assert (
        OutboxEvent.objects.latest("pk").locked_by
        == outbox.background.tokens["default"]
    )
    assert set(OutboxEvent.objects.values_list("status", flat=True)) == {"delivered"}
    assert len(sending.wait_for(3)) == 3


# A web process that saves (its sender connects), forks a child that saves too,
# and saves again once the child has exited: each prints what its sender used.
FORK = """
import json, os
from django.db import connection
from django.utils import timezone
from tests.testapp.models import Question
from django_cloudevents_bridge.emit import outbox

def save(text):
    Question.objects.create(question_text=text, pub_date=timezone.now())
    assert outbox.background.wait(30)
    sender = outbox.background.wrappers["default"].connection
    session = (
        sender.info.backend_pid if connection.vendor == "postgresql" else id(sender)
    )
    return {"token": outbox.background.tokens["default"], "session": session}

save("parent 1")
parent = save("parent 2")
connection.close()  # the request thread's, as a server closes it before forking
child = os.fork()
if child == 0:
    save("child 1")
    print(json.dumps({"child": save("child 2")}), flush=True)
    raise SystemExit(0)  # an interpreter exit: atexit, objects freed
assert os.waitpid(child, 0)[1] == 0
print(json.dumps({"parent": parent, "after": save("parent 3")}), flush=True)
"""


def test_a_forked_child_has_a_sender_of_its_own(sink, shared_db, relays):
    shared_db.publish()
    web = relays.start("-c", FORK, command="shell", BACKGROUND=True)
    assert web.wait(60) == 0, web.output()[1]
    found: dict[str, Any] = {}
    for line in web.output()[0].splitlines():
        if line.startswith("{"):
            found.update(json.loads(line))
    parent, child, after = found["parent"], found["child"], found["after"]
    assert child["token"] != parent["token"]
    # The parent's sender kept its connection (the child neither used nor
    # ended it) and its token.
    assert after == parent
    if connection.vendor == "postgresql":
        assert child["session"] != parent["session"]
    shared_db.refresh()
    rows = list(OutboxEvent.objects.order_by("pk"))
    assert {row.status for row in rows} == {"delivered"}
    assert sink.counts() == {row.event_id: 1 for row in rows}
    # parent 1 (claimed by the sender), parent 2, child 1 (claimed by the
    # child's sender), child 2, parent 3: written claimed, each by its own.
    tokens = [row.locked_by for row in rows]
    mine, its = parent["token"], child["token"]
    assert [tokens[1], tokens[3], tokens[4]] == [mine, its, mine]
    assert not {tokens[0], tokens[2]} & {mine, its}


def test_an_idle_sender_gives_its_connection_back(sending, monkeypatch):
    from django_cloudevents_bridge.emit import background

    monkeypatch.setattr(background, "IDLE", 0.05)
    ask("first")
    token = outbox.background.tokens["default"]
    assert outbox.background.wrappers["default"].connection is not None
    deadline = time.monotonic() + WAIT
    while outbox.background.tokens and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not outbox.background.tokens  # idle: closed, rows written unclaimed
    ask("second")  # connects again
    rows = list(OutboxEvent.objects.order_by("pk"))
    assert [row.status for row in rows] == ["delivered", "delivered"]
    if connection.vendor == "postgresql":  # a new session: a new tag
        assert rows[1].locked_by != token


def test_an_exiting_process_gives_back_the_rows_written_claimed(
    sink, shared_db, relays
):
    shared_db.publish()
    sink.hold_after(1)  # the second save's event never gets an answer
    code = (
        f"{processes.SAVE_AND_EXIT}; from django_cloudevents_bridge.emit import "
        f"outbox; assert outbox.background.wait(30); {processes.SAVE_AND_EXIT}"
    )
    web = relays.start("-c", code, command="shell", BACKGROUND=True, LEASE=3600)
    assert web.wait(60) == 0  # after the exit grace, not the read timeout
    assert "the relay will send them" in web.output()[1]
    sink.release()
    shared_db.refresh()
    first, second = OutboxEvent.objects.order_by("pk")
    assert first.status == "delivered"
    # Written claimed by the sender, given back at exit: free for the relay now.
    assert (second.status, second.attempts, second.locked_until) == ("pending", 0, None)
    assert second.locked_by != first.locked_by
