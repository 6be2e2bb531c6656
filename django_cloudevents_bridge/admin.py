from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.db import router
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.timesince import timesince

from . import filters
from .emit.outbox import health, retry, waiting
from .models import (
    ContextRenderer,
    Delivery,
    Event,
    EventActor,
    Medium,
    OutboxEvent,
    ReceivedEvent,
    RelayHeartbeat,
    RenderingStyle,
    Source,
    SourceGroup,
    Subscription,
    TargetRun,
    Unsubscription,
    Watch,
)
from .models.notifications import DeliveryQuerySet
from .subscriptions import rendering


@admin.register(OutboxEvent)
class OutboxEventAdmin(admin.ModelAdmin):
    list_display = (
        "event_id",
        "type",
        "subject",
        "status",
        "attempts",
        "created_at",
        "next_attempt_at",
        "delivered_at",
    )
    list_filter = ("status", "type")
    search_fields = ("event_id", "subject", "type")
    date_hierarchy = "created_at"
    actions = ("retry_events", "park_events")
    readonly_fields = [field.name for field in OutboxEvent._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # rows come from model changes, not from the admin

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if request.method == "GET":  # an action's POST redirects to a GET
            self.report_relay(request)
        return super().changelist_view(request, extra_context)

    def report_relay(self, request: HttpRequest) -> None:
        """Say how long events wait and when a relay was last seen."""
        using = router.db_for_read(OutboxEvent)
        found = health(using)
        problem = waiting(found)
        if problem:
            self.message_user(request, problem, messages.WARNING)
        elif found["oldest_pending_age"] is not None:
            seen = found["relay_last_seen_age"]
            self.message_user(
                request,
                f"Oldest pending event: {found['oldest_pending_age'] / 60:.0f} min; "
                "last relay seen: "
                + ("none running" if seen is None else f"{seen:.0f} s ago"),
                messages.INFO,
            )

    @admin.action(description="Retry selected parked events (same event id)")
    def retry_events(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        count = retry(queryset)  # parked rows only: pending ones may be in flight
        self.message_user(
            request, f"{count} event(s) will be retried.", messages.SUCCESS
        )

    @admin.action(description="Park selected events (stop retrying)")
    def park_events(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        count = queryset.filter(status=OutboxEvent.Status.PENDING).update(
            status=OutboxEvent.Status.PARKED,
            last_error="parked by hand",
            next_attempt_at=timezone.now(),
        )
        self.message_user(request, f"{count} event(s) parked.", messages.SUCCESS)


@admin.register(RelayHeartbeat)
class RelayHeartbeatAdmin(admin.ModelAdmin):
    list_display = ("name", "host", "pid", "started_at", "last_seen")
    readonly_fields = [field.name for field in RelayHeartbeat._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # rows come from running relays


class TargetRunInline(admin.TabularInline):
    model = TargetRun
    extra = 0
    can_delete = False
    fields = (
        "target",
        "status",
        "attempts",
        "error",
        "reply",
        "updated_at",
        "next_attempt_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ReceivedEvent)
class ReceivedEventAdmin(admin.ModelAdmin):
    list_display = (
        "event_id",
        "type",
        "source",
        "subject",
        "received_at",
        "deliveries",
    )
    list_filter = ("type", "targets__status")
    search_fields = ("event_id", "source", "subject", "type")
    date_hierarchy = "received_at"
    readonly_fields = [field.name for field in ReceivedEvent._meta.fields]
    inlines = [TargetRunInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # rows come from deliveries, not from the admin


@admin.register(TargetRun)
class TargetRunAdmin(admin.ModelAdmin):
    """Each target's run: deferred work waiting, failed, parked, and its age."""

    list_display = (
        "target",
        "event",
        "status",
        "attempts",
        "age",
        "next_attempt_at",
        "error",
    )
    list_filter = ("status", "target")
    search_fields = ("target", "event__event_id", "event__type")
    list_select_related = ("event",)
    readonly_fields = [field.name for field in TargetRun._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # rows come from deliveries

    @admin.display(description="age", ordering="event__received_at")
    def age(self, run: TargetRun) -> str:
        """How long since the event was received."""
        return timesince(run.event.received_at)


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    """The notification ledger: who was notified of what, how, and why."""

    list_display = (
        "recipient",
        "channel",
        "event_type",
        "event_id",
        "status",
        "attempts",
        "next_attempt_at",
        "sent_at",
        "unsubscribed_at",
    )
    list_filter = ("status", "channel", "event_type")
    search_fields = ("recipient", "event_id", "source", "event_type")
    date_hierarchy = "created_at"
    actions = ("retry_deliveries", "revoke_links")
    # The token's digest is not shown: it is of no use to a person.
    exclude = ("unsubscribe_digest",)
    readonly_fields = [
        field.name
        for field in Delivery._meta.fields
        if field.name != "unsubscribe_digest"
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # rows come from watches and subscriptions

    @admin.action(description="Retry selected failed or parked deliveries")
    def retry_deliveries(
        self, request: HttpRequest, queryset: DeliveryQuerySet
    ) -> None:
        count = queryset.retry()
        self.message_user(
            request, f"{count} deliveries will be retried.", messages.SUCCESS
        )

    @admin.action(description="Revoke the unsubscribe links of selected deliveries")
    def revoke_links(self, request: HttpRequest, queryset: DeliveryQuerySet) -> None:
        count = queryset.revoke_links()
        self.message_user(request, f"{count} links revoked.", messages.SUCCESS)


@admin.register(Watch)
class WatchAdmin(admin.ModelAdmin):
    list_display = (
        "owner",
        "event_type",
        "subject_type",
        "subject_id",
        "filters",
        "active",
        "created_at",
    )
    list_filter = ("active", "event_type", "subject_type")
    search_fields = ("owner", "email", "subject_id", "event_type")
    date_hierarchy = "created_at"
    list_select_related = ("user",)
    actions = ("activate", "deactivate")
    # The match key is computed by notify(): only the flag is edited here.
    # (The activation secret's digest is not shown at all.)
    readonly_fields = [
        f.name for f in Watch._meta.fields if f.name not in ("active", "secret_digest")
    ]
    exclude = ("secret_digest",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # watches come from notify(), which computes their key

    @admin.action(description="Activate the selected watches")
    def activate(self, request: HttpRequest, queryset: QuerySet[Watch]) -> None:
        count = queryset.update(active=True, secret_digest="")
        self.message_user(request, f"{count} watch(es) activated.")

    @admin.action(description="Deactivate the selected watches")
    def deactivate(self, request: HttpRequest, queryset: QuerySet[Watch]) -> None:
        count = queryset.update(active=False)
        self.message_user(request, f"{count} watch(es) deactivated.")


# Subscriptions (subscriptions/): sources, mediums, subscribers, stored events
# and rendering.


def _entity(entity_type: ContentType, entity_id: str) -> str:
    """An entity as ``app.model/pk``, as actor references write it."""
    return f"{entity_type.app_label}.{entity_type.model}/{entity_id}"


@admin.register(SourceGroup)
class SourceGroupAdmin(admin.ModelAdmin):
    list_display = ("name", "display_name")
    search_fields = ("name", "display_name")
    prepopulated_fields = {"name": ("display_name",)}


class SourceForm(forms.ModelForm):
    """A source's filter must compile, as it will when events arrive."""

    def clean_filter(self) -> Any:
        spec = self.cleaned_data.get("filter")
        if spec in (None, "", [], {}):
            return spec
        try:
            filters.compile(spec)
        except filters.InvalidFilter as err:
            raise forms.ValidationError(f"Not a usable filter: {err}") from err
        return spec


@admin.register(Source)
class SourceAdmin(admin.ModelAdmin):
    form = SourceForm
    list_display = ("name", "display_name", "group", "event_type", "lifetime")
    list_filter = ("group",)
    search_fields = ("name", "display_name", "event_type")
    list_select_related = ("group",)
    prepopulated_fields = {"name": ("display_name",)}


@admin.register(Medium)
class MediumAdmin(admin.ModelAdmin):
    list_display = ("name", "display_name", "channel", "rendering_style")
    list_filter = ("channel", "rendering_style")
    search_fields = ("name", "display_name")
    list_select_related = ("rendering_style",)
    prepopulated_fields = {"name": ("display_name",)}


class EntityForm(forms.ModelForm):
    """The entity (a content type and a primary key) must be an existing row."""

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        entity_type, entity_id = cleaned.get("entity_type"), cleaned.get("entity_id")
        if entity_type is None or not entity_id:
            return cleaned
        model = entity_type.model_class()
        if model is None:
            self.add_error("entity_type", "This model is not installed.")
            return cleaned
        try:
            key = model._meta.pk.to_python(entity_id)
            exists = model._default_manager.filter(pk=key).exists()
        except (ValidationError, ValueError, TypeError):
            exists = False
        if not exists:
            self.add_error(
                "entity_id",
                f"No {model._meta.verbose_name} has the primary key {entity_id!r}.",
            )
        return cleaned


class EntityAdmin(admin.ModelAdmin):
    """Shared by subscriptions and unsubscriptions: the entity as app.model/pk."""

    form = EntityForm
    search_fields = ("entity_id", "source__name", "medium__name")
    list_select_related = ("entity_type", "source", "medium")
    date_hierarchy = "created_at"

    @admin.display(description="entity", ordering="entity_id")
    def entity(self, row: Subscription | Unsubscription) -> str:
        return _entity(row.entity_type, row.entity_id)


@admin.register(Subscription)
class SubscriptionAdmin(EntityAdmin):
    list_display = (
        "entity",
        "sub_entity_type",
        "source",
        "medium",
        "only_following",
        "created_at",
    )
    list_filter = ("medium", "source", "only_following", "entity_type")


@admin.register(Unsubscription)
class UnsubscriptionAdmin(EntityAdmin):
    list_display = ("entity", "source", "medium", "created_at")
    list_filter = ("medium", "source", "entity_type")


class EventActorInline(admin.TabularInline):
    model = EventActor
    extra = 0
    can_delete = False
    fields = ("actor",)
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="actor")
    def actor(self, row: EventActor) -> str:
        return _entity(row.entity_type, row.entity_id)


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    """Stored subscription events: read-only (they come from received events)."""

    list_display = (
        "event_id",
        "source",
        "event_source",
        "subject",
        "time",
        "expires_at",
    )
    list_filter = ("source",)
    search_fields = ("event_id", "event_source", "subject")
    date_hierarchy = "time"
    list_select_related = ("source",)
    readonly_fields = [field.name for field in Event._meta.fields]
    inlines = [EventActorInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # rows come from received events

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # viewing only; deleting (purging) stays allowed


class ContextRendererForm(forms.ModelForm):
    """Templates that load and compile, usable hints, a source or a group."""

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if (cleaned.get("source") is None) == (cleaned.get("source_group") is None):
            raise forms.ValidationError("Choose a source or a source group (one).")
        for kind in ("text", "html"):
            if cleaned.get(f"{kind}_template_path") and cleaned.get(f"{kind}_template"):
                self.add_error(
                    f"{kind}_template",
                    f"Give a {kind} template path or an inline {kind} template, "
                    "not both.",
                )
        candidate = ContextRenderer(
            **{
                name: cleaned.get(name, default)
                for name, default in (
                    ("text_template_path", ""),
                    ("html_template_path", ""),
                    ("text_template", ""),
                    ("html_template", ""),
                    ("context_hints", {}),
                )
            }
        )
        for field, problems in rendering.renderer_problems(candidate).items():
            if field in cleaned:
                for problem in problems:
                    self.add_error(field, problem)
        return cleaned


class ContextRendererInline(admin.StackedInline):
    model = ContextRenderer
    form = ContextRendererForm
    extra = 0
    fields = (
        "name",
        ("source", "source_group"),
        ("text_template_path", "html_template_path"),
        "text_template",
        "html_template",
        "context_hints",
    )


@admin.register(RenderingStyle)
class RenderingStyleAdmin(admin.ModelAdmin):
    list_display = ("name", "display_name")
    search_fields = ("name", "display_name")
    prepopulated_fields = {"name": ("display_name",)}
    inlines = [ContextRendererInline]
