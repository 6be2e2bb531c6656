"""The delivery ledger: one row per (event source, event id, recipient, channel).

Rows are written before anything is sent (``notifications.record``), under a
unique key, so a redelivered event, a retried task or two workers never notify
anyone twice. The worker claims due rows (``claim``), its channel sends them, and
each outcome is recorded as soon as it is known (``sent``, ``failed``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import connections, models
from django.db.models import F, Q
from django.utils import timezone

from ..redact import redact

DUE = ("pending", "failed")  # with a next attempt time: the worker's to send


def ledger_key(source: str, event_id: str, recipient: str, channel: str) -> str:
    """The unique key of a delivery: a SHA-256 hex digest, so that long sources
    and addresses stay within a btree index entry's limits."""
    text = json.dumps([source, event_id, recipient, channel], ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


class DeliveryQuerySet(models.QuerySet["Delivery"]):
    def claim(
        self, channel: str, now: datetime, until: datetime, limit: int
    ) -> list[Delivery]:
        """Take up to ``limit`` due deliveries of a channel until ``until``.

        One statement (UPDATE ... RETURNING): two workers never take one row
        (PostgreSQL: SKIP LOCKED; SQLite: one writer at a time). A worker that
        dies holding rows leaves them due again once ``until`` passes.
        """
        connection = connections[self.db]
        qn = connection.ops.quote_name
        table = qn(Delivery._meta.db_table)
        lock = " FOR UPDATE SKIP LOCKED" if connection.vendor == "postgresql" else ""
        due = "status IN (%s, %s) AND next_attempt_at <= %s AND channel = %s"
        when = connection.ops.adapt_datetimefield_value
        params = [*DUE, when(now), channel]
        sql = (
            f"UPDATE {table} SET next_attempt_at = %s, updated_at = %s WHERE "
            f"{due} AND id IN (SELECT id FROM {table} WHERE {due} "
            f"ORDER BY next_attempt_at, id LIMIT %s{lock}) RETURNING id"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [when(until), when(now), *params, *params, limit])
            ids = [row[0] for row in cursor.fetchall()]
        return list(self.filter(pk__in=ids).order_by("id")) if ids else []

    def sent(self, delivery: Delivery) -> None:
        """Record a delivery as sent."""
        now = timezone.now()
        self.filter(pk=delivery.pk).update(
            status=Delivery.Status.SENT,
            attempts=F("attempts") + 1,
            last_error="",
            next_attempt_at=None,
            sent_at=now,
            updated_at=now,
        )

    def failed(
        self, delivery: Delivery, error: BaseException, status: str, at: Any
    ) -> None:
        """Record a failed attempt: due again ``at``, or parked (``at`` None)."""
        self.filter(pk=delivery.pk).update(
            status=status,
            attempts=F("attempts") + 1,
            last_error=redact(f"{type(error).__name__}: {error}")[:2000],
            next_attempt_at=at,
            updated_at=timezone.now(),
        )

    def retry(self) -> int:
        """Make failed and parked deliveries due now, with a fresh count of attempts."""
        now = timezone.now()
        return self.filter(status__in=["failed", "parked"]).update(
            status=Delivery.Status.PENDING, attempts=0, next_attempt_at=now
        )

    def revoke_links(self) -> int:
        """Revoke the unsubscribe links of these deliveries (they answer 404)."""
        return self.exclude(unsubscribe_digest="").update(unsubscribe_digest="")


class Delivery(models.Model):
    """One notification of one person about one event on one channel."""

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        SENT = "sent", "sent"
        FAILED = "failed", "failed"  # due again after a backoff
        PARKED = "parked", "parked"  # no more attempts

    key = models.CharField(max_length=64, editable=False)
    source = models.CharField(max_length=1024)
    event_id = models.CharField("event id", max_length=255)
    event_type = models.CharField("event type", max_length=255, blank=True)
    # "user:<pk>" or "email:<normalised address>"
    recipient = models.CharField(max_length=320)
    channel = models.CharField(max_length=100)
    # The channel's JSON dump of the message: a retry sends it as it was built.
    message = models.JSONField()
    # Why this person is notified (watches, subscriptions): what unsubscribe undoes.
    reasons = models.JSONField(default=list, blank=True)
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    # SHA-256 of the token in the last sent message's unsubscribe link; "" revoked.
    unsubscribe_digest = models.CharField(max_length=64, blank=True, editable=False)
    unsubscribed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)

    objects = DeliveryQuerySet.as_manager()

    class Meta:
        verbose_name = "notification delivery"
        verbose_name_plural = "notification deliveries"
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["key"], name="dce_delivery_once")
        ]
        indexes = [
            models.Index(
                fields=["channel", "next_attempt_at"],
                name="dce_delivery_due",
                condition=Q(status__in=list(DUE)) & Q(next_attempt_at__isnull=False),
            ),
            models.Index(fields=["recipient"], name="dce_delivery_recipient"),
        ]

    def __str__(self) -> str:
        return f"{self.channel} to {self.recipient}: {self.event_type} {self.event_id}"


def due_channels(using: str, now: datetime) -> Sequence[str]:
    """The channels that have deliveries due now."""
    return list(
        Delivery.objects.using(using)
        .filter(status__in=DUE, next_attempt_at__lte=now)
        .values_list("channel", flat=True)
        .distinct()
        .order_by()
    )
