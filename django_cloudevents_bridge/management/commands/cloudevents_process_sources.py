"""``manage.py cloudevents_process_sources``: every instance through its sources.

django-spark's ``process_spark_sources``: events that depend on time (``ends in
two days``) appear without a save, so run this periodically. Keys already
processed are not processed again.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, models, transaction

from ...emit import emit
from ...targets import groups


class Command(BaseCommand):
    help = (
        "Send every instance of the models registered with "
        "register_model_event_source() through their sources, in batches."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--model",
            action="append",
            metavar="APP_LABEL.MODEL",
            help="only this registered model (repeatable)",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=500,
            help="instances per batch; each batch is emitted in one transaction",
        )
        parser.add_argument(
            "--process",
            action="store_true",
            help="dispatch new events in this process instead of emitting them",
        )
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS)

    def handle(self, *args: Any, **options: Any) -> None:
        size = options["batch_size"]
        if size < 1:
            raise CommandError("--batch-size must be at least 1")
        selected = self.models(options["model"])
        using = options["database"]
        instances = sent = 0
        for model in selected:
            for batch in batches(model, size, using):
                found = [
                    e for instance in batch for e in groups.from_instance(instance)
                ]
                instances += len(batch)
                if options["process"]:
                    new = list(groups.only_new_events(found))
                    groups.process_events(new)
                    sent += len(new)
                elif found:
                    with transaction.atomic(using=using):
                        emit(found, using=using)
                    sent += len(found)
        verb = "processed" if options["process"] else "emitted"
        self.stdout.write(
            f"{len(selected)} model(s), {instances} instance(s), {sent} event(s) {verb}"
        )

    def models(self, labels: list[str] | None) -> list[type[models.Model]]:
        registered = list(groups.MODEL_SOURCES)
        if not labels:
            return registered
        chosen = []
        for label in labels:
            try:
                model = apps.get_model(label)
            except (LookupError, ValueError):
                raise CommandError(f"unknown model {label!r}") from None
            if model not in registered:
                raise CommandError(f"{label} has no registered event source")
            chosen.append(model)
        return chosen


def batches(
    model: type[models.Model], size: int, using: str
) -> Iterator[list[models.Model]]:
    """The model's instances in primary-key order, ``size`` at a time.

    Keyset pagination rather than OFFSET or a server-side cursor: each batch is
    one short indexed query, and no cursor stays open across the transactions.
    """
    rows = model._default_manager.using(using).order_by("pk")
    last: Any = None
    while True:
        page = rows if last is None else rows.filter(pk__gt=last)
        batch = list(page[:size])
        if not batch:
            return
        yield batch
        last = batch[-1].pk
