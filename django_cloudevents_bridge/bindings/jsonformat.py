"""The JSON event format (structured mode, batches, and the stored form).

``to_json``/``from_json`` write and read our own documents (the outbox, the
received-event store); ``from_structured``/``from_batch`` read anyone's, strictly.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

from .. import events
from ..events import CloudEvent, canonical, from_attributes, parse_time
from ..exceptions import BadEvent, TooLarge
from . import build, check_extension, check_required, check_string, load_json

# Lower-case charset: equal by the spec, and the JavaScript SDK matches the
# Content-Type as a whole string (it refuses "charset=UTF-8").
STRUCTURED_JSON = "application/cloudevents+json; charset=utf-8"
BATCH_JSON = "application/cloudevents-batch+json; charset=utf-8"


def to_json(event: CloudEvent) -> bytes:
    """The event in the JSON event format (structured mode).

    Written here rather than by the SDK, whose writer recognises JSON content
    types case-sensitively and writes other non-text data as its Python repr:
    bytes become ``data_base64``; any other value is stored as the JSON value it
    is (json-format.md 3.1.1).
    """
    document: dict[str, Any] = {}
    for name, value in event.get_attributes().items():
        if value is not None:
            document[name] = canonical(value) if isinstance(value, datetime) else value
    data = event.get_data()
    if isinstance(data, bytes | bytearray):
        document["data_base64"] = base64.b64encode(data).decode("ascii")
    elif data is not None:
        document["data"] = data
    return json.dumps(document).encode("ascii")  # \u escapes: lone surrogates too


def from_json(body: bytes | str) -> CloudEvent:
    """Read an event written by :func:`to_json`, inventing nothing.

    (The SDK's reader would give a stored event that had no ``time`` a new one.)
    """
    document = json.loads(body)
    data = document.pop("data", None)
    encoded = document.pop("data_base64", None)
    if encoded is not None:
        data = base64.b64decode(encoded)
    if "time" in document:
        document["time"] = parse_time(document["time"])
    return from_attributes(document, data)


def from_batch(body: bytes, max_events: int | None = None) -> list[CloudEvent]:
    """The events of a JSON batch; raises BadEvent when malformed.

    More than ``max_events`` events raise TooLarge (413) before any is read.
    """
    batch = load_json(body, envelope=True)
    if not isinstance(batch, list):
        raise BadEvent("a batch must be a JSON array")
    if max_events is not None and len(batch) > max_events:
        raise TooLarge(
            f"batch of {len(batch)} events; at most {max_events} per request"
        )
    parsed = [from_structured(item) for item in batch]
    if len({event.get_specversion() for event in parsed}) > 1:
        raise BadEvent("events in a batch must share one specversion")
    return parsed


def from_structured(document: Any) -> CloudEvent:
    """One event in the JSON event format."""
    if not isinstance(document, dict):
        raise BadEvent("an event must be a JSON object")
    document = dict(document)
    if "data" in document and "data_base64" in document:
        # Exclusive by presence: "data": null is a payload (null), not absence.
        raise BadEvent("data and data_base64 are mutually exclusive")
    data = document.pop("data", None)
    encoded = document.pop("data_base64", None)
    attributes: dict[str, Any] = {}
    for name, value in document.items():
        if value is None:  # JSON null means unset
            continue
        if name in events.CORE_ATTRIBUTES:
            if not isinstance(value, str):
                raise BadEvent(f"{name} must be a string")
        else:
            check_extension(name, value)
        if isinstance(value, str):
            check_string(name, value)
        attributes[name] = value
    check_required(attributes)
    if encoded is not None:
        if not isinstance(encoded, str):
            raise BadEvent("data_base64 must be a string")
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise BadEvent("data_base64 is not valid base64") from None
    return build(attributes, data)
