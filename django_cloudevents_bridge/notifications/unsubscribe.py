"""One-click unsubscribe links (RFC 8058): signed, hashed, revocable.

Each time a delivery is sent, it gets a new random token (``tokens.new()``): its
digest goes on the ledger row, and the link carries ``signing.dumps([row id,
token])``, so it is signed with ``SECRET_KEY`` and matched against the digest in
constant time. A link works until it is revoked: by the next send of the same
delivery (a new token), by ``Delivery.objects.revoke_links()`` or the admin
action, by deleting the row, or by rotating ``SECRET_KEY``. Unsubscribing calls
the function registered for the kind of each of the delivery's reasons.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from django.core import signing
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from .. import conf
from . import tokens

if TYPE_CHECKING:
    from ..models import Delivery

logger = logging.getLogger("django_cloudevents_bridge")

SALT = "django_cloudevents_bridge.notifications.unsubscribe"
MAX_LINK = 400  # characters of a signed value; longer is no link of ours
_unsubscribers: dict[str, Callable[[dict[str, Any], str], None]] = {}


def register_unsubscriber(kind: str, function: Callable[[dict, str], None]) -> None:
    """What a one-click unsubscribe does for a reason of this kind: ``function(
    reason, recipient_key)`` (watches register ``"watch"``). Registering a kind
    again replaces its function."""
    if not callable(function):
        raise TypeError(f"the unsubscriber for {kind!r} must be callable")
    _unsubscribers[kind] = function


def base_url() -> str:
    """``CLOUDEVENTS_NOTIFICATIONS["BASE_URL"]`` without its trailing slash."""
    base = conf.notifications()["BASE_URL"]
    if not base or urlsplit(str(base)).scheme not in ("http", "https"):
        raise ImproperlyConfigured(
            'CLOUDEVENTS_NOTIFICATIONS["BASE_URL"] must be the site\'s absolute URL '
            '(e.g. "https://example.com") to build unsubscribe links'
        )
    return str(base).rstrip("/")


def link(delivery_id: int, token: str, base: str | None = None) -> str:
    """The absolute one-click URL for a delivery and its token."""
    value = signing.dumps([delivery_id, token], salt=SALT)
    path = reverse("cloudevents:unsubscribe", args=[value])
    return (base if base is not None else base_url()) + path


def issue(deliveries: Sequence[Delivery]) -> dict[int, str]:
    """New links for these deliveries (their digests stored first, in one query)."""
    from ..models import Delivery

    base = base_url()
    links = {}
    for delivery in deliveries:
        token, delivery.unsubscribe_digest = tokens.new()
        links[delivery.pk] = link(delivery.pk, token, base)
    if deliveries:
        Delivery.objects.using(deliveries[0]._state.db).bulk_update(
            deliveries, ["unsubscribe_digest"]
        )
    return links


def verify(value: str) -> Delivery | None:
    """The delivery a link is for, if it is signed, known and not revoked."""
    from ..models import Delivery

    if len(value) > MAX_LINK:
        return None
    try:
        delivery_id, token = signing.loads(value, salt=SALT)
    except (signing.BadSignature, TypeError, ValueError):
        return None
    if not isinstance(delivery_id, int) or not isinstance(token, str):
        return None
    delivery = Delivery.objects.filter(pk=delivery_id).first()
    if delivery is None or not tokens.matches(token, delivery.unsubscribe_digest):
        return None
    return delivery


def unsubscribe(delivery: Delivery) -> bool:
    """Undo every reason of the delivery; False if that was done before.

    One transaction: the row is locked, so two clicks (a mail provider's POST
    and the person's) undo the reasons once.
    """
    from ..models import Delivery

    with transaction.atomic():
        locked = Delivery.objects.select_for_update().get(pk=delivery.pk)
        if locked.unsubscribed_at is not None:
            return False
        for reason in locked.reasons or []:
            kind = reason.get("kind") if isinstance(reason, dict) else None
            function = _unsubscribers.get(str(kind))
            if function is None:
                logger.warning(
                    "No unsubscriber is registered for reasons of kind %r "
                    "(delivery %s)",
                    kind,
                    locked.pk,
                )
                continue
            function(reason, locked.recipient)
        locked.unsubscribed_at = timezone.now()
        locked.save(update_fields=["unsubscribed_at"])
    return True
