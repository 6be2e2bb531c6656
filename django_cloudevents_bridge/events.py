"""Build, encode and decode CloudEvents: the only module that imports the SDK.

If the SDK's API changes again, only this module changes.
"""

from __future__ import annotations

import base64
import calendar
import functools
import json
import logging
import os
import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from cloudevents.core.v1.event import CloudEvent

from . import conf

__all__ = ["CloudEvent", "new", "to_http", "to_pubsub", "to_json", "from_json"]

logger = logging.getLogger("django_cloudevents_bridge")

SPECVERSION = "1.0"
JSON = "application/json"
# Lower-case charset: equal by the spec, and the JavaScript SDK matches the
# Content-Type as a whole string (it refuses "charset=UTF-8").
STRUCTURED_JSON = "application/cloudevents+json; charset=utf-8"
BATCH_JSON = "application/cloudevents-batch+json; charset=utf-8"
JSON_MEDIA = re.compile(r"^[a-z0-9.+-]+/([a-z0-9.+-]+\+)?json\Z")
# The spec's context attributes, in the order event-display prints them.
DISPLAY_ORDER = ("specversion", "type", "source", "subject", "id", "time") + (
    "datacontenttype",
    "dataschema",
)
CORE_ATTRIBUTES = frozenset(DISPLAY_ORDER)
EXTENSION_NAME = re.compile(r"^[a-z0-9]+\Z")  # \Z: "$" would allow a final newline
OVERRIDES_VAR = "K_CE_OVERRIDES"
# Type system, String: no control characters, surrogates or noncharacters. (A NUL
# would also make PostgreSQL refuse the row: a 5xx, retried for ever.)
NOT_IN_STRING = re.compile(
    r"[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef"
    + "".join(f"\\U{plane:04x}fffe\\U{plane:04x}ffff" for plane in range(17))
    + "]"
)

# HTTP binding 3.1.3.2: printable ASCII stays as it is, except space, '"' and '%'.
_HEADER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in ' "%')

# Pub/Sub limits: beyond them binary mode cannot carry the attributes.
PUBSUB_MAX_ATTRIBUTES = 100
PUBSUB_MAX_VALUE_BYTES = 1024
PUBSUB_MAX_KEY_BYTES = 256


def new(
    type: str,
    *,
    data: Any = None,
    subject: str | None = None,
    extensions: Mapping[str, str] | None = None,
    source: str | None = None,
    id: str | None = None,
    time: datetime | None = None,
    datacontenttype: str | None = JSON,
) -> CloudEvent:
    """Build a v1.0 event with a fresh UUID ``id`` and the current UTC ``time``."""
    attributes: dict[str, Any] = {
        "specversion": SPECVERSION,
        "id": id or str(uuid.uuid4()),
        "source": source or conf.source(),
        "type": type,
        "time": time or datetime.now(UTC),
    }
    if subject:
        attributes["subject"] = subject
    if data is not None and datacontenttype:
        attributes["datacontenttype"] = datacontenttype
    for name, value in (extensions or {}).items():
        if name in CORE_ATTRIBUTES or name == "data" or not EXTENSION_NAME.match(name):
            raise ValueError(f"{name!r} is not a valid CloudEvents extension name")
        attributes[name] = value
    return CloudEvent(attributes, data)


def with_overrides(event: CloudEvent) -> CloudEvent:
    """The event with ``K_CE_OVERRIDES`` applied, as the sending process sees it.

    Applied when sending, not when building: with the outbox, the relay (say a
    Knative ContainerSource) is the process Knative gave the overrides to.
    They replace same-named extensions; core attributes are never touched.
    """
    extra = overrides()
    if not extra:
        return event
    attributes = {**event.get_attributes(), **extra}
    return CloudEvent(attributes, event.get_data())


def overrides() -> dict[str, str]:
    """The extensions from ``K_CE_OVERRIDES``, cleaned; empty when unset or invalid."""
    cleaned, _problems = parse_overrides(os.environ.get(OVERRIDES_VAR, ""))
    return dict(cleaned)


@functools.lru_cache(maxsize=8)
def parse_overrides(raw: str) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    """Knative's overrides JSON -> (extensions to set, problems found).

    Cached per raw value, so a bad value is logged once, not on every save().
    """
    cleaned: list[tuple[str, str]] = []
    problems: list[str] = []
    try:
        parsed = json.loads(raw) if raw.strip() else {}
    except ValueError as err:
        parsed, problems = {}, [f"not JSON ({err})"]
    extensions = parsed.get("extensions", {}) if isinstance(parsed, dict) else None
    if not isinstance(extensions, dict):
        problems.append("no 'extensions' object")
        extensions = {}
    for key, value in extensions.items():
        name = str(key).lower()  # as sdk-go's SetExtension does
        if name in CORE_ATTRIBUTES or name == "data":
            problems.append(f"cannot override the attribute {name!r}")
        elif not EXTENSION_NAME.match(name):
            problems.append(f"invalid extension name {key!r}")
        elif not isinstance(value, str):  # Knative's type is map[string]string
            problems.append(f"the value of {name!r} is not a string")
        elif NOT_IN_STRING.search(value):  # undecodable bytes become surrogates
            problems.append(f"the value of {name!r} holds a character it cannot")
        else:
            if len(name) > 20 or name[0].isdigit():  # a SHOULD, so not rejected
                logger.warning(
                    "%s: extension name %r should be at most 20 characters and "
                    "start with a letter",
                    OVERRIDES_VAR,
                    name,
                )
            cleaned.append((name, value))
    for problem in problems:
        logger.warning("%s: %s; ignored", OVERRIDES_VAR, problem)
    return tuple(cleaned), tuple(problems)


