"""Subscriptions (django-entity-event's models, on CloudEvents, without django-entity).

A ``Source`` stands for one CloudEvent type (grouped by a ``SourceGroup``); a
``Medium`` is how people consume events (a notification channel: e-mail, a
webhook, or ``"feed"``, read by the feed only). A ``Subscription`` says that an
entity (any model row: a content type and a primary key kept as text, so int,
UUID and string keys all fit) or, with ``sub_entity_type``, every sub-entity of
that kind of a group entity (every user of a group), wants a source's events on
a medium; ``only_following`` narrows it to events whose actors the subscriber
follows. An ``Unsubscription`` opts one entity out of a source on a medium.

Received events of a source are stored once (``Event``, unique by CloudEvent
source and id) with their actors (``EventActor``), the event data as context,
and an expiry. Seen state is per person (``EventSeen``: the ledger's recipient
key), not per medium. Rendering: a ``RenderingStyle`` per medium, and a
``ContextRenderer`` per style and source (or source group) naming templates and
the ``context_hints`` that load referenced models for a whole batch.

Optional columns are non-null with a blank default, or covered by two partial
unique constraints, so uniqueness holds for every row on PostgreSQL and SQLite
alike (NULLs are distinct in a plain unique constraint).
"""

from __future__ import annotations

from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.db.models import Q
from django.utils import timezone

ENTITY_ID_MAX = 255  # an entity's primary key as text


class SourceGroup(models.Model):
    name = models.SlugField(max_length=100, unique=True)
    display_name = models.CharField(max_length=200)
    description = models.TextField(blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.display_name or self.name


class Source(models.Model):
    name = models.SlugField(max_length=100, unique=True)
    display_name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    group = models.ForeignKey(
        SourceGroup, on_delete=models.PROTECT, related_name="sources"
    )
    event_type = models.CharField(
        "CloudEvent type",
        max_length=255,
        unique=True,
        help_text="received events of this type are this source's events",
    )
    actors_path = models.CharField(
        max_length=255,
        blank=True,
        help_text="dotted path in the event data to the actor references; "
        "blank: the 'actors' extension attribute",
    )
    lifetime = models.DurationField(
        null=True,
        blank=True,
        help_text="how long an event stays current when it has no expirytime; "
        "blank: for ever",
    )
    filter = models.JSONField(
        null=True,
        blank=True,
        help_text="a CloudEvents Subscriptions API filter (exact, prefix, suffix, "
        "all, any, not, cesql) events must pass; blank: every event of the type",
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.display_name or self.name


class RenderingStyle(models.Model):
    name = models.SlugField(max_length=100, unique=True)
    display_name = models.CharField(max_length=200)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.display_name or self.name


class Medium(models.Model):
    name = models.SlugField(max_length=100, unique=True)
    display_name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    channel = models.CharField(
        max_length=100,
        default="feed",
        help_text="a channel of CLOUDEVENTS_NOTIFICATIONS['CHANNELS'] (e-mail, "
        "webhook) events are sent through, or 'feed': read by the feed only",
    )
    rendering_style = models.ForeignKey(
        RenderingStyle,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="blank: the default style setting",
    )
    additional_context = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "media"

    def __str__(self) -> str:
        return self.display_name or self.name

    # entity-event's query API; each delegates to the module that implements it.

    def events(self, **filters: Any) -> Any:
        """Every stored event some subscription routes to this medium."""
        from ..subscriptions.queries import events

        return events(self, **filters)

    def entity_events(self, entity: Any, **filters: Any) -> Any:
        """One subscriber's feed on this medium, newest first."""
        from ..subscriptions.feed import entity_events

        return entity_events(self, entity, **filters)

    def events_targets(self, **filters: Any) -> Any:
        """``[(event, targets)]``: each event with the people it reaches, once each."""
        from ..subscriptions.queries import events_targets

        return events_targets(self, **filters)

    def render(self, events: Any) -> Any:
        """``{event: (text, html)}`` in this medium's rendering style."""
        from ..subscriptions.rendering import render

        return render(self, events)


class Subscription(models.Model):
    medium = models.ForeignKey(
        Medium, on_delete=models.CASCADE, related_name="subscriptions"
    )
    source = models.ForeignKey(
        Source, on_delete=models.CASCADE, related_name="subscriptions"
    )
    entity_type = models.ForeignKey(
        ContentType, on_delete=models.CASCADE, related_name="+"
    )
    entity_id = models.CharField(max_length=ENTITY_ID_MAX)
    sub_entity_type = models.ForeignKey(
        ContentType,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        help_text="every sub-entity of this kind of the entity (the users of a "
        "group); blank: the entity itself",
    )
    only_following = models.BooleanField(
        default=True,
        help_text="only events whose actors the subscriber follows",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["medium", "source", "entity_type", "entity_id"],
                condition=Q(sub_entity_type__isnull=True),
                name="dce_subscription_once",
            ),
            models.UniqueConstraint(
                fields=[
                    "medium",
                    "source",
                    "entity_type",
                    "entity_id",
                    "sub_entity_type",
                ],
                condition=Q(sub_entity_type__isnull=False),
                name="dce_subscription_group_once",
            ),
        ]
        indexes = [
            models.Index(fields=["source", "medium"], name="dce_subscription_source"),
            models.Index(
                fields=["entity_type", "entity_id"], name="dce_subscription_entity"
            ),
        ]

    def __str__(self) -> str:
        who = f"{self.entity_type.app_label}.{self.entity_type.model}/{self.entity_id}"
        return f"{who} subscribes to {self.source} by {self.medium}"


class Unsubscription(models.Model):
    medium = models.ForeignKey(
        Medium, on_delete=models.CASCADE, related_name="unsubscriptions"
    )
    source = models.ForeignKey(
        Source, on_delete=models.CASCADE, related_name="unsubscriptions"
    )
    entity_type = models.ForeignKey(
        ContentType, on_delete=models.CASCADE, related_name="+"
    )
    entity_id = models.CharField(max_length=ENTITY_ID_MAX)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["medium", "source", "entity_type", "entity_id"],
                name="dce_unsubscription_once",
            )
        ]
        indexes = [
            models.Index(
                fields=["entity_type", "entity_id"], name="dce_unsubscription_entity"
            ),
        ]

    def __str__(self) -> str:
        who = f"{self.entity_type.app_label}.{self.entity_type.model}/{self.entity_id}"
        return f"{who} unsubscribed from {self.source} by {self.medium}"


