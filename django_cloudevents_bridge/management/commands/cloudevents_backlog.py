"""``manage.py cloudevents_backlog``: deferred work waiting, as a probe.

Prints how many deferred target runs wait (due now or later), have failed and
wait for a retry, or are parked or rejected, and the age of the oldest waiting
one; exits non-zero past ``--max-age`` or ``--max-parked`` (for liveness probes
and alerts).
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
        "the oldest waiting one's age; exit 1 past --max-age or --max-parked."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--max-age", type=float, help="fail if a run waits longer (seconds)"
        )
        parser.add_argument(
            "--max-parked", type=int, help="fail if more runs are parked or rejected"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        deferred = TargetRun.objects.exclude(status=Status.DONE).filter(
            next_attempt_at__isnull=False
        ) | TargetRun.objects.filter(status__in=[Status.PARKED, Status.REJECTED])
        counts = dict(deferred.values_list("status").annotate(n=Count("id")).order_by())
        oldest = deferred.filter(status__in=[Status.PENDING, Status.FAILED]).aggregate(
            at=Min("event__received_at")
        )["at"]
        age = (timezone.now() - oldest).total_seconds() if oldest else 0.0
        self.stdout.write(
            ", ".join(
                f"{status} {counts.get(status, 0)}"
                for status in Status.values
                if status != Status.DONE
            )
            + f"; oldest waiting {age:.0f}s"
        )
        parked = counts.get(Status.PARKED, 0) + counts.get(Status.REJECTED, 0)
        if options["max_age"] is not None and age > options["max_age"]:
            raise CommandError(f"a run has waited {age:.0f}s")
        if options["max_parked"] is not None and parked > options["max_parked"]:
            raise CommandError(f"{parked} run(s) parked or rejected")
