"""Watches as a dispatch target (django-tidings on CloudEvents).

An event of a type some watch class is registered for gets one target,
``watches``, that always runs on the worker (``deferred=True``, in inline and
deferred receive modes alike): it streams the people watching the event, each
with the message the first matching class's ``mails()`` built, into the
notification ledger, in the target's transaction. The ledger's unique key
(event source, event id, recipient, channel) and the target's exactly-once run
record mean a redelivered event or a retried run notifies nobody twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.contrib.auth import get_user_model

from ..events import CloudEvent
from ..models import Watch
from ..watches import keys, lookup
from ..watches.base import matching
from . import Target, register_provider

NAME = "watches"  # the target's stored name: fixed for ever
CHANNEL = "email"


@register_provider
def watch_targets(event: CloudEvent) -> Iterator[Target]:
    """The watch target, for events some watch class is registered for (by type,
    and its ``event_filter`` if it has one)."""
    if matching(event):
        yield Target(NAME, notify_watchers, deferred=True)


def notify_watchers(event: CloudEvent) -> int:
    """Write one ledger row per person watching ``event``; returns how many new."""
    from .. import notifications  # the notification layer (ledger, channels)

    items = (
        (
            notifications.Recipient(
                key=person.key,
                email=person.email,
                user=person.user,
                reasons=person.reasons,
            ),
            message,
        )
        for person, message in lookup.mails(event)
    )
    return notifications.record(event, CHANNEL, items)


def unsubscribe(reason: dict[str, Any], recipient: str) -> None:
    """One-click unsubscribe of a watch (the ledger's reason kind "watch").

    Deletes the watch the reason names if it belongs to the recipient: the
    recipient's own, or an anonymous watch of the address a user was mailed at.
    """
    watches = Watch.objects.filter(pk=int(reason.get("id") or 0))
    if watches.filter(owner=recipient).delete()[0] or not recipient.startswith("user:"):
        return
    users = get_user_model()._default_manager
    user: Any = users.filter(pk=recipient.removeprefix("user:")).first()
    if user is not None:
        email = getattr(user, user.get_email_field_name(), "") or ""
        watches.filter(owner=keys.owner_of(None, email)).delete()
