"""Relay heartbeats: which relays run, so events waiting for none of them show."""

from __future__ import annotations

import os
import socket
from datetime import datetime

from django.db import models
from django.db.models import Max
from django.utils import timezone


class RelayHeartbeatQuerySet(models.QuerySet["RelayHeartbeat"]):
    def beat(self, name: str) -> None:
        """Record that relay ``name`` (this process) is alive now: one UPSERT."""
        now = timezone.now()
        self.bulk_create(
            [
                self.model(
                    name=name,
                    host=socket.gethostname()[:255],
                    pid=os.getpid(),
                    started_at=now,
                    last_seen=now,
                )
            ],
            update_conflicts=True,
            unique_fields=["name"],
            update_fields=["last_seen"],
        )

    def last_seen(self) -> datetime | None:
        """When any relay was last alive (None: never, or every one exited)."""
        seen: datetime | None = self.aggregate(seen=Max("last_seen"))["seen"]
        return seen


class RelayHeartbeat(models.Model):
    """One running ``cloudevents_relay`` process; removed when it exits cleanly."""

    name = models.CharField(max_length=100, unique=True)  # host:pid, as locked_by
    host = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    last_seen = models.DateTimeField()

    objects = RelayHeartbeatQuerySet.as_manager()

    class Meta:
        verbose_name = "relay heartbeat"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
