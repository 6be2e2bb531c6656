"""A crashed relay's claims, and a subject that keeps failing, hold nothing back.

Real ``cloudevents_relay`` processes (``tests.relay_proc``) are killed mid-send
with a lease of an hour: another relay must deliver their rows long before that
lease ends (PostgreSQL: the dead relay's database session is gone; SQLite: the
restarted relay gives back its host's dead claims). And a subject whose first
event a real loopback sink refuses must not stop the other subjects.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_cloudevents_bridge.emit import handlers
from django_cloudevents_bridge.emit._claimant import nonce as _nonce
from django_cloudevents_bridge.emit.relay import Relay
from django_cloudevents_bridge.models import OutboxEvent
from tests.emit import test_relay_processes as processes
from tests.emit.test_relay_processes import (
    BATCH,
    FAST,
    SAVE_AND_EXIT,
    by_subject,
    claimed_now,
    commit_events,
    first_arrivals,
)
from tests.relay_proc import CountingSink

pytestmark = pytest.mark.django_db(transaction=True)

# The relay-process fixtures, shared with that module.
outbox_settings = processes.outbox_settings
sink = processes.sink
shared_db = processes.shared_db
relays = processes.relays

HOUR = 3600.0  # the lease in these tests: delivery must not wait for it
WAIT = 60.0  # generous, and far below the lease


def test_a_crashed_relays_claim_is_taken_over_long_before_its_lease_ends(
    outbox_settings, sink, shared_db, relays
):
    rows = commit_events(300, subjects=20)
    shared_db.publish()
    sink.hold_after(0)  # every request waits: the relay dies mid-send
    first = relays.start(**FAST, LEASE=HOUR)
    relays.until(lambda: sink.held >= 1)
    first.send(signal.SIGKILL)
    assert first.wait() == -signal.SIGKILL

    shared_db.refresh()
    leased = claimed_now()
    assert leased  # under a lease of an hour
    # It claimed what it could send soon (a batch, and the next one while that
    # one was out), not the backlog.
    assert len(leased) <= 2 * BATCH
    sink.release()  # the requests in flight at the kill arrive now
    relays.until(lambda: sink.held == 0)

    second = relays.start(**FAST, LEASE=HOUR)
    relays.until(lambda: sink.distinct() == len(rows), timeout=WAIT)
    second.send(signal.SIGTERM)
    assert second.wait() == 0
    shared_db.refresh()
    final = list(OutboxEvent.objects.order_by("pk"))
    assert {row.status for row in final} == {"delivered"}
    taken_over = [row for row in final if row.event_id in leased]
    assert all(row.locked_by.startswith(f"{second.name}:") for row in taken_over)
    assert first_arrivals(sink, rows) == by_subject(rows)


def test_a_killed_web_processs_background_send_is_taken_over(sink, shared_db, relays):
    # A web worker's background sender claimed its event and was SIGKILLed
    # while the sink held the request.
    shared_db.publish()
    sink.hold_after(0)
    code = f"{SAVE_AND_EXIT}; import time; time.sleep(600)"
    web = relays.start("-c", code, command="shell", BACKGROUND=True, LEASE=HOUR)
    relays.until(lambda: sink.held >= 1)
    web.send(signal.SIGKILL)
    assert web.wait() == -signal.SIGKILL
    sink.release()
    relays.until(lambda: sink.held == 0)
    shared_db.refresh()
    [row] = OutboxEvent.objects.all()
    assert row.status == "pending" and row.locked_until > timezone.now()

    relay = relays.start(**FAST, LEASE=HOUR)
    relays.until(lambda: len(sink.ids()) == 2, timeout=WAIT)  # sent again
    relay.send(signal.SIGTERM)
    assert relay.wait() == 0
    shared_db.refresh()
    assert OutboxEvent.objects.get().status == "delivered"
    assert sink.ids() == [row.event_id, row.event_id]


def test_rows_a_killed_web_process_wrote_claimed_are_taken_over_at_once(
    sink, shared_db, relays
):
    # Its sender is connected (the first save), so the next rows are written
    # claimed by it: one is being sent (the sink holds it), one waits behind it.
    shared_db.publish()
    sink.hold_after(1)
    code = (
        f"{SAVE_AND_EXIT}; from django_cloudevents_bridge.emit import outbox; "
        "assert outbox.background.wait(30); "
        "print(outbox.background.tokens['default'], flush=True); "
        "from django.db import transaction\n"
        "with transaction.atomic():\n"
        "    for text in ('held', 'behind'):\n"
        "        Question.objects.create(question_text=text, pub_date=timezone.now())\n"
        "import time; time.sleep(600)"
    )
    web = relays.start("-c", code, command="shell", BACKGROUND=True, LEASE=HOUR)
    relays.until(lambda: sink.held >= 1)
    web.send(signal.SIGKILL)
    assert web.wait() == -signal.SIGKILL
    token = web.output()[0].split()[-1]
    sink.release()
    relays.until(lambda: sink.held == 0)
    shared_db.refresh()
    first, *claimed = OutboxEvent.objects.order_by("pk")
    assert first.status == "delivered"
    assert [row.locked_by for row in claimed] == [token, token]
    assert all(row.status == "pending" for row in claimed)
    assert all(row.locked_until > timezone.now() for row in claimed)  # an hour

    before = sink.counts()  # what was in flight at the kill arrived by now

    def sent_again() -> bool:
        counts = sink.counts()
        return all(counts[row.event_id] > before[row.event_id] for row in claimed)

    relay = relays.start(**FAST, LEASE=HOUR)
    relays.until(sent_again, timeout=WAIT)
    relay.send(signal.SIGTERM)
    assert relay.wait() == 0
    shared_db.refresh()
    assert set(OutboxEvent.objects.values_list("status", flat=True)) == {"delivered"}


def lease(token: str) -> OutboxEvent:
    now = timezone.now()
    return OutboxEvent.objects.create(
        event_id=token,
        source="urn:test",
        type="t",
        event="{}",
        created_at=now,
        next_attempt_at=now,
        locked_by=token,
        locked_until=now + datetime.timedelta(seconds=HOUR),
    )


def test_a_restarted_relay_gives_back_its_hosts_dead_claims(settings):
    settings.CLOUDEVENTS_HANDLER = "locmem"
    host = socket.gethostname()
    here = f"{host}:{os.getpid()}"
    claims = {
        # This pid, from an earlier start (a container's pid 1, restarted).
        f"{here}:00000000:aaaaaaaaaaaa": "given back",
        f"{here}:{_nonce()}:bbbbbbbbbbbb": "kept",  # this very process
        f"{host}:{os.getppid()}:11111111:cccccccccccc": "kept",  # alive
        f"{host}:{2**22 + 1}:11111111:dddddddddddd": "given back",  # no such pid
        f"elsewhere:{os.getpid()}:11111111:eeeeeeeeeeee": "kept",  # another host
        "custom-name:ffffffffffff": "kept",
    }
    for token in claims:
        lease(token)
    relay = Relay(handlers.get_handler())
    if connection.vendor == "postgresql":
        # Claims tied to a session are free once it ends: nothing to give back.
        assert relay.recover() == 0
        return
    assert relay.recover() == 2
    free = dict(OutboxEvent.objects.values_list("locked_by", "locked_until"))
    assert {
        token: "kept" if free[token] else "given back" for token in claims
    } == claims


def test_a_long_host_name_is_shortened_never_the_pid(settings, monkeypatch):
    # Kubernetes pod names run to 63 characters; the relay name's limit is 60.
    settings.CLOUDEVENTS_HANDLER = "locmem"
    long_host = "orders-relay-7d9f8b6c4d-" + "x" * 29 + "-abcde"  # 58 characters
    monkeypatch.setattr(socket, "gethostname", lambda: long_host)
    relay = Relay(handlers.get_handler())
    assert relay.name.endswith(f":{os.getpid()}")
    assert len(relay.name) <= 60
    prefix = relay.name.rpartition(":")[0]
    other_pod = long_host[:-5] + "zzzzz"  # the same Deployment's other pod
    monkeypatch.setattr(socket, "gethostname", lambda: other_pod)
    assert not Relay(handlers.get_handler()).name.startswith(f"{prefix}:")
    monkeypatch.setattr(socket, "gethostname", lambda: long_host)

    lease(f"{relay.name}:{_nonce()}:aaaaaaaaaaaa")  # this live process's claim
    lease(f"{prefix}:{os.getppid()}:11111111:bbbbbbbbbbbb")  # a live process
    lease(f"{prefix}:{2**22 + 1}:11111111:cccccccccccc")  # no such pid
    expected = 0 if connection.vendor == "postgresql" else 1
    assert relay.recover() == expected
    free = dict(OutboxEvent.objects.values_list("locked_by", "locked_until"))
    assert [token for token, until in free.items() if until is None] == (
        [f"{prefix}:{2**22 + 1}:11111111:cccccccccccc"] if expected else []
    )


class RefusingSink(CountingSink):
    """Answers 503 to every event of one subject (binary mode: ``ce-subject``)."""

    def __init__(self, refused: str) -> None:
        self.refused = refused
        self.refusals = 0
        super().__init__()

    def _handler_class(self) -> Any:
        sink = self
        base = super()._handler_class()

        class Handler(base):  # type: ignore[misc, valid-type]
            def do_POST(self) -> None:
                if self.headers.get("ce-subject") != sink.refused:
                    return super().do_POST()
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with sink._lock:
                    sink.refusals += 1
                self._answer(503, {}, b"")
                return None

        return Handler


@pytest.fixture
def refusing_sink(settings, monkeypatch) -> Iterator[RefusingSink]:
    server = RefusingSink("busy")
    server.start()
    monkeypatch.setenv("K_SINK", server.url)
    monkeypatch.delenv("K_CE_OVERRIDES", raising=False)
    settings.CLOUDEVENTS_HANDLER = "http"
    settings.CLOUDEVENTS_HANDLER_OPTIONS = {
        "timeout": (5.0, 30.0),
        "oidc_token_path": None,
    }
    try:
        yield server
    finally:
        server.stop()


def queue(subject: str, count: int) -> list[int]:
    now = timezone.now()
    return [
        OutboxEvent.objects.create(
            event_id=f"{subject}-{n}",
            source="urn:test",
            type="t",
            subject=subject,
            event=json.dumps(
                {
                    "specversion": "1.0",
                    "id": f"{subject}-{n}",
                    "source": "urn:test",
                    "type": "t",
                    "subject": subject,
                }
            ),
            created_at=now,
            next_attempt_at=now,
        ).pk
        for n in range(count)
    ]


def test_a_refused_subject_does_not_hold_back_the_others(settings, refusing_sink):
    # 25 events of one subject come first, more than a batch, and its first is
    # refused: the claims must pass over that subject, not stop at it.
    busy = queue("busy", 25)
    others = {f"s{n}": queue(f"s{n}", 2) for n in range(20)}
    options = {
        "BATCH_SIZE": 10,
        "CONCURRENCY": 4,
        "LEASE": HOUR,
        "MAX_ATTEMPTS": 100,
        "MAX_AGE": HOUR,
        "BACKOFF": HOUR,  # the refused event waits for its retry ...
        "BACKOFF_MAX": HOUR,
    }
    handler = handlers.get_handler(**settings.CLOUDEVENTS_HANDLER_OPTIONS)
    relay = Relay(handler, options=options)
    try:
        for _ in range(3):
            relay.drain()
            # ... which comes now: each drain tries it again.
            OutboxEvent.objects.filter(pk=busy[0]).update(
                next_attempt_at=timezone.now()
            )
    finally:
        relay.close()
    rows = {row.pk: row for row in OutboxEvent.objects.all()}
    assert all(rows[pk].status == "delivered" for pks in others.values() for pk in pks)
    assert first_arrivals(refusing_sink, list(rows.values())) == others
    # The refused subject kept failing, and nothing of it overtook its first.
    assert refusing_sink.refusals == 3
    assert (rows[busy[0]].status, rows[busy[0]].attempts) == ("pending", 3)
    assert {(rows[pk].status, rows[pk].attempts) for pk in busy[1:]} == {("pending", 0)}


@pytest.mark.postgres
def test_a_lease_tied_to_an_ended_session_is_free_at_once(settings):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE=postgres): session locks")
    live = OutboxEvent.objects.tie("mine")  # this session holds its lock
    for token in (live, "gone@0123456789ab", "untied"):
        lease(token)
    claimed = OutboxEvent.objects.claim("next", limit=10, lease=60.0)
    assert [row.event_id for row in claimed] == ["gone@0123456789ab"]


@pytest.mark.postgres
def test_a_claim_holds_its_lock_when_a_pooler_changed_the_server_session(settings):
    # A transaction-pooling PgBouncer not marked DISABLE_SERVER_SIDE_CURSORS:
    # the server session that took this client's lock is gone (the pooler
    # retired it), and the next claim runs in one that never took it.
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE=postgres): session locks")
    OutboxEvent.objects.tie("first")  # this client's tag, locked once
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_unlock_all()")  # another server session
    queue("s", 3)
    token = OutboxEvent.objects.tie("first")
    with CaptureQueriesContext(connection) as queries:
        claimed = OutboxEvent.objects.claim(token, limit=10, lease=HOUR)
    assert len(claimed) == 3
    assert len(queries) == 1  # the lock costs no round trip of its own

    def other_relay() -> None:
        try:
            taken.extend(
                OutboxEvent.objects.claim(
                    OutboxEvent.objects.tie("second"), limit=10, lease=60.0
                )
            )
        finally:
            connections.close_all()

    taken: list[OutboxEvent] = []
    thread = threading.Thread(target=other_relay)
    thread.start()
    thread.join()
    assert taken == []  # the live relay's claim is not taken over


@pytest.mark.postgres
def test_behind_a_transaction_pooler_claims_are_not_tied(settings, monkeypatch):
    # Django's docs have a transaction-pooling PgBouncer marked so: a session
    # lock would stay on a server connection others use. The lease it is.
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE=postgres): session locks")
    assert OutboxEvent.objects.tie("mine").startswith("mine@")
    monkeypatch.setitem(connection.settings_dict, "DISABLE_SERVER_SIDE_CURSORS", True)
    assert OutboxEvent.objects.tie("mine") == "mine"
