"""What the receiver checks before storing an event.

The store itself, each event once per (source, id) and each target's run, is the
inbox's QuerySet methods (models/inbox.py).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.utils import timezone

from ..events import CloudEvent, parse_time
from ..exceptions import BadEvent
from ..models.inbox import max_length

MAX_KEY_BYTES = 2000

logger = logging.getLogger("django_cloudevents_bridge")


def check(event: CloudEvent) -> None:
    """Raise BadEvent if the (source, id) key does not fit the store's columns.

    A 400 the sender can dead-letter, not the database error (PostgreSQL) that
    would answer 503 and be retried for ever.
    """
    for attribute, column in (("source", "source"), ("id", "event_id")):
        limit = max_length(column)
        if limit is not None and len(event.get_attributes()[attribute]) > limit:
            raise BadEvent(f"{attribute} longer than {limit} characters")
    # PostgreSQL's unique index on (source, id) takes at most ~2,700 bytes.
    key = event.get_source().encode("utf-8") + event.get_id().encode("utf-8")
    if len(key) > MAX_KEY_BYTES:
        raise BadEvent(f"source and id longer than {MAX_KEY_BYTES} bytes together")


EXPIRY = "expirytime"  # the Expiry Time extension: a Timestamp


def unexpired(events: list[CloudEvent]) -> list[CloudEvent]:
    """The events whose ``expirytime`` has not passed.

    An expired event is acknowledged and not processed (nor stored): a broker
    that delivers it late, or redelivers it, gets a 2xx and nothing runs. An
    ``expirytime`` that is no RFC 3339 timestamp is a BadEvent (400).
    """
    now = None
    kept = []
    for event in events:
        value = event.get_attributes().get(EXPIRY)
        if value is None:
            kept.append(event)
            continue
        expiry = _timestamp(value)
        if expiry is None:
            raise BadEvent(
                f"{EXPIRY} is not an RFC 3339 timestamp: {str(value)[:40]!r}"
            )
        now = now or timezone.now()
        if expiry > now:
            kept.append(event)
        else:
            logger.info(
                "CloudEvent %s from %s expired at %s: acknowledged, not processed",
                event.get_id(),
                event.get_source(),
                value,
            )
    return kept


def _timestamp(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else None
    try:
        return parse_time(value) if isinstance(value, str) else None
    except ValueError:
        return None
