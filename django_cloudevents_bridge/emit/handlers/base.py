"""BaseHandler: the protocol every outbound transport follows."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Self

from django.core.exceptions import ImproperlyConfigured

from ... import events as ce
from ...bindings import jsonformat
from ...events import CloudEvent
from ...exceptions import DeliveryError


class BaseHandler:
    """Like Django's email backends: ``open()``, ``close()``, ``send_events()``.

    ``send_events`` delivers in order and returns how many it sent. On the first
    failure it raises :class:`DeliveryError` whose ``delivered`` counts the events
    sent before it, so the caller knows exactly which ones are left.
    """

    def __init__(self, **options: Any) -> None:
        if options:  # a typo in settings should fail loudly at start-up
            raise ImproperlyConfigured(
                f"{type(self).__name__}: unknown options {sorted(options)}"
            )

    def open(self) -> bool:
        """Open connections if needed; True if this call opened them."""
        return False

    def close(self) -> None:
        """Release connections; the handler may be opened again."""

    def send_events(self, events: Sequence[CloudEvent]) -> int:
        raise NotImplementedError

    def send_stored(self, documents: Sequence[str]) -> int:
        """Send events stored in the JSON event format (the relay's outbox rows).

        As ``send_events``, with ``K_CE_OVERRIDES`` applied (they belong to the
        process that sends, SPEC-NOTES 4.2). A handler that can send the stored
        JSON as it is may override this to skip decoding it.
        """
        return self.send_events(
            [
                ce.with_overrides(jsonformat.from_json(document))
                for document in documents
            ]
        )

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class FunctionHandler(BaseHandler):
    """Adapter for a plain function taking one event (django-signals-cloudevents)."""

    def __init__(self, function: Callable[[CloudEvent], Any], **options: Any) -> None:
        super().__init__(**options)
        self.function = function

    def send_events(self, events: Sequence[CloudEvent]) -> int:
        for sent, event in enumerate(events):
            try:
                self.function(event)
            except Exception as err:
                raise DeliveryError(
                    f"{type(err).__name__}: {err}",
                    event_id=event.get_id(),
                    delivered=sent,
                ) from err
        return len(events)
