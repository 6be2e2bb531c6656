"""Recording deliveries (in the caller's transaction) and sending the due ones."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta
from itertools import islice
from typing import TYPE_CHECKING, Any

from django.db import DEFAULT_DB_ALIAS, connections, router, transaction
from django.utils import timezone

from .. import conf
from ..events import CloudEvent
from .channels import PermanentFailure, get_channel

if TYPE_CHECKING:
    from ..models import Delivery
    from . import Recipient

logger = logging.getLogger("django_cloudevents_bridge")

RECIPIENT_MAX = 320  # Delivery.recipient: "email:" and the longest address
CHUNK = 200  # rows per INSERT: 15 parameters each, far below SQLite's limit


def record(
    event: CloudEvent,
    channel: str,
    items: Iterable[tuple[Recipient, Any]],
    *,
    using: str | None = None,
) -> int:
    """Write one pending delivery per (event, recipient, channel); how many were new.

    In the caller's transaction, ``CHUNK`` rows per statement (constant memory);
    rows that exist already are left alone (INSERT ... ON CONFLICT DO NOTHING),
    so a redelivery or a retry notifies nobody twice. After the commit, sending
    is enqueued (``cloudevents_worker`` sends what is due in any case).
    """
    from ..models import Delivery
    from ..models.notifications import ledger_key

    using = using or router.db_for_write(Delivery)
    sender = get_channel(channel)
    now = timezone.now()
    source, event_id = event.get_source(), event.get_id()
    event_type = event.get_type()[:255]
    new = 0
    items = iter(items)
    while chunk := list(islice(items, CHUNK)):
        rows = [
            Delivery(
                key=ledger_key(source, event_id, recipient.key, channel),
                source=source,
                event_id=event_id,
                event_type=event_type,
                recipient=recipient.key,
                channel=channel,
                message=sender.dump(message),
                reasons=list(recipient.reasons),
                next_attempt_at=now,
                created_at=now,
                updated_at=now,
            )
            for recipient, message in map(_checked, chunk)
        ]
        new += _insert(rows, using)
    if new:
        transaction.on_commit(enqueue, using=using)
    return new


def _checked(item: tuple[Recipient, Any]) -> tuple[Recipient, Any]:
    """The item, if its recipient key fits the ledger (a clear error if not)."""
    key = item[0].key
    if not key or len(key) > RECIPIENT_MAX:
        raise ValueError(f"a recipient key is 1 to {RECIPIENT_MAX} characters: {key!r}")
    return item


def _insert(rows: list[Delivery], using: str) -> int:
    """INSERT the rows, skipping those whose key exists; how many were inserted."""
    from ..models import Delivery

    connection = connections[using]
    if connection.vendor not in ("postgresql", "sqlite"):  # pragma: no cover
        # Portable, but the count is a guess under concurrency.
        keys = [row.key for row in rows]
        known = set(
            Delivery.objects.using(using)
            .filter(key__in=keys)
            .values_list("key", flat=True)
        )
        Delivery.objects.using(using).bulk_create(rows, ignore_conflicts=True)
        return len(set(keys) - known)
    fields = [f for f in Delivery._meta.concrete_fields if not f.primary_key]
    qn = connection.ops.quote_name
    columns = ", ".join(qn(str(f.column)) for f in fields)
    one = "(" + ", ".join(["%s"] * len(fields)) + ")"
    sql = (
        f"INSERT INTO {qn(Delivery._meta.db_table)} ({columns}) VALUES "
        f"{', '.join([one] * len(rows))} ON CONFLICT ({qn('key')}) DO NOTHING"
    )
    params = [
        f.get_db_prep_save(f.pre_save(row, add=True), connection)
        for row in rows
        for f in fields
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return max(cursor.rowcount, 0)


def enqueue() -> bool:
    """Hand sending to ``django.tasks``; False if not enqueued (never raises)."""
    from .. import work

    alias = work.task_backend()
    if alias is None:
        return False
    try:
        from ..tasks import send_notifications

        send_notifications.using(backend=alias).enqueue()
    except Exception as err:
        logger.warning(
            "Could not enqueue sending notifications (cloudevents_worker will "
            "send them): %s",
            err,
        )
        return False
    return True


def send_due(
    *, using: str = DEFAULT_DB_ALIAS, stop: threading.Event | None = None
) -> Counter[str]:
    """Send due deliveries, a batch per channel at a time, until none is due or
    ``stop``; count the outcomes: "sent", "failed" (due again later), "parked"."""
    from ..models import Delivery
    from ..models.notifications import due_channels

    options = conf.notifications()
    outcomes: Counter[str] = Counter()
    while stop is None or not stop.is_set():
        now = timezone.now()
        names = due_channels(using, now)
        if not names:
            break
        claimed = False
        for name in names:
            until = now + timedelta(seconds=options["LEASE"])
            batch = Delivery.objects.using(using).claim(
                name, now, until, options["BATCH"]
            )
            if batch:
                claimed = True
                outcomes += _send(name, batch, using)
        if not claimed:  # all due rows are another worker's
            break
    return outcomes


def _send(name: str, batch: list[Delivery], using: str) -> Counter[str]:
    """Send one claimed batch through its channel, recording each outcome."""

    counted: Counter[str] = Counter()
    try:
        outcomes = iter(get_channel(name).send(batch))
    except Exception as err:  # no such channel (any more): each row fails
        outcomes = iter([(delivery, err) for delivery in batch])
    left = {delivery.pk: delivery for delivery in batch}
    for delivery, error in outcomes:
        left.pop(delivery.pk, None)
        counted[_outcome(delivery, error, using)] += 1
    for delivery in left.values():  # a channel that skipped some: retried
        counted[_outcome(delivery, RuntimeError("not sent by its channel"), using)] += 1
    return counted


def _outcome(delivery: Delivery, error: BaseException | None, using: str) -> str:
    """Record one outcome: sent, or failed (retried after a backoff), or parked."""
    from .. import work
    from ..models import Delivery

    deliveries = Delivery.objects.using(using)
    if error is None:
        deliveries.sent(delivery)
        return "sent"
    attempts = delivery.attempts + 1
    at: datetime | None = timezone.now() + work.backoff(attempts, conf.notifications())
    status = Delivery.Status.FAILED
    if isinstance(error, PermanentFailure) or (
        attempts >= conf.notifications()["MAX_ATTEMPTS"]
    ):
        status, at = Delivery.Status.PARKED, None
    logger.warning(
        "Notification %s (%s to %s) failed, attempt %d: %s; %s",
        delivery.pk,
        delivery.channel,
        delivery.recipient,
        attempts,
        error,
        status,
    )
    deliveries.failed(delivery, error, status, at)
    return str(status)
