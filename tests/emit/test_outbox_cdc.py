"""Without a relay (``CLOUDEVENTS_OUTBOX["RELAY"] = False``): the outbox as a
Debezium outbox-router table, pruned after the retention whatever its status.

Debezium itself does not run here; what it reads is checked: each row's
``event_id``, ``subject`` and ``type`` columns, and its ``event`` column holding
the final CloudEvent (structured mode) with that id, subject and type.
"""

from __future__ import annotations

import datetime

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from django_cloudevents_bridge import checks
from django_cloudevents_bridge.bindings import jsonformat
from django_cloudevents_bridge.emit import outbox
from django_cloudevents_bridge.models import OutboxEvent
from tests.testapp.models import Question

pytestmark = pytest.mark.django_db(transaction=True)

NOW = datetime.datetime(2026, 11, 1, tzinfo=datetime.UTC)


@pytest.fixture
def cdc(settings):
    settings.CLOUDEVENTS_DELIVERY = "outbox"
    settings.CLOUDEVENTS_OUTBOX = {"RELAY": False}
    settings.CLOUDEVENTS_MODELS = {
        label: options
        for label, options in settings.CLOUDEVENTS_MODELS.items()
        if options.get("capture") != "trigger"
    }
    return settings


def test_each_row_is_what_the_outbox_router_reads(cdc):
    question = Question.objects.create(question_text="q", pub_date=NOW)
    row = OutboxEvent.objects.get()
    event = jsonformat.from_json(row.event)  # the payload column: the final event
    assert event.get_id() == row.event_id  # table.field.event.id
    assert event.get_subject() == row.subject == f"DCE:testapp.question/{question.pk}"
    assert event.get_type() == row.type == "django.orm.post_save"  # route.by.field
    assert event.get_source() == "/tests"
    assert event.get_data()["data"]["question_text"] == "q"
    assert checks.check_outbox() == []


def test_no_relay_runs_and_none_is_missed(cdc, monkeypatch):
    Question.objects.create(question_text="q", pub_date=NOW)
    monkeypatch.setenv("K_SINK", "http://127.0.0.1:9/")
    with pytest.raises(CommandError, match="RELAY'] is False"):
        call_command("cloudevents_relay", "--once")
    assert OutboxEvent.objects.get().status == "pending"
    OutboxEvent.objects.update(created_at=timezone.now() - datetime.timedelta(days=1))
    assert outbox.waiting(outbox.health("default")) is None  # W005 stays quiet


def test_purge_deletes_every_row_past_the_retention(cdc):
    for text in ("old", "parked", "new"):
        Question.objects.create(question_text=text, pub_date=NOW)
    old, parked, new = OutboxEvent.objects.order_by("pk")
    long_ago = timezone.now() - datetime.timedelta(days=8)
    OutboxEvent.objects.filter(pk__in=[old.pk, parked.pk]).update(created_at=long_ago)
    OutboxEvent.objects.filter(pk=parked.pk).update(status="parked")
    call_command("cloudevents_outbox", "purge")  # the retention: 7 days
    assert list(OutboxEvent.objects.values_list("pk", flat=True)) == [new.pk]
    call_command("cloudevents_outbox", "purge", "--days", "0")
    assert not OutboxEvent.objects.exists()


def test_what_needs_a_relay_is_refused_without_one(cdc):
    cdc.CLOUDEVENTS_OUTBOX = {"RELAY": "no"}
    [error] = checks.check_outbox()
    assert "RELAY must be True or False" in error.msg
    cdc.CLOUDEVENTS_OUTBOX = {"RELAY": False, "BACKGROUND": True}
    cdc.CLOUDEVENTS_DELIVERY = "on_commit"
    messages = [error.msg for error in checks.check_outbox()]
    assert {error.id for error in checks.check_outbox()} == {"cloudevents_bridge.E008"}
    assert any("BACKGROUND sends events: it needs RELAY True" in m for m in messages)
    assert any("needs CLOUDEVENTS_DELIVERY 'outbox'" in m for m in messages)


@pytest.mark.postgres
def test_trigger_capture_needs_the_relay(settings):
    settings.CLOUDEVENTS_OUTBOX = {"RELAY": False}
    settings.CLOUDEVENTS_DELIVERY = "outbox"
    [error] = checks.check_outbox()
    assert "the relay completes the rows of trigger capture (testapp.Captured)" in (
        error.msg
    )
