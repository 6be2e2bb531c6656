"""The transactional outbox: one row per event, written in the caller's transaction."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Self

from django.db import connections, models, router, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from ..redact import redact
from . import _outbox_sql


class Status(models.TextChoices):
    """Where a row is: waiting (or retrying), delivered, or parked for good."""

    PENDING = "pending", "pending"
    DELIVERED = "delivered", "delivered"
    PARKED = "parked", "parked (dead-lettered)"


class OutboxEventQuerySet(models.QuerySet["OutboxEvent"]):
    """The relay's statements: claim rows, mark them delivered or failed, renew
    or release the claim.

    A claim is a lease: the rows it takes carry its token (``locked_by``) until
    ``locked_until``. Every other method acts only on rows the claim still holds
    (``held``): once the lease ran out and another relay took a row, it is not
    this claim's to record. Use them on ``OutboxEvent.objects.using(alias)``;
    the methods that take rows also update those instances as they update the
    database.
    """

    def due(self, now: datetime) -> Self:
        """Pending rows whose next attempt is due and that no live lease holds."""
        return self.filter(status=Status.PENDING, next_attempt_at__lte=now).filter(
            Q(locked_until__isnull=True) | Q(locked_until__lt=now)
        )

    def held(self, token: str, rows: Sequence[OutboxEvent] | None = None) -> Self:
        """Pending rows (only ``rows``, if given) while claim ``token`` holds them."""
        among = {} if rows is None else {"pk__in": [row.pk for row in rows]}
        return self.filter(**among, locked_by=token, status=Status.PENDING)

    def claim(
        self,
        token: str,
        *,
        limit: int,
        lease: float,
        ids: Iterable[int] | None = None,
    ) -> list[OutboxEvent]:
        """Lease up to ``limit`` due rows (among ``ids``) to ``token``, for ``lease``
        seconds; the rows in id order.

        A row is taken only if every earlier pending row with the same subject
        is taken too (a later change never overtakes an earlier one); a subject
        whose earlier row waits (a retry, a live lease) is passed over, not
        counted against ``limit``. On PostgreSQL the claim skips rows another
        claim is taking (``FOR UPDATE SKIP LOCKED``), and takes a row whose claim
        was tied (``tie()``) to a database session that has ended, lease or not;
        everywhere, a conditional UPDATE makes it exclusive. Filters on this
        queryset are not applied: narrow with ``ids``.
        """
        alias = self._alias()
        wanted = None if ids is None else list(ids)
        connection = connections[alias]
        if connection.vendor in ("postgresql", "sqlite") and (
            connection.features.can_return_columns_from_insert  # and from UPDATE
        ):
            return self._claim_in_one_statement(token, wanted, limit, lease)
        chosen = self._claim_portably(token, wanted, limit, lease)
        if not chosen:
            return []
        rows = self.model._default_manager.using(alias)
        return list(rows.filter(pk__in=chosen, locked_by=token).order_by("pk"))

    @staticmethod
    def ties_claims(alias: str) -> bool:
        """True where ``tie()`` ties claims to the session (PostgreSQL, not behind
        a transaction-pooling PgBouncer: ``_outbox_sql.session_locks``)."""
        return _outbox_sql.session_locks(alias)

    def tie(self, token: str) -> str:
        """``token`` tied to this thread's database session (PostgreSQL): a claim
        made with it is free for the next claim as soon as the session ends (the
        process died), not only when its lease runs out. See ``_outbox_sql.tie``.
        """
        return _outbox_sql.tie(self._alias(), token)

    def _claim_in_one_statement(
        self, token: str, ids: list[int] | None, limit: int, lease: float
    ) -> list[OutboxEvent]:
        """The claim as one UPDATE ... RETURNING the rows (one round trip)."""
        if ids == []:
            return []
        now = timezone.now()
        until = now + timedelta(seconds=lease)
        return _outbox_sql.claim(self._alias(), token, ids, limit, now, until)

    def _claim_portably(
        self, token: str, ids: list[int] | None, limit: int, lease: float
    ) -> list[int]:
        """In a transaction: SELECT (FOR UPDATE), then a conditional UPDATE.

        As the one-statement claim, but a claim's lease is all that holds its
        rows (it is used where ``tie()`` does nothing).
        """
        now = timezone.now()
        alias = self._alias()
        rows = self.model._default_manager.using(alias)
        due = rows.due(now)
        if ids is not None:
            due = due.filter(pk__in=ids)
        # An earlier pending row of the subject that is not due: passed over
        # before the LIMIT, so a waiting subject does not fill the batch.
        waiting = rows.filter(
            Q(next_attempt_at__gt=now) | Q(locked_until__gte=now),
            status=Status.PENDING,
            subject=OuterRef("subject"),
            pk__lt=OuterRef("pk"),
        )
        with transaction.atomic(using=alias):
            candidates = due.filter(Q(subject="") | ~Exists(waiting)).order_by("pk")
            if connections[alias].features.has_select_for_update_skip_locked:
                candidates = candidates.select_for_update(skip_locked=True)
            found = list(candidates.values_list("pk", "subject")[:limit])
            chosen = _outbox_sql.in_subject_order(found, self._pending_before(found))
            if chosen:
                # Conditional: a row another relay took meanwhile is not taken twice.
                due.filter(pk__in=chosen).update(
                    locked_by=token, locked_until=now + timedelta(seconds=lease)
                )
        return chosen

    def _pending_before(self, found: list[tuple[int, str]]) -> dict[str, list[int]]:
        """For each subject in ``found``, the pending row ids before its last row."""
        last: dict[str, int] = {}
        for pk, subject in found:
            if subject:
                last[subject] = pk
        if not last:
            return {}
        earlier = (
            self.model._default_manager.using(self._alias())
            .filter(
                status=Status.PENDING,
                subject__in=list(last),
                pk__lt=max(last.values()),
            )
            .values_list("pk", "subject")
        )
        pending: dict[str, list[int]] = defaultdict(list)
        for pk, subject in earlier:
            pending[subject].append(pk)
        return pending

    def mark_delivered(self, rows: Sequence[OutboxEvent]) -> int:
        """Record rows of one claim as delivered, in one UPDATE.

        Returns how many the claim still held: the others' lease ran out, and
        another relay may send them again.
        """
        if not rows:
            return 0
        now = timezone.now()
        alias, token = self._alias(), rows[0].locked_by
        if _outbox_sql.ids_as_one_parameter(alias):
            updated = _outbox_sql.mark_delivered(alias, rows, token, now)
        else:
            updated = self.held(token, rows).update(
                status=Status.DELIVERED,
                delivered_at=now,
                attempts=F("attempts") + 1,
                locked_until=None,
                last_error="",
            )
        for row in rows:
            row.status, row.delivered_at = Status.DELIVERED, now
            row.attempts += 1
            row.locked_until, row.last_error = None, ""
        return updated

    def mark_failed(
        self, row: OutboxEvent, reason: str, retry_at: datetime | None
    ) -> bool:
        """Record a failed attempt: pending again from ``retry_at``, or parked
        (dead-lettered) if that is None.

        False, and nothing recorded, if the claim no longer holds the row.
        """
        park = retry_at is None
        changes = {
            "attempts": row.attempts + 1,
            "last_error": redact(reason)[:2000],  # a handler's words: no credential
            "locked_until": None,
            "status": Status.PARKED if park else Status.PENDING,
            "next_attempt_at": timezone.now() if retry_at is None else retry_at,
        }
        if not self.held(row.locked_by, [row]).update(**changes):
            return False  # the lease ran out: the row is another relay's now
        for name, value in changes.items():  # what signal receivers see
            setattr(row, name, value)
        return True

    def renew(self, rows: Sequence[OutboxEvent], lease: float) -> None:
        """Extend the lease on rows of one claim to ``lease`` seconds from now.

        A row the claim lost (another relay took it over) is not extended, and
        its ``locked_until`` becomes None: senders check it before each chunk.
        """
        until = timezone.now() + timedelta(seconds=lease)
        token = rows[0].locked_by
        owned = set(self.held(token, rows).values_list("pk", flat=True))
        self.held(token, [row for row in rows if row.pk in owned]).update(
            locked_until=until
        )
        for row in rows:
            row.locked_until = until if row.pk in owned else None

    def release(self) -> int:
        """Give these rows back to the next claim now, not when the lease ends.

        Use it on ``held()`` rows: for rows the claim never tried.
        """
        return self.update(locked_until=None)

    def _alias(self) -> str:
        """The database written to: ``using()``'s, else the router's for writes
        (as ``update()`` picks it; ``self.db`` would be the one for reads)."""
        hints = self._hints  # type: ignore[attr-defined]
        return self._db or router.db_for_write(self.model, **hints)  # type: ignore[attr-defined]


class OutboxEvent(models.Model):
    """A CloudEvent waiting for (or done with) delivery by the relay."""

    Status = Status

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

    objects = OutboxEventQuerySet.as_manager()

    class Meta:
        verbose_name = "outbox event"
        ordering = ["id"]
        # Partial indexes: a claim reads only pending rows, however many delivered
        # rows the retention keeps.
        indexes = [
            models.Index(
                fields=["id"],
                condition=models.Q(status=Status.PENDING),
                name="dce_outbox_pending",
            ),
            models.Index(
                fields=["subject", "id"],
                condition=models.Q(status=Status.PENDING),
                name="dce_outbox_pending_subject",
            ),
            # Also partial, so a save() writes no entry in them: one for the
            # retention sweep, one for the admin's and the command's parked rows.
            models.Index(
                fields=["delivered_at"],
                condition=models.Q(status=Status.DELIVERED),
                name="dce_outbox_delivered",
            ),
            models.Index(
                fields=["id"],
                condition=models.Q(status=Status.PARKED),
                name="dce_outbox_parked",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}"
