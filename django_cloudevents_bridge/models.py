"""The transactional outbox: one row per event, written in the caller's transaction."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class OutboxEvent(models.Model):
    """A CloudEvent waiting for (or done with) delivery by the relay."""

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        DELIVERED = "delivered", "delivered"
        PARKED = "parked", "parked (dead-lettered)"

    event_id = models.CharField("event id", max_length=255)
    source = models.CharField(max_length=1024)
    type = models.CharField(max_length=255)
    subject = models.CharField(max_length=1024, blank=True)
    # The complete event in the JSON event format, exactly as it will be sent.
    event = models.TextField()
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    locked_until = models.DateTimeField(null=True, blank=True)
    locked_by = models.CharField(max_length=100, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        verbose_name = "outbox event"
        ordering = ["id"]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="dce_outbox_due"),
            models.Index(fields=["subject", "id"], name="dce_outbox_subject"),
            models.Index(fields=["status", "delivered_at"], name="dce_outbox_done"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}"
