"""Take credentials out of errors recorded before they were redacted.

``OutboxEvent.last_error`` held the first 200 characters of a sink's error page, so
a sink that echoed the request stored its ``Authorization: Bearer <OIDC token>``;
``TargetRun.error`` holds a target's exception message. Both go through the same
``redact()`` that new errors go through (the exact credentials are not known
here: its patterns are).
"""

from typing import Any

from django.db import migrations

from django_cloudevents_bridge.redact import redact

BATCH = 500


def redact_errors(apps: Any, schema_editor: Any) -> None:
    alias = schema_editor.connection.alias
    for model, field in (("OutboxEvent", "last_error"), ("TargetRun", "error")):
        manager = apps.get_model("django_cloudevents_bridge", model)._default_manager
        rows = manager.using(alias).exclude(**{field: ""}).order_by("pk")
        last = None
        while True:  # in pages by primary key: no cursor open across the updates
            page = list(
                (rows if last is None else rows.filter(pk__gt=last)).only("pk", field)[
                    :BATCH
                ]
            )
            if not page:
                break
            last = page[-1].pk
            changed = []
            for row in page:
                text = getattr(row, field)
                if redact(text) != text:
                    setattr(row, field, redact(text))
                    changed.append(row)
            manager.using(alias).bulk_update(changed, [field])


class Migration(migrations.Migration):
    dependencies = [
        ("django_cloudevents_bridge", "0002_partial_indexes_and_replies"),
    ]

    operations = [
        migrations.RunPython(redact_errors, migrations.RunPython.noop, elidable=True),
    ]
