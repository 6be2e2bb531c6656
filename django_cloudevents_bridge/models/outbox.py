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
        # Partial indexes: a claim reads only pending rows, however many delivered
        # rows the retention keeps.
        indexes = [
            models.Index(
                fields=["id"],
                condition=models.Q(status="pending"),
                name="dce_outbox_pending",
            ),
            models.Index(
                fields=["subject", "id"],
                condition=models.Q(status="pending"),
                name="dce_outbox_pending_subject",
            ),
            # Also partial, so a save() writes no entry in them: one for the
            # retention sweep, one for the admin's and the command's parked rows.
            models.Index(
                fields=["delivered_at"],
                condition=models.Q(status="delivered"),
                name="dce_outbox_delivered",
            ),
            models.Index(
                fields=["id"],
                condition=models.Q(status="parked"),
                name="dce_outbox_parked",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}"