def canonical(value: Any) -> str:
    """The spec's canonical string form of an attribute value."""
    if isinstance(value, datetime):
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    if isinstance(value, bool):  # before int: True is an int
        return "true" if value else "false"
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    return str(value)


def data_bytes(event: CloudEvent) -> bytes:
    """The event's data as the bytes a binary-mode message carries.

    Bytes go as they are, and text as UTF-8 under a non-JSON datacontenttype;
    any other value (a dict, but also a list, number or boolean, which the SDK
    would write as its Python repr, or text under a JSON type or none) is
    written as JSON.
    """
    data = event.get_data()
    if data is None:
        return b""
    if isinstance(data, bytes | bytearray):
        return bytes(data)
    media = event.get_datacontenttype()
    if isinstance(data, str) and media and not is_json(media):
        return data.encode("utf-8")
    # A str under a JSON media type is a JSON string: the body is "...", as the
    # JSON event format's "data" member holds it (which, with no datacontenttype,
    # a reader takes for JSON too). Send bytes for JSON already encoded.
    return json.dumps(data).encode("ascii")


def is_json(media_type: str | None) -> bool:
    """True for ``*/json`` and ``*/*+json`` (parameters and case ignored)."""
    media = (media_type or "").split(";")[0].strip().lower()
    return bool(JSON_MEDIA.match(media))


def to_http(
    event: CloudEvent, *, structured: bool = False
) -> tuple[dict[str, str], bytes]:
    """Headers and body of an HTTP request, binary mode unless ``structured``."""
    if structured:
        return {"Content-Type": STRUCTURED_JSON}, to_json(event)
    # Our own header encoding, not the SDK's: it writes booleans as "True".
    headers = {}
    for name, value in event.get_attributes().items():
        if value is None:
            continue
        if name == "datacontenttype":  # binding 3.1.1: no ce-datacontenttype header
            headers["Content-Type"] = str(value)
        else:
            headers[f"ce-{name}"] = quote(canonical(value), safe=_HEADER_SAFE)
    if "Content-Type" not in headers and _written_as_json(event):
        headers["Content-Type"] = JSON
    return headers, data_bytes(event)


def _written_as_json(event: CloudEvent) -> bool:
    """True when data_bytes() writes JSON for an event that names no media type.

    The JSON format takes data without a datacontenttype for JSON; a binary-mode
    message must then say so itself, or a receiver keeps the body as bytes.
    """
    data = event.get_data()
    return data is not None and not isinstance(data, bytes | bytearray)


def to_http_batch(batch: Sequence[CloudEvent]) -> tuple[dict[str, str], bytes]:
    """Headers and body of one batched-mode request (JSON batch format)."""
    body = b"[" + b",".join(to_json(event) for event in batch) + b"]"
    return {"Content-Type": BATCH_JSON}, body


def to_pubsub(
    event: CloudEvent, *, structured: bool = False
) -> tuple[bytes, dict[str, str]]:
    """Message data and attributes per the CloudEvents Pub/Sub binding.

    Binary mode maps every attribute to ``ce-<name>`` (no percent-encoding) and
    ``datacontenttype`` to ``content-type``. It falls back to structured mode when
    the attributes would not fit Pub/Sub's limits.
    """
    if not structured:
        attributes = {}
        for name, value in event.get_attributes().items():
            if value is None:
                continue
            key = "content-type" if name == "datacontenttype" else f"ce-{name}"
            attributes[key] = canonical(value)
        if "content-type" not in attributes and _written_as_json(event):
            attributes["content-type"] = JSON
        if _fits_pubsub(attributes):
            return data_bytes(event), attributes
    return to_json(event), {"content-type": STRUCTURED_JSON}


def _fits_pubsub(attributes: dict[str, str]) -> bool:
    return len(attributes) <= PUBSUB_MAX_ATTRIBUTES and all(
        len(key.encode()) <= PUBSUB_MAX_KEY_BYTES
        and len(value.encode()) <= PUBSUB_MAX_VALUE_BYTES
        for key, value in attributes.items()
    )


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


_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:)(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})\Z"
)


def parse_time(text: str) -> datetime:
    """An RFC 3339 timestamp (offset required); ValueError if it is not one.

    A leap second (``23:59:60``, which RFC 3339 allows and Python cannot hold)
    becomes the last microsecond before the next minute.
    """
    match = _RFC3339.match(text)
    if not match:
        raise ValueError(f"not an RFC 3339 timestamp: {text[:40]!r}")
    head, seconds, fraction, offset = match.groups()
    leap = seconds == "60"
    if leap:
        seconds, fraction = "59", ".999999"
    iso = f"{head}{seconds}{fraction or ''}{offset}".upper().replace("Z", "+00:00")
    value = datetime.fromisoformat(iso)
    if leap and not _ends_a_month(value):
        raise ValueError(f"not an RFC 3339 timestamp: {text[:40]!r}")
    return value


def _ends_a_month(value: datetime) -> bool:
    """RFC 3339 5.7: a leap second is the last second of a month, in UTC."""
    try:
        utc = value.astimezone(UTC)
    except OverflowError:  # beyond year 1 or 9999 once in UTC
        return False
    last_day = calendar.monthrange(utc.year, utc.month)[1]
    return (utc.day, utc.hour, utc.minute) == (last_day, 23, 59)


def from_attributes(attributes: dict[str, Any], data: Any = None) -> CloudEvent:
    """The SDK event for attributes already checked by the caller, invented nothing.

    The SDK's constructor fills in a missing ``id`` and ``time``; a receiver must
    not invent either, so a ``time`` the sender did not set is taken out again.
    """
    had_time = "time" in attributes
    event = CloudEvent(dict(attributes), data)
    if not had_time:
        event.get_attributes().pop("time", None)
    return event
