from __future__ import annotations

from collections.abc import Iterator

import pytest

import django_cloudevents_bridge.notifications as notifications
from tests.watches import standin


@pytest.fixture
def ledger(monkeypatch) -> Iterator[dict]:
    """The stand-in ledger, where the watch target records (see standin.py)."""
    monkeypatch.setattr(notifications, "Recipient", standin.Recipient, raising=False)
    monkeypatch.setattr(notifications, "record", standin.record, raising=False)
    standin.entries.clear()
    yield standin.entries
    standin.entries.clear()


@pytest.fixture(autouse=True)
def _site(settings) -> None:
    settings.CLOUDEVENTS_NOTIFICATIONS = {"BASE_URL": "https://example.test"}
