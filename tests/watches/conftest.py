from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from django_cloudevents_bridge.models import Delivery
from django_cloudevents_bridge.notifications.channels import get_channel


class Ledger:
    """The real delivery ledger, read as a mapping: (source, event id, recipient
    key, channel) -> (the recipient's reasons, the stored message, loaded)."""

    def _rows(self) -> dict[tuple[str, str, str, str], tuple[Any, Any]]:
        return {
            (row.source, row.event_id, row.recipient, row.channel): (
                SimpleNamespace(key=row.recipient, reasons=tuple(row.reasons)),
                get_channel(row.channel).load(row.message),
            )
            for row in Delivery.objects.order_by("pk")
        }

    def __getitem__(self, key: tuple[str, str, str, str]) -> tuple[Any, Any]:
        return self._rows()[key]

    def __iter__(self) -> Iterator[tuple[str, str, str, str]]:
        return iter(self._rows())

    def __len__(self) -> int:
        return Delivery.objects.count()

    def __eq__(self, other: object) -> bool:
        return self._rows() == other

    def items(self) -> Any:
        return self._rows().items()


@pytest.fixture
def ledger() -> Ledger:
    """The deliveries the watch target recorded (the real notification ledger)."""
    return Ledger()


@pytest.fixture(autouse=True)
def _site(settings) -> None:
    settings.CLOUDEVENTS_NOTIFICATIONS = {"BASE_URL": "https://example.test"}
