"""Bulk writes on the signal path (CapturingManager), on SQLite and PostgreSQL.

``testapp.Entry`` uses ``CapturingManager`` and is captured with signals: its
``bulk_create()``, ``bulk_update()`` and ``update()`` emit one ``post_save`` per
row, in the same transaction.
"""

from __future__ import annotations

import decimal

import pytest
from django.db import transaction
from django.db.models import F
from django.db.models.signals import post_init

from django_cloudevents_bridge.emit import changes
from django_cloudevents_bridge.models import OutboxEvent
from tests.testapp.models import Entry

pytestmark = pytest.mark.django_db(transaction=True)


def entries(count: int = 3) -> list[Entry]:
    return Entry.objects.bulk_create(
        Entry(title=f"e{n}", amount=decimal.Decimal(n), secret_key="k")
        for n in range(count)
    )


def test_bulk_create_emits_one_created_event_per_row(sent_events):
    made = entries()
    assert [e.get_type() for e in sent_events] == ["django.orm.post_save"] * 3
    assert [e.get_subject() for e in sent_events] == [
        f"DCE:testapp.entry/{row.pk}" for row in made
    ]
    first = sent_events[0].get_data()
    assert first["data"] == {"id": made[0].pk, "title": "e0", "amount": "0.00"}
    assert first["signal_kwargs"]["created"] is True


def test_bulk_update_and_update_emit_the_rows_as_stored(sent_events):
    made = entries()
    sent_events.clear()
    for row in made:
        row.title = row.title.upper()
    assert Entry.objects.bulk_update(made, ["title"]) == 3
    assert [e.get_data()["data"]["title"] for e in sent_events] == ["E0", "E1", "E2"]
    kwargs = sent_events[0].get_data()["signal_kwargs"]
    assert kwargs["created"] is False and kwargs["update_fields"] == ["title"]

    sent_events.clear()
    assert Entry.objects.filter(amount__gte=1).update(amount=F("amount") + 1) == 2
    assert [e.get_data()["data"]["amount"] for e in sent_events] == ["2.00", "3.00"]
    assert sent_events[0].get_data()["signal_kwargs"]["update_fields"] == ["amount"]
    assert Entry.objects.filter(title="nothing").update(amount=9) == 0
    assert len(sent_events) == 2


def test_queryset_delete_is_djangos_own_post_delete_per_row(sent_events):
    entries()
    sent_events.clear()
    Entry.objects.filter(amount__lt=2).delete()
    assert [e.get_type() for e in sent_events] == ["django.orm.post_delete"] * 2


def test_outbox_rows_are_written_with_the_rows_and_rolled_back_with_them(settings):
    settings.CLOUDEVENTS_DELIVERY = "outbox"
    settings.CLOUDEVENTS_OUTBOX = {"BACKGROUND": False}
    with transaction.atomic():
        entries()
        assert OutboxEvent.objects.count() == 3  # in the same transaction
    with pytest.raises(RuntimeError), transaction.atomic():
        Entry.objects.update(title="x")
        entries(2)
        raise RuntimeError("rolled back")
    assert OutboxEvent.objects.count() == 3
    assert set(Entry.objects.values_list("title", flat=True)) == {"e0", "e1", "e2"}


def test_a_model_not_captured_with_signals_gets_djangos_own(settings, sent_events):
    settings.CLOUDEVENTS_MODELS = {"testapp.Entry": {"signals": ["post_delete"]}}
    entries()
    Entry.objects.update(title="x")
    assert sent_events == []


@pytest.fixture
def tracked(settings):
    settings.CLOUDEVENTS_MODELS = {
        **settings.CLOUDEVENTS_MODELS,
        "testapp.Entry": {"changed_fields": True, "previous_values": True},
    }
    changes.connect_models()
    yield
    uid = f"{changes.LOADED}:testapp.Entry"
    assert post_init.disconnect(sender=Entry, dispatch_uid=uid)


def test_update_says_what_changed_against_the_row_before(tracked, sent_events):
    entries(2)
    sent_events.clear()
    Entry.objects.filter(title="e1").update(amount=5, title="e1")
    [event] = sent_events
    assert event.get_data()["changed_fields"] == ["amount"]
    assert event.get_data()["previous_values"] == {"amount": "1.00"}
