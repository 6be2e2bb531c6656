"""Publish events to Google Pub/Sub per the CloudEvents Pub/Sub binding.

Needs the ``pubsub`` extra (``google-cloud-pubsub``). Honours
``PUBSUB_EMULATOR_HOST`` like every Google client does.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Sequence
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from ... import events as ce
from ...events import CloudEvent
from ...exceptions import DeliveryError, ImproperlyInstalled
from .base import BaseHandler

MODES = ("binary", "structured")


def installed() -> bool:
    """True if the ``pubsub`` extra is installed."""
    try:
        return importlib.util.find_spec("google.cloud.pubsub_v1") is not None
    except ModuleNotFoundError:
        return False


class Handler(BaseHandler):
    """One publisher client, reused; every publish is confirmed before returning.

    Options: ``topic`` (``projects/<p>/topics/<t>``; else the ``PROJECT_ID`` and
    ``TOPIC_ID`` environment variables), ``mode`` (``"binary"``/``"structured"``),
    ``ordering`` (publish with ordering key = the event subject), ``timeout``
    (seconds to wait for each publish), ``publisher`` (a client to use instead of
    building one: for tests).
    """

    def __init__(
        self,
        *,
        topic: str | None = None,
        mode: str = "binary",
        ordering: bool = False,
        timeout: float = 10.0,
        publisher: Any = None,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        if mode not in MODES:
            raise ImproperlyConfigured(f"pubsub handler: mode must be one of {MODES}")
        if publisher is None and not installed():
            raise ImproperlyInstalled(
                "google-cloud-pubsub is not installed", extra="pubsub"
            )
        self.topic = topic
        self.structured = mode == "structured"
        self.ordering = ordering
        self.timeout = timeout
        self.publisher = publisher
        self._lock = threading.Lock()

    def open(self) -> bool:
        with self._lock:
            if self.publisher is not None:
                return False
            try:
                from google.cloud import pubsub_v1
            except ImportError as err:  # pragma: no cover - checked in __init__
                raise ImproperlyInstalled(
                    "google-cloud-pubsub is not installed", extra="pubsub"
                ) from err
            options = pubsub_v1.types.PublisherOptions(
                enable_message_ordering=self.ordering
            )
            self.publisher = pubsub_v1.PublisherClient(publisher_options=options)
            return True

    def close(self) -> None:
        with self._lock:
            publisher, self.publisher = self.publisher, None
        stop = getattr(publisher, "stop", None)
        if stop is not None:
            stop()

    def topic_path(self) -> str:
        """The topic to publish to; raises DeliveryError when none is configured."""
        if self.topic:
            return self.topic
        project, topic = os.environ.get("PROJECT_ID"), os.environ.get("TOPIC_ID")
        if project and topic:
            return f"projects/{project}/topics/{topic}"
        raise DeliveryError(
            "no Pub/Sub topic: set the 'topic' option or PROJECT_ID and TOPIC_ID"
        )

    def send_events(self, events: Sequence[CloudEvent]) -> int:
        topic = self.topic_path()
        self.open()
        publisher = self.publisher
        # Publish all, then wait for each: the client batches them into few RPCs.
        pending = []
        for event in events:
            data, attributes = ce.to_pubsub(event, structured=self.structured)
            key = (event.get_subject() or "") if self.ordering else ""
            extra = {"ordering_key": key} if key else {}
            future = publisher.publish(topic, data, **extra, **attributes)
            pending.append((event, key, future))
        for sent, (event, key, future) in enumerate(pending):
            try:
                future.result(timeout=self.timeout)
            except Exception as err:
                if key:
                    # After a failure the client pauses the key until resumed.
                    publisher.resume_publish(topic, key)
                raise DeliveryError(
                    f"Pub/Sub publish failed: {type(err).__name__}: {err}",
                    event_id=event.get_id(),
                    delivered=sent,
                ) from err
        return len(events)
