"""Registers deferred mode's test targets in worker subprocesses (relay_settings)."""

from django.apps import AppConfig


class WorkerAppConfig(AppConfig):
    name = "tests.workerapp"
    label = "workerapp"

    def ready(self) -> None:
        from django_cloudevents_bridge import register_group_handler
        from tests import deferred_targets

        register_group_handler(deferred_targets.slow, group=deferred_targets.GROUP)
        register_group_handler(
            deferred_targets.crashing, group=deferred_targets.CRASH_GROUP
        )
        register_group_handler(
            deferred_targets.ordered, group=deferred_targets.ORDERED_GROUP
        )
