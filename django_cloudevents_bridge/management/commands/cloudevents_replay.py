"""``manage.py cloudevents_replay``: dispatch stored received events again.

By default only the targets that have not succeeded (failed or pending) run,
e.g. after a handler bug is fixed. ``--all-targets`` runs every target again,
done ones included, and needs a filter so a typo cannot replay everything.
"""

from __future__ import annotations

from argparse import ArgumentTypeError
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from ...bindings import jsonformat
from ...models import ReceivedEvent, TargetRun
from ...receive import dispatch
from ...targets import targets_for

NOT_DONE = (
    TargetRun.Status.FAILED,
    TargetRun.Status.PENDING,
    TargetRun.Status.PARKED,  # deferred mode's, after their attempts
    TargetRun.Status.REJECTED,
)


def when(text: str) -> datetime:
    """An ISO 8601 date or datetime; naive means the current time zone."""
    try:
        parsed = parse_datetime(text)  # a date alone is midnight
    except ValueError:  # well formed but impossible, e.g. 2026-02-30
        parsed = None
    if parsed is None:
        raise ArgumentTypeError(f"not an ISO 8601 date or datetime: {text!r}")
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed)
    return parsed


class Command(BaseCommand):
    help = (
        "Dispatch stored received events again: to their failed or pending "
        "targets, or to all targets with --all-targets."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--id", action="append", dest="ids", help="event id (repeatable)"
        )
        parser.add_argument(
            "--type", action="append", dest="types", help="event type (repeatable)"
        )
        parser.add_argument("--source", help="only events from this source")
        parser.add_argument(
            "--since", type=when, help="received at or after (ISO 8601)"
        )
        parser.add_argument("--until", type=when, help="received before (ISO 8601)")
        parser.add_argument(
            "--all-targets",
            action="store_true",
            help="run every target again, including those already done",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="list the events, run nothing"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        filtered = any(
            options[name] for name in ("ids", "types", "source", "since", "until")
        )
        if options["all_targets"] and not filtered:
            raise CommandError(
                "--all-targets needs --id, --type, --source, --since or --until"
            )
        rows = self.select(options)
        if not options["all_targets"]:
            rows = rows.filter(targets__status__in=NOT_DONE).distinct()
        ran = failed = replayed = 0
        # Primary keys first: no cursor stays open while dispatch writes.
        pks = list(rows.order_by("received_at", "id").values_list("pk", flat=True))
        for pk in pks:
            stored = ReceivedEvent.objects.get(pk=pk)
            replayed += 1
            label = f"{stored.type} {stored.event_id} ({stored.source})"
            if options["dry_run"]:
                self.stdout.write(f"would replay {label}")
                continue
            event = jsonformat.from_json(stored.event)
            if options["all_targets"]:
                names = [target.name for target in targets_for(event)]
                stored.targets.filter(target__in=names).update(
                    status=TargetRun.Status.PENDING, updated_at=timezone.now()
                )
            report = dispatch.deliver(event)
            ran += len(report.ran)
            failed += len(report.failed)
            for name in report.failed:
                self.stderr.write(f"{label}: {name} failed again")
        if options["dry_run"]:
            self.stdout.write(f"{replayed} event(s) would be replayed")
            return
        self.stdout.write(
            f"{replayed} event(s) replayed: {ran} target run(s) done, {failed} failed"
        )
        if failed:
            raise CommandError(f"{failed} target run(s) still failing")

    def select(self, options: dict[str, Any]) -> QuerySet[ReceivedEvent]:
        rows = ReceivedEvent.objects.all()
        if options["ids"]:
            rows = rows.filter(event_id__in=options["ids"])
        if options["types"]:
            rows = rows.filter(type__in=options["types"])
        if options["source"]:
            rows = rows.filter(source=options["source"])
        if options["since"]:
            rows = rows.filter(received_at__gte=options["since"])
        if options["until"]:
            rows = rows.filter(received_at__lt=options["until"])
        return rows
