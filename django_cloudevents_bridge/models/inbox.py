"""Received events, stored once per (source, id), and each dispatch target's run."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


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
