"""Print events readably, like Knative's event-display (for development)."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Sequence
from typing import Any, TextIO

from ... import events as ce
from ...events import CloudEvent
from .base import BaseHandler


class Handler(BaseHandler):
    def __init__(self, *, stream: TextIO | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.stream = stream
        self._lock = threading.Lock()

    def send_events(self, events: Sequence[CloudEvent]) -> int:
        stream = self.stream or sys.stdout
        with self._lock:
            for event in events:
                stream.write(display(event))
            stream.flush()
        return len(events)


def display(event: CloudEvent) -> str:
    """The event as event-display prints it: attributes, extensions, data."""
    attributes = event.get_attributes()
    core = [name for name in ce.DISPLAY_ORDER if attributes.get(name) is not None]
    extensions = sorted(name for name in attributes if name not in ce.CORE_ATTRIBUTES)
    lines = ["☁️  cloudevents.Event", "Context Attributes,"]
    lines += [f"  {name}: {ce.canonical(attributes[name])}" for name in core]
    if extensions:
        lines.append("Extensions,")
        lines += [f"  {name}: {ce.canonical(attributes[name])}" for name in extensions]
    data = event.get_data()
    if data is not None:
        lines.append("Data,")
        lines.append(_indent(_pretty(data)))
    return "\n".join(lines) + "\n"


def _pretty(data: Any) -> str:
    if isinstance(data, bytes):
        return repr(data)
    if isinstance(data, str):
        return data
    return json.dumps(data, indent=2, ensure_ascii=False)


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())
