"""The ``django.tasks`` task of deferred processing (see work.py).

Imported only when work is enqueued or a task worker runs one: creating a task
reads the ``TASKS`` setting. Its path, ``django_cloudevents_bridge.tasks.
process_events``, is stored by task backends, so it is kept stable.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured

from .work import run_task, tasks_api

_api: Any = tasks_api()
if _api is None:  # pragma: no cover - the test extra installs the backport
    raise ImproperlyConfigured(
        "deferred processing with a task backend needs Django 6, or the "
        "django-tasks backport on Django 5.2"
    )


@_api.task
def process_events(events: list[int]) -> int:
    """Run the due target runs of these stored events (ids only, JSON)."""
    return run_task(events)


@_api.task
def send_notifications() -> int:
    """Send the notification deliveries that are due (see notifications/)."""
    from .notifications import send_due

    return sum(send_due().values())
