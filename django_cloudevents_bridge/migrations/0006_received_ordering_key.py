"""Per-key ordering of deferred runs (CLOUDEVENTS_RECEIVER["ORDERING"]): the key."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("django_cloudevents_bridge", "0005_deferred_target_runs"),
    ]

    operations = [
        migrations.AddField(
            model_name="receivedevent",
            name="ordering_key",
            field=models.CharField(blank=True, default="", max_length=64),
        ),
        migrations.AddIndex(
            model_name="receivedevent",
            index=models.Index(
                condition=models.Q(("ordering_key", ""), _negated=True),
                fields=["ordering_key", "id"],
                name="dce_received_key",
            ),
        ),
    ]
