"""Anonymous watches: activation by a signed, expiring link, and claiming them.

A watch by address is pending until its owner confirms it. ``notify()`` gives it
a fresh token (``secrets``; only its SHA-256 digest is stored) and mails a link
signed with Django's signing (it names the watch and carries the token, and
expires after ``ACTIVATION_MAX_AGE``), at most ``ACTIVATION_RATE`` mails per
address and period and one per watch and period. GET on the link shows a page
with a button and changes nothing (mail scanners follow links); the POST
activates. The token is single-use: activation forgets its digest.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from django.core import signing
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMessage
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.module_loading import import_string
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from .. import conf
from ..models import Watch
from ..notifications import tokens
from . import keys

if TYPE_CHECKING:
    from .base import WatchEvent

logger = logging.getLogger("django_cloudevents_bridge")

SALT = "django_cloudevents_bridge.watches.activate"
TEMPLATE = "django_cloudevents_bridge/watches/activate.html"


def request(cls: type[WatchEvent], watch: Watch) -> bool:
    """Mail the pending watch a new activation link after the commit.

    False (and nothing sent) when the address or this watch had its share of
    mails in the current period.
    """
    count, period = conf.notifications()["ACTIVATION_RATE"]
    now = timezone.now()
    since = now - timedelta(seconds=period)
    with transaction.atomic():
        # Locked: two notify() calls for one watch send one mail.
        locked = Watch.objects.select_for_update().filter(pk=watch.pk).first()
        if locked is None or locked.active:
            return False
        if locked.secret_created_at is not None and locked.secret_created_at >= since:
            return False
        sent = Watch.objects.filter(
            owner=watch.owner, secret_created_at__gte=since
        ).count()
        if sent >= count:
            logger.info("Activation mail to %s not sent: rate limit", watch.owner)
            return False
        token, digest = tokens.new()
        Watch.objects.filter(pk=watch.pk).update(
            secret_digest=digest, secret_created_at=now
        )
    watch.secret_digest, watch.secret_created_at = digest, now
    message = cls.activation_email(watch, activation_url(watch, token))
    transaction.on_commit(partial(_send, message), robust=True)
    return True


def _send(message: EmailMessage) -> None:
    try:
        message.send()
    except Exception:  # the caller's transaction committed: log, never raise
        logger.exception("Could not send an activation mail")


def activation_url(watch: Watch, token: str) -> str:
    """The absolute, signed link that activates ``watch``."""
    base = conf.notifications()["BASE_URL"]
    if not base:
        raise ImproperlyConfigured(
            'Set CLOUDEVENTS_NOTIFICATIONS["BASE_URL"] (the site\'s absolute URL) '
            "for the links in activation mails"
        )
    signed = signing.dumps({"w": watch.pk, "t": token}, salt=SALT)
    return base.rstrip("/") + reverse("cloudevents:watch-activate", args=[signed])


class LinkError(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def _watch_for(signed: str) -> Watch:
    """The pending watch a link names; LinkError if expired, used or forged."""
    max_age = conf.notifications()["ACTIVATION_MAX_AGE"]
    try:
        payload = signing.loads(signed, salt=SALT, max_age=max_age)
    except signing.SignatureExpired:
        raise LinkError(410, "This activation link has expired.") from None
    except signing.BadSignature:
        raise LinkError(404, "This activation link is not valid.") from None
    if not isinstance(payload, dict):
        raise LinkError(404, "This activation link is not valid.")
    pk = payload.get("w")
    watch = Watch.objects.filter(pk=pk).first() if isinstance(pk, int) else None
    if watch is not None and watch.active:
        raise LinkError(200, "This watch is active already.")
    if watch is None or not tokens.matches(str(payload.get("t")), watch.secret_digest):
        # Deleted, or a newer link replaced this one.
        raise LinkError(404, "This activation link is not valid.")
    return watch


# The POST is authenticated by the signed token it carries, as the link is:
# no session, so no CSRF to protect against.
@method_decorator(csrf_exempt, name="dispatch")
class ActivateView(View):
    """GET: a page with a confirmation button (no change); POST: activate."""

    http_method_names = ["get", "post"]

    def get(self, request: HttpRequest, signed: str) -> HttpResponse:
        return self._page(request, signed, activate=False)

    def post(self, request: HttpRequest, signed: str) -> HttpResponse:
        return self._page(request, signed, activate=True)

    def _page(self, request: HttpRequest, signed: str, activate: bool) -> HttpResponse:
        try:
            watch = _watch_for(signed)
        except LinkError as err:
            context: dict[str, Any] = {"message": str(err), "done": err.status == 200}
            return render(request, TEMPLATE, context, status=err.status)
        if activate:
            Watch.objects.filter(pk=watch.pk, active=False).update(
                active=True, secret_digest=""
            )
            return render(
                request, TEMPLATE, {"message": "Watch activated.", "done": True}
            )
        return render(request, TEMPLATE, {"watch": watch, "done": False})


def claim_watches(user: Any, *, verified: bool | None = None) -> int:
    """Attach the anonymous watches of the user's address to the user.

    Only for an address the project knows the user controls: pass
    ``verified=True``, or name a function ``f(user) -> bool`` in
    ``CLOUDEVENTS_NOTIFICATIONS["EMAIL_VERIFIED"]``; otherwise nothing is
    claimed. Claimed watches are active (the address is verified). A watch
    the user already has is dropped. Returns how many were claimed.
    """
    if verified is None:
        hook = conf.notifications()["EMAIL_VERIFIED"]
        verified = bool(import_string(hook)(user)) if hook else False
    email = getattr(user, user.get_email_field_name(), "") or ""
    if not verified or not email.strip():
        return 0
    owner = keys.owner_of(user)
    claimed = 0
    with transaction.atomic():
        anonymous = Watch.objects.select_for_update().filter(
            owner=keys.owner_of(None, email)
        )
        for watch in anonymous:
            try:
                with transaction.atomic():
                    Watch.objects.filter(pk=watch.pk).update(
                        user=user,
                        email="",
                        owner=owner,
                        active=True,
                        secret_digest="",
                    )
            except IntegrityError:  # the user watches this already
                watch.delete()
            else:
                claimed += 1
    return claimed
