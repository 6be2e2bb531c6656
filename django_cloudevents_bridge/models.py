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


class ReceivedEvent(models.Model):
    """A CloudEvent the receiver accepted, stored once per (source, id)."""

    source = models.CharField(max_length=1024)
    event_id = models.CharField("event id", max_length=255)
    type = models.CharField(max_length=255)
    subject = models.CharField(max_length=1024, blank=True)
    # The event in the JSON event format (data_base64 for binary data).
    event = models.TextField()
    received_at = models.DateTimeField(default=timezone.now)
    deliveries = models.PositiveIntegerField(
        default=1, help_text="How many times it was delivered to us."
    )

    class Meta:
        verbose_name = "received event"
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["source", "event_id"], name="dce_received_source_id"
            )
        ]
        indexes = [
            models.Index(fields=["type", "received_at"], name="dce_received_type")
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}"


class TargetRun(models.Model):
    """One dispatch target's work for one received event: done, or failed."""

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        DONE = "done", "done"
        FAILED = "failed", "failed"

    event = models.ForeignKey(
        ReceivedEvent, on_delete=models.CASCADE, related_name="targets"
    )
    target = models.CharField(max_length=255)
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    # The reply event the target returned (JSON event format): a redelivery,
    # which skips the done target, answers with it again instead of losing it.
    reply = models.TextField(blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "dispatch target run"
        constraints = [
            models.UniqueConstraint(fields=["event", "target"], name="dce_target_once")
        ]

    def __str__(self) -> str:
        return f"{self.target}: {self.status}"
