"""Trigger capture on PostgreSQL: each committed change is the signal path's event.

``testapp.Captured`` is captured by triggers (tests/settings.py, on PostgreSQL); its
table, made by the test database's CREATE TABLE, gets them from its CaptureTrigger
constraint. Events go through the real relay to a real HTTP sink. The migration
path (makemigrations + migrate in a project) is tested in test_capture_migrations.py.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import json

import psycopg
import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models.signals import post_delete, post_save
from psycopg.types.range import Range

from django_cloudevents_bridge.emit import capture, handlers, outbox, sources
from django_cloudevents_bridge.emit.relay import Relay
from django_cloudevents_bridge.models import OutboxEvent
from tests.testapp.models import (
    Article,
    Captured,
    CapturedParent,
    Question,
    Tag,
    every_value,
)

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

NOW = datetime.datetime(2026, 11, 1, tzinfo=datetime.UTC)


@pytest.fixture
def relayed(settings, http_sink):
    """Outbox delivery; ``relayed()`` drains the relay and returns what the sink got."""
    settings.CLOUDEVENTS_DELIVERY = "outbox"
    settings.CLOUDEVENTS_OUTBOX = {"BACKGROUND": False}

    def drain() -> list:
        """The Captured events the sink got in this drain, in order."""
        seen = len(http_sink.received)
        handler = handlers.get_handler(**settings.CLOUDEVENTS_HANDLER_OPTIONS)
        result = Relay(handler, options=outbox.conf.outbox()).drain()
        handler.close()
        assert not OutboxEvent.objects.filter(status="pending").exists()
        received = http_sink.wait_for(seen + result.delivered)[seen:]
        return [
            r.event
            for r in received
            if r.event.get_extension("djangomodel") == "captured"
        ]

    return drain


def full_row(**extra) -> Captured:
    """A row with every field set, saved by the ORM."""
    question = Question.objects.create(question_text="q", pub_date=NOW)
    article = Article.objects.create(title="a")
    tag = Tag.objects.create(name="t")
    values = every_value()
    values.update(
        decimal=decimal.Decimal("12345678.1"),  # stored as 12345678.1000
        time=datetime.time(4, 5, 6, 500000),
        duration=datetime.timedelta(days=-1, seconds=2, microseconds=3),
        binary=b"\x00\xffbytes" * 30,  # base64 longer than a 76-character line
    )
    return Captured.objects.create(
        **values,
        question=question,
        article=article,
        tag=tag,
        api_token="never-sent",
        notes="excluded",
        decimals=[decimal.Decimal("1.5"), None],
        integers=Range(1, 5, "(]"),
        moments=Range(NOW, None, "[)"),
        **extra,
    )


def signal_event(row: Captured, signal, **kwargs):
    """The event the signal path builds for ``row`` (as send_cloudevent would)."""
    return sources.from_signal(
        Captured, signal=signal, instance=row, using="default", **kwargs
    )


def test_the_table_has_the_three_triggers_and_no_signal_is_connected():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass "
            "AND NOT tgisinternal ORDER BY tgname",
            [Captured._meta.db_table],
        )
        names = [name for (name,) in cursor.fetchall()]
    base = capture.trigger_name("testapp.captured")
    assert names == [f"{base}_del", f"{base}_ins", f"{base}_upd"]
    assert not post_save.has_listeners(Captured)
    assert not post_delete.has_listeners(Captured)


def test_a_create_is_the_signal_paths_event_field_by_field(relayed):
    row = full_row()
    [sent] = relayed()
    row.refresh_from_db()
    expected = signal_event(row, post_save, created=True)
    assert sent.get_type() == expected.get_type() == "django.orm.post_save"
    assert sent.get_subject() == expected.get_subject()
    assert sent.get_subject() == f"DCE:testapp.captured/{row.pk}"
    assert sent.get_extension("djangoapp") == "testapp"
    assert sent.get_extension("djangomodel") == "captured"
    assert sent.get_source() == "/tests"  # the relay's CLOUDEVENTS_SOURCE
    assert sent.get_id() == OutboxEvent.objects.get(source="").event_id
    got, want = sent.get_data(), expected.get_data()
    assert set(got) == {"data", "signal_kwargs", "db_table"}
    assert got["db_table"] == want["db_table"] == "testapp_captured"
    for name, value in want["data"].items():
        assert got["data"][name] == value, name
    assert list(got["data"]) == list(want["data"])  # same fields, same order
    assert "api_token" not in got["data"] and "notes" not in got["data"]
    # The documented differences: no update_fields or raw.
    assert got["signal_kwargs"] == {
        "created": True,
        "update_fields": None,
        "raw": None,
        "using": "default",
    }
    assert want["signal_kwargs"]["created"] is True
    assert got["data"]["decimal"] == "12345678.1000"
    assert got["data"]["binary"] == base64.b64encode(b"\x00\xffbytes" * 30).decode()
    assert got["data"]["doubled"] == -10  # generated by the database


def test_secret_and_excluded_columns_never_reach_the_outbox_table(settings):
    settings.CLOUDEVENTS_DELIVERY = "outbox"
    full_row()
    row = OutboxEvent.objects.get(source="")
    assert "never-sent" not in row.event and "excluded" not in row.event
    stored = json.loads(row.event)
    assert "api_token" not in stored["data"] and "notes" not in stored["data"]
    assert row.source == "" and capture.is_captured(row)


def test_an_update_names_the_changed_fields(relayed):
    row = full_row()
    relayed()
    row.char = "changed"
    row.notes = "excluded too"
    row.save()
    [sent] = relayed()
    expected = signal_event(row, post_save, created=False)
    data = sent.get_data()
    assert data["data"] == expected.get_data()["data"]
    assert data["signal_kwargs"]["created"] is False
    # An excluded column changed too: not named.
    assert data["changed_fields"] == ["char"]
    assert data["previous_values"] == {"char": "ü"}


def test_a_delete_is_the_signal_paths_event(relayed):
    row = full_row()
    relayed()
    expected = signal_event(row, post_delete)
    pk = row.pk
    row.delete()
    [sent] = relayed()
    assert sent.get_type() == "django.orm.post_delete"
    assert sent.get_subject() == f"DCE:testapp.captured/{pk}"
    assert sent.get_data()["data"] == {**expected.get_data()["data"], "id": pk}
    assert sent.get_data()["signal_kwargs"] == {"using": "default"}


def test_bulk_operations_and_raw_sql_are_captured(relayed):
    rows = Captured.objects.bulk_create(Captured(integer=n) for n in range(5))
    created = relayed()
    assert sorted(e.get_data()["data"]["integer"] for e in created) == list(range(5))
    assert {e.get_data()["signal_kwargs"]["created"] for e in created} == {True}

    for row in rows:
        row.char = f"c{row.integer}"
    Captured.objects.bulk_update(rows, ["char"])
    assert len(relayed()) == 5

    assert Captured.objects.filter(integer__lt=2).update(small=1) == 2
    updated = relayed()
    assert [e.get_data()["changed_fields"] for e in updated] == [["small"]] * 2

    with connection.cursor() as cursor:
        cursor.execute("UPDATE testapp_captured SET big = 7 WHERE integer = 4")
    [raw] = relayed()
    assert raw.get_data()["data"]["big"] == 7

    Captured.objects.filter(integer__gte=3).delete()
    deleted = relayed()
    assert sorted(e.get_data()["data"]["integer"] for e in deleted) == [3, 4]
    assert {e.get_type() for e in deleted} == {"django.orm.post_delete"}


def test_orm_and_database_cascades_are_captured(relayed):
    parent = CapturedParent.objects.create()
    Captured.objects.create(parent=parent, integer=1)
    other = CapturedParent.objects.create()
    Captured.objects.create(parent=other, integer=2)
    relayed()
    parent.delete()  # Django's cascade: one DELETE ... WHERE parent_id IN (...)
    [first] = relayed()
    assert first.get_type() == "django.orm.post_delete"
    assert first.get_data()["data"]["integer"] == 1
    # The database's own cascade: an ON DELETE CASCADE foreign key, raw SQL.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT conname FROM pg_constraint WHERE conrelid = "
            "'testapp_captured'::regclass AND contype = 'f'"
        )
        [(name,)] = cursor.fetchall()
        cursor.execute(f'ALTER TABLE testapp_captured DROP CONSTRAINT "{name}"')
        cursor.execute(
            f'ALTER TABLE testapp_captured ADD CONSTRAINT "{name}" FOREIGN KEY '
            "(parent_id) REFERENCES testapp_capturedparent (id) ON DELETE CASCADE"
        )
        cursor.execute("DELETE FROM testapp_capturedparent WHERE id = %s", [other.pk])
    [second] = relayed()
    assert second.get_data()["data"]["integer"] == 2


def test_a_second_program_writing_with_psycopg_is_captured(relayed):
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params, autocommit=False) as other:
        other.execute(
            "INSERT INTO testapp_captured (char, text, slug, email, url, boolean, "
            "file, image, file_path, api_token, notes) VALUES "
            "('elsewhere', '', '', '', '', false, '', '', '', 'secret', '') "
        )
        other.commit()
    [sent] = relayed()
    assert sent.get_data()["data"]["char"] == "elsewhere"
    assert "api_token" not in sent.get_data()["data"]


def test_a_rolled_back_transaction_sends_nothing(relayed):
    with pytest.raises(RuntimeError), transaction.atomic():
        Captured.objects.create(integer=1)
        Captured.objects.bulk_create([Captured(integer=2), Captured(integer=3)])
        Captured.objects.update(small=3)
        raise RuntimeError("rolled back")
    assert not OutboxEvent.objects.exists()
    assert relayed() == []


def test_a_failing_trigger_fails_the_write_and_keeps_nothing(settings):
    settings.CLOUDEVENTS_DELIVERY = "outbox"
    with connection.cursor() as cursor:  # the outbox refuses every row
        cursor.execute(
            "ALTER TABLE django_cloudevents_bridge_outboxevent ADD CONSTRAINT "
            "refuse_all CHECK (false) NOT VALID"
        )
    try:
        with pytest.raises(IntegrityError, match="refuse_all"):
            Captured.objects.create(integer=1)
        with pytest.raises(DatabaseError), transaction.atomic():
            Captured.objects.bulk_create([Captured(integer=2)])
    finally:
        with connection.cursor() as cursor:
            cursor.execute(
                "ALTER TABLE django_cloudevents_bridge_outboxevent "
                "DROP CONSTRAINT refuse_all"
            )
    assert not Captured.objects.exists()
    assert not OutboxEvent.objects.exists()


def test_a_row_whose_model_is_gone_is_parked_with_the_reason(relayed):
    Captured.objects.create(integer=1)
    Captured.objects.create(integer=2)
    first = OutboxEvent.objects.order_by("pk").first()
    OutboxEvent.objects.filter(pk=first.pk).update(
        event=first.event.replace('"testapp.captured"', '"testapp.gone"')
    )
    [sent] = relayed()
    assert sent.get_data()["data"]["integer"] == 2
    first.refresh_from_db()
    assert first.status == "parked"
    assert "doesn't have a 'gone' model" in first.last_error


def test_the_database_check_names_a_disabled_or_missing_trigger():
    from django_cloudevents_bridge import checks

    assert checks.check_capture_triggers(databases=["default"]) == []
    base = capture.trigger_name("testapp.captured")
    [trigger] = Captured._meta.constraints
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'ALTER TABLE testapp_captured DISABLE TRIGGER "{base}_upd"')
            cursor.execute(f'DROP TRIGGER "{base}_del" ON testapp_captured')
        [warning] = checks.check_capture_triggers(databases=["default"])
        assert warning.id == "cloudevents_bridge.W009"
        assert f"{base}_upd is disabled" in warning.msg
        assert f"{base}_del is missing" in warning.msg
        assert checks.check_capture_triggers() == []  # no database asked: no query
    finally:  # as the test database was made, for the tests after this one
        with connection.schema_editor() as editor:
            editor.add_constraint(Captured, trigger)
    assert checks.check_capture_triggers(databases=["default"]) == []


def test_secret_looking_keys_inside_a_json_column_are_not_sent(relayed):
    Captured.objects.create(json={"n": 1, "nested": {"api_key": "k", "m": 2}})
    [sent] = relayed()
    assert sent.get_data()["data"]["json"] == {"n": 1, "nested": {"m": 2}}
