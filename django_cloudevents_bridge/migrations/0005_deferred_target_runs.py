"""Deferred processing (work.py): when a target run is due, and parked runs."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("django_cloudevents_bridge", "0004_relay_heartbeat"),
    ]

    operations = [
        migrations.AddField(
            model_name="targetrun",
            name="next_attempt_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="targetrun",
            name="status",
            field=models.CharField(
                choices=[
                    ("pending", "pending"),
                    ("done", "done"),
                    ("failed", "failed"),
                    ("parked", "parked"),
                    ("rejected", "rejected"),
                ],
                default="pending",
                max_length=10,
            ),
        ),
        migrations.AddIndex(
            model_name="targetrun",
            index=models.Index(
                condition=models.Q(
                    ("status__in", ["pending", "failed"]),
                    ("next_attempt_at__isnull", False),
                ),
                fields=["next_attempt_at"],
                name="dce_target_due",
            ),
        ),
    ]
