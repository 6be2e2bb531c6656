"""Record each received event once per (source, id), and each target's run."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from .. import events
from ..events import CloudEvent
from ..models import ReceivedEvent, TargetRun
from .parse import BadEvent


def check(event: CloudEvent) -> None:
    """Raise BadEvent if the (source, id) key does not fit the store's columns.

    A 400 the sender can dead-letter, not the database error (PostgreSQL) that
    would answer 503 and be retried for ever.
    """
    for attribute, column in (("source", "source"), ("id", "event_id")):
        limit = _max_length(column)
        if limit is not None and len(event.get_attributes()[attribute]) > limit:
            raise BadEvent(f"{attribute} longer than {limit} characters")


def _max_length(column: str) -> int | None:
    return getattr(ReceivedEvent._meta.get_field(column), "max_length", None)


def _clip(column: str, value: str) -> str:
    """Shortened to the column (informational columns only; the event is whole)."""
    limit = _max_length(column)
    return value[:limit] if limit is not None else value


def _count_delivery(stored: ReceivedEvent) -> None:
    ReceivedEvent.objects.filter(pk=stored.pk).update(deliveries=F("deliveries") + 1)


def record(event: CloudEvent, target_names: Sequence[str]) -> ReceivedEvent:
    """The stored event (created on first delivery) with a run row per target."""
    key = {"source": event.get_source(), "event_id": event.get_id()}
    stored = ReceivedEvent.objects.filter(**key).first()
    if stored is None:
        try:
            with transaction.atomic():
                stored = ReceivedEvent.objects.create(
                    **key,
                    type=_clip("type", event.get_type()),
                    subject=_clip("subject", event.get_subject() or ""),
                    event=events.to_json(event).decode(),
                )
        except IntegrityError:  # a concurrent delivery of the same event won
            stored = ReceivedEvent.objects.get(**key)
            _count_delivery(stored)
    else:
        _count_delivery(stored)
    TargetRun.objects.bulk_create(
        [TargetRun(event=stored, target=name) for name in target_names],
        ignore_conflicts=True,
    )
    return stored


def claim(stored: ReceivedEvent, target: str) -> bool:
    """Inside a transaction: lock this target's run; True if it still owes work.

    The UPDATE takes the row lock (PostgreSQL) or the write lock (SQLite) before
    the status is read, so a concurrent delivery of the same event waits here and
    then sees "done".
    """
    runs = TargetRun.objects.filter(event=stored, target=target)
    runs.update(updated_at=timezone.now())
    return runs.exclude(status=TargetRun.Status.DONE).exists()


def done(stored: ReceivedEvent, target: str) -> None:
    TargetRun.objects.filter(event=stored, target=target).update(
        status=TargetRun.Status.DONE,
        attempts=F("attempts") + 1,
        error="",
        updated_at=timezone.now(),
    )


def fail(stored: ReceivedEvent, target: str, error: BaseException) -> None:
    TargetRun.objects.filter(event=stored, target=target).update(
        status=TargetRun.Status.FAILED,
        attempts=F("attempts") + 1,
        error=f"{type(error).__name__}: {error}"[:2000],
        updated_at=timezone.now(),
    )
