"""The package's top-level names (DESIGN.md: every public name is importable there)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from django.db import transaction

import django_cloudevents_bridge as bridge
from django_cloudevents_bridge import events

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", bridge.__all__)
def test_every_name_in_all_resolves(name: str) -> None:
    assert getattr(bridge, name) is not None


def test_the_names_the_docs_promise_are_exported() -> None:
    promised = {
        "send_cloudevent",
        "register_group_handler",
        "register_model_event_source",
        "BaseEvent",
        "handler",
        "log",
        "ValidationError",
        "EventNotFound",
        "emit",
        "DeliveryError",
        "BaseHandler",
    }
    assert promised <= set(bridge.__all__)


def test_exported_classes_are_the_real_ones() -> None:
    from django_cloudevents_bridge.emit.handlers import BaseHandler
    from django_cloudevents_bridge.exceptions import DeliveryError

    assert bridge.BaseHandler is BaseHandler
    assert bridge.DeliveryError is DeliveryError


@pytest.mark.django_db(transaction=True)
def test_emit_imported_from_the_top_level_sends(sent_events) -> None:
    from django_cloudevents_bridge import emit

    event = events.new("com.example.ping", data={"n": 1})
    with transaction.atomic():
        emit([event])
        assert sent_events == []  # on commit, not before
    assert [e.get_id() for e in sent_events] == [event.get_id()]
    # The same object is the package: the documented import strings still work.
    assert emit.handlers.locmem.sent is sent_events


@pytest.mark.parametrize(
    "first",
    [
        "from django_cloudevents_bridge import emit",
        "import django_cloudevents_bridge.emit.handlers.locmem",
        "from django_cloudevents_bridge.emit import outbox",
    ],
)
def test_emit_is_callable_whatever_was_imported_first(first: str) -> None:
    # A fresh interpreter: the import order is what a project's own would be.
    script = "\n".join(
        [
            "import django",
            "django.setup()",
            first,
            "import django_cloudevents_bridge.emit.handlers.locmem as locmem",
            "from django_cloudevents_bridge import emit",
            "from django.utils.module_loading import import_string",
            "assert callable(emit), type(emit)",
            "assert import_string(",
            "    'django_cloudevents_bridge.emit.handlers.http.Handler')",
            "assert emit.handlers.locmem is locmem",
        ]
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={"DJANGO_SETTINGS_MODULE": "tests.settings", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.django_db(transaction=True)
def test_emitted_data_with_dates_decimals_and_uuids_reaches_the_outbox(settings):
    # A user's own event: new() encodes such values as model events do, so the
    # outbox row is written (it was lost at the commit: not JSON serializable).
    import datetime
    import decimal
    import json
    import uuid

    from django_cloudevents_bridge import emit
    from django_cloudevents_bridge.models import OutboxEvent

    settings.CLOUDEVENTS_DELIVERY = "outbox"
    key = uuid.UUID("12345678-1234-5678-1234-567812345678")
    data = {
        "at": datetime.datetime(2026, 2, 3, 4, 5, 6, 789, tzinfo=datetime.UTC),
        "on": datetime.date(2026, 2, 3),
        "amount": decimal.Decimal("10.50"),
        "items": [{"key": key}],
    }
    with transaction.atomic():
        emit([events.new("com.example.order.placed", data=data)])
    stored = json.loads(OutboxEvent.objects.get().event)
    assert stored["data"] == {
        "at": "2026-02-03T04:05:06.000789Z",
        "on": "2026-02-03",
        "amount": "10.50",
        "items": [{"key": str(key)}],
    }


@pytest.mark.parametrize("value", [object(), float("nan"), {1, 2}])
def test_data_with_no_json_form_fails_where_the_event_is_built(value) -> None:
    with pytest.raises((TypeError, ValueError)):
        events.new("com.example.bad", data={"value": value})
    # Binary data is not JSON: passed through as it is.
    assert events.new("com.example.raw", data=b"\x00", datacontenttype=None)
