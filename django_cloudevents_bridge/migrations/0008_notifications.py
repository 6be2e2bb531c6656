"""Notifications: the delivery ledger (one row per event, recipient and channel)."""

import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("django_cloudevents_bridge", "0007_watches"),
    ]

    operations = [
        migrations.CreateModel(
            name="Delivery",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True,
                        primary_key=True,
                        serialize=False,
                        verbose_name="ID",
                    ),
                ),
                ("key", models.CharField(editable=False, max_length=64)),
                ("source", models.CharField(max_length=1024)),
                ("event_id", models.CharField(max_length=255, verbose_name="event id")),
                (
                    "event_type",
                    models.CharField(
                        blank=True, max_length=255, verbose_name="event type"
                    ),
                ),
                ("recipient", models.CharField(max_length=320)),
                ("channel", models.CharField(max_length=100)),
                ("message", models.JSONField()),
                ("reasons", models.JSONField(blank=True, default=list)),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("pending", "pending"),
                            ("sent", "sent"),
                            ("failed", "failed"),
                            ("parked", "parked"),
                        ],
                        default="pending",
                        max_length=10,
                    ),
                ),
                ("attempts", models.PositiveIntegerField(default=0)),
                ("next_attempt_at", models.DateTimeField(blank=True, null=True)),
                ("last_error", models.TextField(blank=True)),
                (
                    "unsubscribe_digest",
                    models.CharField(blank=True, editable=False, max_length=64),
                ),
                ("unsubscribed_at", models.DateTimeField(blank=True, null=True)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("updated_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("sent_at", models.DateTimeField(blank=True, null=True)),
            ],
            options={
                "verbose_name": "notification delivery",
                "verbose_name_plural": "notification deliveries",
                "ordering": ["-id"],
                "indexes": [
                    models.Index(
                        condition=models.Q(
                            ("status__in", ["pending", "failed"]),
                            ("next_attempt_at__isnull", False),
                        ),
                        fields=["channel", "next_attempt_at"],
                        name="dce_delivery_due",
                    ),
                    models.Index(fields=["recipient"], name="dce_delivery_recipient"),
                ],
                "constraints": [
                    models.UniqueConstraint(fields=("key",), name="dce_delivery_once")
                ],
            },
        ),
    ]
