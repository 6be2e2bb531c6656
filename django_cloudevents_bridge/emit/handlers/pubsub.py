"""Publish events to Google Pub/Sub per the CloudEvents Pub/Sub binding.

Needs the ``pubsub`` extra (``google-cloud-pubsub``). Honours
``PUBSUB_EMULATOR_HOST`` like every Google client does.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import threading
import time
from collections.abc import Sequence
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from ...bindings.pubsub import to_pubsub
from ...events import CloudEvent
from ...exceptions import DeliveryError, ImproperlyInstalled
from .base import BaseHandler

MODES = ("binary", "structured")
TOPIC_PATH = re.compile(r"^projects/[^/]+/topics/[^/]+$")


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
    (seconds to wait for a batch of publishes to be confirmed), ``publisher`` (a
    client to use instead of building one: for tests; the handler never stops it).
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
        if topic is not None and not TOPIC_PATH.match(topic):
            raise ImproperlyConfigured(
                f"pubsub handler: topic must be projects/<project>/topics/<topic>, "
                f"not {topic!r}"
            )
        if publisher is None and not installed():
            raise ImproperlyInstalled(
                "google-cloud-pubsub is not installed", extra="pubsub"
            )
        self.topic = topic
        self.structured = mode == "structured"
        self.ordering = ordering
        self.timeout = timeout
        self.publisher = publisher
        self._owned = False  # True once open() has built the client itself
        self._failed_keys: set[tuple[str, str]] = set()
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
            self._owned = True
            return True

    def close(self) -> None:
        with self._lock:
            if not self._owned:  # an injected client belongs to the caller
                return
            publisher, self.publisher, self._owned = self.publisher, None, False
            self._failed_keys.clear()
        publisher.stop()

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
        if not events:
            return 0
        topic = self.topic_path()
        self.open()
        publisher = self.publisher
        # Publish all, then wait for each: the client batches them into few RPCs.
        pending = []
        refused: tuple[CloudEvent, str, Exception] | None = None
        for event in events:
            key = (event.get_subject() or "") if self.ordering else ""
            try:
                if key:
                    self._resume(publisher, topic, key)
                data, attributes = to_pubsub(event, structured=self.structured)
                # Raises at once for a message over 10 MB or a stopped client.
                future = publisher.publish(topic, data, ordering_key=key, **attributes)
            except Exception as err:
                refused = (event, key, err)
                break
            pending.append((event, key, future))
        deadline = time.monotonic() + self.timeout
        for sent, (event, _key, future) in enumerate(pending):
            try:
                future.result(timeout=max(0.0, deadline - time.monotonic()))
            except Exception as err:
                self._failed(topic, [key for _e, key, _f in pending[sent:]])
                raise self._error(event, err, sent) from err
        if refused is not None:
            event, key, cause = refused
            self._failed(topic, [key])
            raise self._error(event, cause, len(pending)) from cause
        return len(events)

    def _failed(self, topic: str, keys: list[str]) -> None:
        # After a failed publish the client pauses its ordering key, and fails
        # every later publish on it, until resume_publish(). The pause happens
        # after the future fails, so resume before the key's next publish
        # rather than now, and do so for every key still in flight.
        self._failed_keys.update((topic, key) for key in keys if key)

    def _resume(self, publisher: Any, topic: str, key: str) -> None:
        if (topic, key) in self._failed_keys:
            self._failed_keys.discard((topic, key))
            # RuntimeError: not paused (a timeout, or a failure before publishing).
            with contextlib.suppress(RuntimeError):
                publisher.resume_publish(topic, key)

    def _error(
        self, event: CloudEvent, err: Exception, delivered: int
    ) -> DeliveryError:
        if isinstance(err, TimeoutError):
            # The client keeps trying, so the message may still arrive later.
            reason = f"Pub/Sub publish not confirmed within {self.timeout:g} s"
        else:
            detail = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
            reason = f"Pub/Sub publish failed: {detail}"
        return DeliveryError(reason, event_id=event.get_id(), delivered=delivered)
