"""A stand-in for the notification layer's ``Recipient`` and ``record()``.

The ledger (``django_cloudevents_bridge.notifications``) is built on another
branch; until it is merged, the watch target's tests record here, with the
ledger's contract: one entry per (source, id, recipient key, channel), a second
one left alone, the count of new ones returned. It writes in the caller's
transaction (a ``Tag`` row per entry), so a rolled-back target leaves nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django_cloudevents_bridge.events import CloudEvent

entries: dict[tuple[str, str, str, str], tuple[Any, Any]] = {}


@dataclass(frozen=True)
class Recipient:
    key: str
    email: str
    user: Any | None = None
    reasons: tuple[dict[str, Any], ...] = ()


def record(
    event: CloudEvent, channel: str, items: Iterable[tuple[Recipient, Any]]
) -> int:
    new = 0
    for recipient, message in items:
        key = (event.get_source(), event.get_id(), recipient.key, channel)
        if key not in entries:
            entries[key] = (recipient, message)
            new += 1
    return new
