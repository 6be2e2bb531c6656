"""``manage.py cloudevents_eventtypes``: the project's events as Knative EventTypes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ... import catalogue


class Command(BaseCommand):
    help = (
        "Print Knative EventType resources for every event type this project emits "
        "that is known statically (CLOUDEVENTS_MODELS, named events, --reply-type), "
        "as a JSON List for `kubectl apply -f -` (or YAML with --format yaml)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--broker", default="default", help="default: %(default)s")
        parser.add_argument("--namespace", help="metadata.namespace of each resource")
        parser.add_argument(
            "--api-version",
            choices=catalogue.VERSIONS,
            default="v1beta3",
            help="EventType API version (default: %(default)s; v1beta2 carries "
            "the JSON Schema of the data inline)",
        )
        parser.add_argument("--source", help="the events' source (default: ours)")
        parser.add_argument(
            "--reply-type",
            action="append",
            default=[],
            metavar="TYPE",
            help="a type the project's handlers reply with (repeatable)",
        )
        parser.add_argument(
            "--schema-url",
            help="base URL the JSON Schemas are served from: named as dataschema",
        )
        parser.add_argument(
            "--schemas-dir", help="write each data JSON Schema to DIR/<name>.json"
        )
        parser.add_argument("--format", choices=("json", "yaml"), default="json")

    def handle(self, *args: Any, **options: Any) -> None:
        kinds = catalogue.collect(options["reply_type"])
        resources = catalogue.event_types(
            kinds,
            version=options["api_version"],
            broker=options["broker"],
            namespace=options["namespace"],
            source=options["source"],
            schema_url=options["schema_url"],
        )
        if options["schemas_dir"]:
            directory = Path(options["schemas_dir"])
            directory.mkdir(parents=True, exist_ok=True)
            for name, schema in catalogue.schema_files(kinds).items():
                text = json.dumps(schema, indent=2, sort_keys=True) + "\n"
                (directory / name).write_text(text, encoding="utf-8")
        if options["format"] == "yaml":
            try:
                import yaml
            except ImportError as err:
                raise CommandError("--format yaml needs PyYAML installed") from err
            self.stdout.write(yaml.safe_dump_all(resources, sort_keys=False), ending="")
        else:
            listing = {"apiVersion": "v1", "kind": "List", "items": resources}
            self.stdout.write(json.dumps(listing, indent=2))
