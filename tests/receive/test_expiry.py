"""The Expiry Time extension: an expired event is acknowledged, not processed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import Client

from django_cloudevents_bridge.models import ReceivedEvent
from django_cloudevents_bridge.targets.groups import (
    register_group_handler,
    unregister_group_handler,
)

pytestmark = pytest.mark.django_db(transaction=True)

ran: list[str] = []


def expiring_handler(event: Any) -> None:
    ran.append(event.get_id())


@pytest.fixture(autouse=True)
def handler() -> Iterator[None]:
    ran.clear()
    register_group_handler(expiring_handler, r"^com\.example\.offer$")
    yield
    unregister_group_handler(expiring_handler)


def post(id: str, **extensions: str) -> Any:
    headers = {f"ce-{k}": v for k, v in extensions.items()}
    return Client(enforce_csrf_checks=True).generic(
        "POST",
        "/cloudevents/",
        b"{}",
        content_type="application/json",
        headers={
            "ce-specversion": "1.0",
            "ce-id": id,
            "ce-source": "/offers",
            "ce-type": "com.example.offer",
            **headers,
        },
    )


def stamp(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).isoformat().replace("+00:00", "Z")


def test_an_expired_event_is_acknowledged_and_not_processed() -> None:
    assert post("old", expirytime=stamp(-timedelta(seconds=1))).status_code == 202
    assert ran == [] and not ReceivedEvent.objects.exists()


def test_an_unexpired_event_is_processed() -> None:
    assert post("new", expirytime=stamp(timedelta(hours=1))).status_code == 202
    assert post("offset", expirytime="2999-01-01T00:00:00+02:00").status_code == 202
    assert post("none").status_code == 202
    assert ran == ["new", "offset", "none"]


@pytest.mark.parametrize("value", ["tomorrow", "2026-01-01", "2026-01-01T00:00:00"])
def test_a_malformed_expirytime_is_400(value: str) -> None:
    response = post("bad", expirytime=value)
    assert response.status_code == 400
    assert "expirytime" in json.loads(response.content)["error"]
    assert ran == []


def test_in_a_batch_only_the_expired_ones_are_skipped() -> None:
    body = [
        {
            "specversion": "1.0",
            "id": i,
            "source": "/offers",
            "type": "com.example.offer",
        }
        | ({"expirytime": stamp(delta)} if delta is not None else {})
        for i, delta in [
            ("a", timedelta(hours=1)),
            ("b", -timedelta(minutes=1)),
            ("c", None),
        ]
    ]
    response = Client().post(
        "/cloudevents/",
        json.dumps(body),
        content_type="application/cloudevents-batch+json",
    )
    assert response.status_code == 202
    assert ran == ["a", "c"]


def test_deferred_mode_skips_them_too(settings) -> None:
    settings.CLOUDEVENTS_RECEIVER = {"MODE": "deferred", "TASK_BACKEND": False}
    assert post("old", expirytime=stamp(-timedelta(seconds=1))).status_code == 202
    assert not ReceivedEvent.objects.exists()
