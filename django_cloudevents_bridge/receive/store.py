"""What the receiver checks before storing an event.

The store itself, each event once per (source, id) and each target's run, is the
inbox's QuerySet methods (models/inbox.py).
"""

from __future__ import annotations

from ..events import CloudEvent
from ..exceptions import BadEvent
from ..models.inbox import max_length

MAX_KEY_BYTES = 2000


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
