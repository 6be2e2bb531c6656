"""emit/wakeup.py: the relay's LISTEN connection, woken by the outbox INSERT.

On PostgreSQL a trigger (migration 0004) notifies with every INSERT into the
outbox; a notification is delivered at commit. The waits below are long (seconds
to a minute) where something must arrive, and the test fails, not waits, when it
does not; a short wait is used only where nothing can arrive by construction (an
open transaction, a consumed notification).
"""

from __future__ import annotations

import datetime
import importlib
import threading
import time
from collections.abc import Iterator

import pytest
from django.db import connection, transaction

from django_cloudevents_bridge.emit import wakeup
from django_cloudevents_bridge.emit.wakeup import Wakeup
from tests.testapp.models import Question

pytestmark = pytest.mark.django_db(transaction=True)

NOW = datetime.datetime(2026, 11, 1, tzinfo=datetime.UTC)
ARRIVES = 60.0  # seconds: what must arrive does long before this
migration = importlib.import_module(
    "django_cloudevents_bridge.migrations.0004_relay_heartbeat"
)


@pytest.fixture
def outbox_settings(settings):
    settings.CLOUDEVENTS_DELIVERY = "outbox"
    return settings


@pytest.fixture
def listener() -> Iterator[Wakeup]:
    if connection.vendor != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's (DATABASE=postgres)")
    waker = Wakeup(connection.alias, threading.Event(), retry=0.0)
    assert waker.listening
    try:
        yield waker
    finally:
        waker.close()


def ask() -> Question:
    return Question.objects.create(question_text="?", pub_date=NOW)


def trigger_exists() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_trigger WHERE tgname = 'dce_outbox_notify'"
        )
        return bool(cursor.fetchone()[0])


@pytest.mark.postgres
def test_an_outbox_insert_wakes_the_listener(outbox_settings, listener):
    ask()  # autocommit: committed, so notified
    assert listener.wait(ARRIVES) is True
    assert listener.wait(0.05) is False  # consumed: the next wait polls


@pytest.mark.postgres
def test_the_notification_comes_with_the_commit(outbox_settings, listener):
    with transaction.atomic():
        for _ in range(20):
            ask()
        assert listener.wait(0.05) is False  # not committed: nothing sent yet
    assert listener.wait(ARRIVES) is True
    # PostgreSQL folds a transaction's identical notifications into one.
    assert listener.wait(0.05) is False


@pytest.mark.postgres
def test_a_rolled_back_insert_wakes_no_one(outbox_settings, listener):
    with pytest.raises(RuntimeError), transaction.atomic():
        ask()
        raise RuntimeError("roll back")
    ask()
    assert listener.wait(ARRIVES) is True
    assert listener.wait(0.05) is False  # one notification: the committed row's


@pytest.mark.postgres
def test_stop_ends_a_wait(listener):
    threading.Timer(0.1, listener.stop.set).start()
    started = time.monotonic()
    assert listener.wait(ARRIVES) is False
    assert time.monotonic() - started < ARRIVES / 2  # stopped, not timed out


@pytest.mark.postgres
def test_a_lost_connection_falls_back_to_polling_then_listens_again(
    outbox_settings, listener, caplog
):
    listener.retry = 3600.0  # no reconnection during this wait
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(%s)", [listener.connection.info.backend_pid]
        )
    assert listener.wait(0.5) is False  # lost: it polled out the interval
    assert not listener.listening
    assert "LISTEN connection lost" in caplog.text
    # Once the retry delay is over the next wait reconnects, and returns at
    # once: something may have been written while nobody listened.
    listener._next_try = 0.0
    assert listener.wait(ARRIVES) is True
    assert listener.listening
    ask()
    assert listener.wait(ARRIVES) is True


@pytest.mark.postgres
def test_an_unreachable_database_polls_and_says_so(monkeypatch, caplog):
    if connection.vendor != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's (DATABASE=postgres)")
    monkeypatch.setitem(connection.settings_dict, "PORT", "1")  # nothing there
    waker = Wakeup(connection.alias, threading.Event(), retry=3600.0)
    assert not waker.listening
    assert "cannot LISTEN" in caplog.text
    assert waker.wait(0.01) is False  # polls; no new attempt for an hour


@pytest.mark.sqlite_only  # the polling fallback of the other databases
def test_other_databases_poll(outbox_settings):
    waker = Wakeup(connection.alias, threading.Event())
    assert not waker.supported and not waker.listening
    ask()
    assert waker.wait(0.01) is False  # nothing to listen to: the interval
    waker.close()


@pytest.mark.postgres
def test_the_migration_creates_and_drops_the_trigger(outbox_settings, listener):
    assert trigger_exists()
    with connection.schema_editor() as editor:
        migration._on_postgresql(migration.DROP)(None, editor)
    try:
        assert not trigger_exists()
        ask()
        assert listener.wait(0.2) is False  # no trigger: no notification
    finally:
        with connection.schema_editor() as editor:
            migration._on_postgresql(migration.CREATE)(None, editor)
    assert trigger_exists()
    assert wakeup.CHANNEL == migration.CHANNEL
