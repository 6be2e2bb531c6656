"""``manage.py cloudevents_backlog``: deferred work waiting, as a probe.

Prints how many deferred target runs wait (due now or later), have failed and
wait for a retry, or are parked or rejected, and the age of the oldest waiting
one, and how long the longest-due one has waited for a worker; exits non-zero
past ``--max-age``, ``--max-parked`` or ``--max-overdue`` (for probes and alerts).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Count, Min
from django.utils import timezone

from ...models import TargetRun

Status = TargetRun.Status


class Command(BaseCommand):
    help = (
        "Print the deferred target runs waiting, failed, parked and rejected, and "
        "the oldest waiting one's age; exit 1 past --max-age, --max-parked or "
        "--max-overdue."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--max-age", type=float, help="fail if a run waits longer (seconds)"
        )
        parser.add_argument(
            "--max-parked", type=int, help="fail if more runs are parked or rejected"
        )
        parser.add_argument(
            "--max-overdue",
            type=float,
            help="fail if a run has been due this long (seconds) and no worker "
            "took it (retries waiting for their backoff are not overdue)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        deferred = TargetRun.objects.exclude(status=Status.DONE).filter(
            next_attempt_at__isnull=False
        ) | TargetRun.objects.filter(status__in=[Status.PARKED, Status.REJECTED])
        counts = dict(deferred.values_list("status").annotate(n=Count("id")).order_by())
        oldest = deferred.filter(status__in=[Status.PENDING, Status.FAILED]).aggregate(
            at=Min("event__received_at")
        )["at"]
        now = timezone.now()
        age = (now - oldest).total_seconds() if oldest else 0.0
        due_since = deferred.filter(
            status__in=[Status.PENDING, Status.FAILED], next_attempt_at__lte=now
        ).aggregate(at=Min("next_attempt_at"))["at"]
        overdue = (now - due_since).total_seconds() if due_since else 0.0
        self.stdout.write(
            ", ".join(
                f"{status} {counts.get(status, 0)}"
                for status in Status.values
                if status != Status.DONE
            )
            + f"; oldest waiting {age:.0f}s, due for {overdue:.0f}s"
        )
        parked = counts.get(Status.PARKED, 0) + counts.get(Status.REJECTED, 0)
        if options["max_age"] is not None and age > options["max_age"]:
            raise CommandError(f"a run has waited {age:.0f}s")
        if options["max_parked"] is not None and parked > options["max_parked"]:
            raise CommandError(f"{parked} run(s) parked or rejected")
        if options["max_overdue"] is not None and overdue > options["max_overdue"]:
            raise CommandError(f"a run has been due for {overdue:.0f}s: no worker")
