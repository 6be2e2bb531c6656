"""The seed design of django-signals-cloudevents, rewritten here (not installed).

A ``post_save`` receiver that builds the event and POSTs it synchronously inside
``save()`` with ``requests.post``: a new connection per save (no session), no
timeout, ``raise_for_status()``. Event building follows that package: every field
as ``str()``, the signal's kwargs, binary mode through the CloudEvents SDK.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from typing import Any

import requests
from cloudevents.core.bindings import http
from cloudevents.core.v1.event import CloudEvent
from django.db.models.signals import post_delete, post_save

EVENT_TYPES = {post_save: "django.orm.post.save", post_delete: "django.orm.post.delete"}


def send_cloudevent(sender: Any, **kwargs: Any) -> None:
    """Signal receiver: build the event and POST it now, on a fresh connection."""
    sink_url = os.environ.get("K_SINK")
    if sink_url is not None:
        message = http.to_binary_event(from_signal(sender, **kwargs))
        response = requests.post(sink_url, headers=message.headers, data=message.body)
        response.raise_for_status()


def from_signal(sender: Any, **kwargs: Any) -> CloudEvent:
    """The event as the seed package built it."""
    event_type = EVENT_TYPES.get(kwargs.pop("signal"))
    opts = sender._meta
    instance = kwargs.pop("instance")
    event_id = str(uuid.uuid4())
    attributes = {
        "specversion": "1.0",
        "id": event_id,
        "source": os.environ.get("K_SOURCE", "django-orm"),
        "type": event_type,
        "subject": f"DCE:{opts.app_label}.{opts.model_name}/{instance.pk}",
        "time": datetime.now(UTC),
        "datacontenttype": "application/json",
        "djangoapp": opts.app_label,
        "djangomodel": opts.model_name,
        "originid": event_id,
    }
    data = {
        "data": {f.name: str(getattr(instance, f.name)) for f in opts.fields},
        "signal_kwargs": kwargs,
        "db_table": opts.db_table,
    }
    return CloudEvent(attributes, data)
