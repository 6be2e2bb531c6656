from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db import router
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.timesince import timesince

from .emit.outbox import health, retry, waiting
from .models import (
    Delivery,
    OutboxEvent,
    ReceivedEvent,
    RelayHeartbeat,
    TargetRun,
    Watch,
)
from .models.notifications import DeliveryQuerySet


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
