"""``manage.py cloudevents_outbox stats|retry|purge``: operate the outbox."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS

from ...emit.outbox import prune, retry, stats
from ...models import OutboxEvent


class Command(BaseCommand):
    help = "Outbox operations: stats, retry parked events, purge delivered ones."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS)
        actions = parser.add_subparsers(dest="action", required=True)
        show = actions.add_parser(
            "stats", help="counts per status, oldest pending age, last relay seen"
        )
        show.add_argument("--json", action="store_true", help="print JSON")
        retry = actions.add_parser(
            "retry", help="make parked events pending again (all, or by filter)"
        )
        retry.add_argument("--type", help="only this event type")
        retry.add_argument("--subject", help="only this subject")
        retry.add_argument("--id", action="append", help="only this event id")
        purge = actions.add_parser("purge", help="delete delivered events")
        purge.add_argument(
            "--days", type=float, help="older than this (default: the retention)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        using = options["database"]
        if options["action"] == "stats":
            result = stats(using)
            if options["json"]:
                self.stdout.write(json.dumps(result))
            else:
                for key, value in result.items():
                    if key != "waiting_without_relay":
                        self.stdout.write(f"{key}: {value}")
                if result["waiting_without_relay"]:
                    self.stderr.write(f"warning: {result['waiting_without_relay']}")
        elif options["action"] == "retry":
            rows = OutboxEvent.objects.using(using).filter(
                status=OutboxEvent.Status.PARKED
            )
            for field, option in (("type", "type"), ("subject", "subject")):
                if options[option]:
                    rows = rows.filter(**{field: options[option]})
            if options["id"]:
                # The column keeps an id's first 255 characters (the event, all).
                rows = rows.filter(event_id__in=[i[:255] for i in options["id"]])
            count = retry(rows)
            self.stdout.write(f"{count} event(s) pending again")
        else:
            days = options["days"]
            if days is not None and days < 0:
                raise CommandError("--days must not be negative")
            deleted = prune(using, None if days is None else days * 86400)
            self.stdout.write(f"{deleted} delivered event(s) deleted")