class Event(models.Model):
    """One received event of a source, stored once by CloudEvent source and id."""

    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="events")
    event_source = models.CharField("CloudEvent source", max_length=1024)
    event_id = models.CharField("CloudEvent id", max_length=255)
    subject = models.CharField(max_length=1024, blank=True)
    time = models.DateTimeField(
        default=timezone.now, help_text="the event's time, or when it was received"
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    context = models.JSONField(default=dict, blank=True, help_text="the event data")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "subscription event"
        constraints = [
            models.UniqueConstraint(
                fields=["event_source", "event_id"], name="dce_subscription_event_once"
            )
        ]
        indexes = [
            # Feeds: newest first, keyset-paginated on (time, id), per source.
            models.Index(
                fields=["source", "-time", "-id"], name="dce_subscription_event_feed"
            ),
            models.Index(fields=["-time", "-id"], name="dce_subscription_event_time"),
        ]

    def __str__(self) -> str:
        return f"{self.source} {self.event_source} {self.event_id}"


class EventActor(models.Model):
    """An actor of a stored event: any model row, as a content type and key."""

    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="actors")
    entity_type = models.ForeignKey(
        ContentType, on_delete=models.CASCADE, related_name="+"
    )
    entity_id = models.CharField(max_length=ENTITY_ID_MAX)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["event", "entity_type", "entity_id"],
                name="dce_event_actor_once",
            )
        ]
        indexes = [
            models.Index(
                fields=["entity_type", "entity_id", "event"],
                name="dce_event_actor_entity",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.entity_type.app_label}.{self.entity_type.model}/{self.entity_id}"


class EventSeen(models.Model):
    """A person has seen a stored event (per person, whatever the medium)."""

    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="seen")
    person = models.CharField(
        max_length=320, help_text="the ledger's recipient key, e.g. user:42"
    )
    seen_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "events seen"
        constraints = [
            models.UniqueConstraint(
                fields=["person", "event"], name="dce_event_seen_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.person} saw {self.event_id}"


class ContextRenderer(models.Model):
    """Templates for one style and one source (or a whole source group)."""

    name = models.SlugField(max_length=100, unique=True)
    rendering_style = models.ForeignKey(
        RenderingStyle, on_delete=models.CASCADE, related_name="renderers"
    )
    source = models.ForeignKey(
        Source, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    source_group = models.ForeignKey(
        SourceGroup, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    text_template_path = models.CharField(max_length=255, blank=True)
    html_template_path = models.CharField(max_length=255, blank=True)
    text_template = models.TextField(blank=True)
    html_template = models.TextField(blank=True)
    context_hints = models.JSONField(
        default=dict,
        blank=True,
        help_text='{"name": {"app_name": "app", "model_name": "Model", '
        '"select_related": [...], "prefetch_related": [...]}}: the primary keys '
        "at context[name] become model instances, loaded in one query per model",
    )

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(source__isnull=True) ^ Q(source_group__isnull=True),
                name="dce_renderer_source_or_group",
            ),
            models.UniqueConstraint(
                fields=["rendering_style", "source"],
                condition=Q(source__isnull=False),
                name="dce_renderer_once_per_source",
            ),
            models.UniqueConstraint(
                fields=["rendering_style", "source_group"],
                condition=Q(source_group__isnull=False),
                name="dce_renderer_once_per_group",
            ),
        ]

    def __str__(self) -> str:
        return self.name
