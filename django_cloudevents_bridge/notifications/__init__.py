"""Notifications, shared by watches and subscriptions: ledger, channels, unsubscribe.

``record(event, channel, items)`` writes one ledger row (``Delivery``) per
(event source, event id, recipient, channel) in the caller's transaction, with
the channel's JSON dump of the message; a row that exists already is left alone,
so a redelivered event, a retried task or a second worker notifies nobody twice.
``send_due()`` (run by ``cloudevents_worker`` and by a task enqueued after the
commit) hands due rows to their channel in batches and records each outcome.
Models are imported on first use, so importing this module needs no app registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .ledger import record, send_due
from .unsubscribe import register_unsubscriber

__all__ = [
    "Recipient",
    "address_key",
    "normalise_address",
    "record",
    "register_unsubscriber",
    "send_due",
    "user_key",
]


@dataclass(frozen=True)
class Recipient:
    """One person to notify: the ledger's recipient key, the address, and why."""

    key: str  # "user:<pk>" or "email:<normalised address>"
    email: str  # the address to send to
    user: Any | None = None  # the user instance, if any
    # JSON-safe: why this person is notified, e.g.
    # {"kind": "watch", "id": 12, "class": "wiki.EditDocument"}
    reasons: tuple[dict[str, Any], ...] = ()


def normalise_address(email: str) -> str:
    """The address stripped and lower-cased (the whole of it, domain and local part)."""
    return email.strip().lower()


def user_key(user: Any) -> str:
    """The recipient key of a user: ``"user:<pk>"``."""
    return f"user:{user.pk}"


def address_key(email: str) -> str:
    """The recipient key of an anonymous address: ``"email:<normalised>"``."""
    return f"email:{normalise_address(email)}"
