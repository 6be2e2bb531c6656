"""Watches (django-tidings' ``Watch``): who wants to hear about which events.

Each watch stores its canonical match key (event type, subject type or any,
subject id or any, the sorted filter pairs as canonical strings: see
``watches/keys.py``) and, indexed, the key's SHA-256 digest: an event is matched
with the digests of the few keys it can match, so the lookup costs in proportion
to the matches, and a long key never hits an index entry limit. ``owner`` is the
person as a non-null string ("user:<pk>" or "email:<normalised address>"), so
the unique (digest, owner) pair holds on every database and under concurrency,
for watches with no user or no object too.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class Watch(models.Model):
    event_type = models.CharField(max_length=255)
    subject_type = models.CharField(
        max_length=255, blank=True, help_text="app_label.model_name; blank: any"
    )
    subject_id = models.CharField(max_length=255, blank=True, help_text="blank: any")
    filters = models.JSONField(default=dict, blank=True)
    key = models.TextField(editable=False)
    key_digest = models.CharField(max_length=64, editable=False)
    owner = models.CharField(max_length=300, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
    )
    email = models.EmailField(blank=True, help_text="an anonymous watch's address")
    active = models.BooleanField(default=False)
    secret_digest = models.CharField(max_length=64, blank=True, editable=False)
    secret_created_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["key_digest", "owner"], name="dce_watch_once_per_owner"
            )
        ]
        indexes = [
            # The lookup's index: only active watches, only the key's digest.
            models.Index(
                fields=["key_digest"],
                condition=Q(active=True),
                name="dce_watch_lookup",
            ),
            models.Index(fields=["owner"], name="dce_watch_owner"),
            models.Index(
                fields=["subject_type", "subject_id"],
                condition=~Q(subject_id=""),
                name="dce_watch_object",
            ),
            models.Index(
                fields=["created_at"],
                condition=Q(active=False),
                name="dce_watch_pending",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.owner} watches {self.key}"
