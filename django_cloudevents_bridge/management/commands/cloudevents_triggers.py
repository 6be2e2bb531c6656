"""``manage.py cloudevents_triggers``: Knative Triggers for this project's handlers."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ... import catalogue


class Command(BaseCommand):
    help = (
        "Print Knative Triggers whose filters deliver to this service what its group "
        "handlers and named events handle: one declaration for cluster routing and "
        "in-process dispatch. YAML (with a comment per Trigger) when PyYAML is "
        "installed, else a JSON List."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--service", required=True, help="the Knative Service that receives"
        )
        parser.add_argument("--broker", default="default", help="default: %(default)s")
        parser.add_argument("--namespace", help="metadata.namespace of each Trigger")
        parser.add_argument(
            "--path", default="/cloudevents/", help="the receiver's path (%(default)s)"
        )
        parser.add_argument(
            "--format",
            choices=("yaml", "json"),
            help="default: yaml when PyYAML is installed, else json",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        found = catalogue.triggers(
            broker=options["broker"],
            service=options["service"],
            path=options["path"],
            namespace=options["namespace"],
        )
        wanted = options["format"] or ("yaml" if _has_yaml() else "json")
        if wanted == "json":
            items = [trigger for trigger, _ in found]
            listing = {"apiVersion": "v1", "kind": "List", "items": items}
            self.stdout.write(json.dumps(listing, indent=2))
            return
        try:
            import yaml
        except ImportError as err:
            raise CommandError("--format yaml needs PyYAML installed") from err
        for trigger, note in found:
            self.stdout.write("---")
            if note:
                self.stdout.write(f"# {note}")
            self.stdout.write(yaml.safe_dump(trigger, sort_keys=False), ending="")


def _has_yaml() -> bool:
    """True if PyYAML can be imported (it is no dependency of the bridge)."""
    try:
        import yaml  # noqa: F401
    except ImportError:
        return False
    return True
