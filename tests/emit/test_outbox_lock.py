"""``save()`` waits a bounded time for a lock on the outbox table (PostgreSQL).

A second, real connection holds ``LOCK TABLE`` on the outbox table; the bound
(``CLOUDEVENTS_OUTBOX["LOCK_TIMEOUT"]``) travels with the INSERT itself.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterator

import psycopg
import pytest
from django.db import DatabaseError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_cloudevents_bridge.emit import outbox
from django_cloudevents_bridge.models import OutboxEvent
from tests.testapp.models import Question

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]

HOLD = 120.0  # seconds the other connection holds its lock at most


@pytest.fixture(autouse=True)
def postgres_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE=postgres)")


@pytest.fixture
def bounded(settings, sent_events):
    settings.CLOUDEVENTS_DELIVERY = "outbox"
    settings.CLOUDEVENTS_OUTBOX = {"BACKGROUND": True, "LOCK_TIMEOUT": 0.2}
    return sent_events


def other_connection() -> psycopg.Connection:
    db = connection.settings_dict
    return psycopg.connect(
        host=db["HOST"],
        port=db["PORT"],
        user=db["USER"],
        password=db["PASSWORD"],
        dbname=db["NAME"],
    )


@pytest.fixture
def table_locked() -> Iterator[threading.Event]:
    """Another session holds LOCK TABLE on the outbox until the test ends (or
    HOLD seconds pass: then the returned event is set)."""
    locked, done, released = threading.Event(), threading.Event(), threading.Event()

    def hold() -> None:
        with other_connection() as other:
            other.execute(f'LOCK TABLE "{OutboxEvent._meta.db_table}"')
            locked.set()
            done.wait(HOLD)
            released.set()
            other.rollback()

    thread = threading.Thread(target=hold)
    thread.start()
    assert locked.wait(30)
    try:
        yield released
    finally:
        done.set()
        thread.join()


def ask() -> Question:
    return Question.objects.create(question_text="q", pub_date="2026-11-01T00:00Z")


def test_save_in_autocommit_does_not_wait_for_the_lock(bounded, table_locked):
    ask()  # returned while the lock is still held
    assert not table_locked.is_set()
    # A failed outbox write: the event is sent once, from the background thread.
    assert outbox.background.wait(10)
    assert [event.get_type() for event in bounded] == ["django.orm.post_save"]
    assert Question.objects.count() == 1
    assert not table_locked.is_set()


def test_save_in_atomic_raises_once_the_bound_is_hit(bounded, table_locked):
    with pytest.raises(DatabaseError, match="lock timeout"), transaction.atomic():
        ask()
    assert not table_locked.is_set()
    assert Question.objects.count() == 0
    assert bounded == []


@pytest.mark.parametrize(
    "seconds", [1e7, float("inf"), float("nan"), -1, "5"], ids=repr
)
def test_a_lock_timeout_out_of_range_never_breaks_save(settings, bounded, seconds):
    # The system check refuses these (E008); save() must work all the same:
    # PostgreSQL refuses a lock_timeout above INT_MAX ms, round() inf and nan.
    settings.CLOUDEVENTS_OUTBOX = {"BACKGROUND": False, "LOCK_TIMEOUT": seconds}
    with transaction.atomic():
        ask()
    ask()  # autocommit
    assert OutboxEvent.objects.count() == 2


@pytest.mark.parametrize("session", ["0", "7s", "50ms"])
def test_the_bound_ends_with_the_insert(bounded, session):
    with connection.cursor() as cursor:
        cursor.execute(f"SET lock_timeout = '{session}'")
        ask()  # autocommit
        cursor.execute("SHOW lock_timeout")
        assert cursor.fetchone()[0] == session
        with transaction.atomic():
            cursor.execute("SET LOCAL lock_timeout = '3s'")
            ask()
            cursor.execute("SHOW lock_timeout")
            assert cursor.fetchone()[0] == "3s"  # the transaction's own value
        cursor.execute("SHOW lock_timeout")
        assert cursor.fetchone()[0] == session
        cursor.execute("RESET lock_timeout")
    assert OutboxEvent.objects.count() == 2


@pytest.fixture
def server_side_binding() -> Iterator[None]:
    options = connection.settings_dict["OPTIONS"]
    connection.close()
    options["server_side_binding"] = True
    try:
        yield
    finally:
        del options["server_side_binding"]
        connection.close()


def test_server_side_binding_writes_without_a_bound(bounded, server_side_binding):
    # Prepared statements take one statement: the INSERT goes alone, unbounded.
    with connection.cursor() as cursor:
        assert type(cursor.cursor).__name__ == "ServerBindingCursor"
        assert outbox._lock_bound(connection, cursor) is None
    ask()
    assert OutboxEvent.objects.count() == 1


def test_the_inserts_own_result_puts_the_value_back():
    # psycopg2 reads the string's last result, psycopg 3 its second: the
    # INSERT's row, with the session's value put back in the same statement.
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    sql = outbox._bounded(outbox._insert_sql("default", True), 200, restore=True)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL lock_timeout = '7s'")
        cursor.execute(sql, ["id", "urn:s", "t", "", "{}", now, now])
        assert cursor.fetchone() == ("7s", "200ms")  # kept, then the bound
        assert cursor.nextset()
        [(pk, restored)] = cursor.fetchall()
        assert restored == "7s"
        assert not cursor.nextset()
        cursor.execute("SHOW lock_timeout")
        assert cursor.fetchone()[0] == "7s"
    assert OutboxEvent.objects.get().pk == pk


# -- the function of migration 0010 carries the bound --------------------------


def test_the_row_is_written_through_the_function(bounded):
    with CaptureQueriesContext(connection) as queries:
        ask()
    [write] = [q["sql"] for q in queries if "SELECT dce_outbox_write(" in q["sql"]]
    assert "'200ms'" in write  # LOCK_TIMEOUT, in milliseconds
    assert OutboxEvent.objects.count() == 1


@pytest.fixture
def no_writer() -> Iterator[None]:
    """Migration 0010 not applied yet: the function is missing."""
    writer = importlib.import_module(
        "django_cloudevents_bridge.migrations.0010_outbox_writer"
    )
    with connection.cursor() as cursor:
        cursor.execute(writer.DROP)
    outbox._writers.clear()
    outbox._writers_checked.clear()
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(writer.CREATE)
        outbox._writers.clear()
        outbox._writers_checked.clear()


@pytest.mark.parametrize(
    "setup",
    [
        # One statement, so prepared statements take it: bounded there too.
        "server_side_binding",
        "no_writer",  # the INSERT carries the bound in its statement string
    ],
)
def test_the_bound_holds_with_either_statement(request, bounded, setup):
    request.getfixturevalue(setup)
    released = request.getfixturevalue("table_locked")
    with pytest.raises(DatabaseError, match="lock timeout"), transaction.atomic():
        ask()
    assert not released.is_set()
    assert Question.objects.count() == 0


def test_without_the_function_rows_are_written_and_it_is_looked_for_later(
    bounded, no_writer
):
    with CaptureQueriesContext(connection) as queries:
        with transaction.atomic():
            ask()
        ask()
    assert not any("SELECT dce_outbox_write(" in q["sql"] for q in queries)
    # Looked for once, not on every save().
    assert sum("to_regprocedure" in q["sql"] for q in queries) == 1
    assert OutboxEvent.objects.count() == 2
