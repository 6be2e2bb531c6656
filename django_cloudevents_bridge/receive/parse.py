"""HttpRequest -> CloudEvents, strictly (binary, structured and batched modes).

The SDK alone is lenient (it invents a missing id and time, decodes invalid UTF-8
in headers), so every rule of the HTTP binding is checked here, on the raw
request, before an SDK event is built.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from typing import Any
from urllib.parse import unquote_to_bytes

from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest

from .. import events
from ..events import CloudEvent
from ..exceptions import BridgeError

REQUIRED = ("id", "source", "type")
INT32 = range(-(2**31), 2**31)
# JSON nesting we accept: far deeper data would hit Python's recursion limit when
# stored or re-encoded, a 500 retried for ever instead of a 400.
MAX_DEPTH = 128
# dataschema is a URI, not a URI-reference: it starts with a scheme.
_ABSOLUTE_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_QUOTED_PAIR = re.compile(r"\\(.)")


class BadEvent(BridgeError, SuspiciousOperation):
    """The request is not a valid CloudEvent: 400, a retry will not fix it."""

    status = 400


class UnsupportedFormat(BadEvent):
    """An event format this receiver does not read (e.g. cloudevents+avro)."""

    status = 415


class TooLarge(BadEvent):
    status = 413


class LengthRequired(BadEvent):
    status = 411


def from_request(request: HttpRequest, max_bytes: int) -> list[CloudEvent]:
    """The events in a request; raises BadEvent (or a subclass) when malformed."""
    # HTTP allows tabs as white space here; a CloudEvents String does not.
    content_type = request.META.get("CONTENT_TYPE", "").replace("\t", " ")
    if not content_type.isascii() or events.NOT_IN_STRING.search(content_type):
        # A media type is ASCII (RFC 2046); WSGI hands other bytes over as
        # Latin-1, which would be stored as another datacontenttype.
        raise BadEvent("Content-Type is not a valid media type")
    media = content_type.split(";")[0].strip().lower()
    body = read_body(request, max_bytes)
    if media.startswith("application/cloudevents-batch"):
        if media != "application/cloudevents-batch+json":
            raise UnsupportedFormat(f"unsupported batch format {media}")
        return from_batch(body)
    if media.startswith("application/cloudevents"):
        if media != "application/cloudevents+json":
            raise UnsupportedFormat(f"unsupported event format {media}")
        return [from_structured(load_json(body, envelope=True))]
    return [from_binary(request.META, content_type, body)]


def read_body(request: HttpRequest, max_bytes: int) -> bytes:
    """The body, refusing more than ``max_bytes`` (even without a Content-Length)."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise BadEvent("invalid Content-Length") from None
    if declared < 0:
        raise BadEvent("invalid Content-Length")
    if declared > max_bytes:
        raise TooLarge(f"body larger than {max_bytes} bytes")
    meta = request.META
    if not declared and "chunked" in meta.get("HTTP_TRANSFER_ENCODING", "").lower():
        # Django's WSGI request reads at most CONTENT_LENGTH bytes (0 here). A
        # server that de-chunks and ends the stream (gunicorn, PEP 3333's
        # wsgi.input_terminated) lets us read the input itself; otherwise the
        # body cannot be read safely, so ask for a length rather than lose it.
        if not meta.get("wsgi.input_terminated"):
            raise LengthRequired("chunked bodies need a Content-Length here")
        body = meta["wsgi.input"].read(max_bytes + 1)
    else:
        body = request.read(max_bytes + 1)
    if len(body) > max_bytes:
        raise TooLarge(f"body larger than {max_bytes} bytes")
    return body


def load_json(body: bytes, *, envelope: bool = False) -> Any:
    """Strict JSON: no NaN/Infinity, and in an event envelope no repeated names."""
    try:
        value = json.loads(
            body.decode("utf-8"),
            parse_constant=_not_json,
            parse_float=_finite,
            object_pairs_hook=_unique if envelope else None,
        )
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadEvent("body is not valid JSON") from None
    if too_deep(value, MAX_DEPTH):
        raise BadEvent(f"JSON nested deeper than {MAX_DEPTH} levels")
    return value


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise ValueError("number out of range")
    return number


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # 1.0.3-wip: "Each context attribute MUST only appear at most once".
    document = dict(pairs)
    if len(document) != len(pairs):
        raise ValueError("a name appears twice")
    return document


def too_deep(value: Any, limit: int) -> bool:
    """True if lists/objects nest deeper than ``limit`` (checked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def from_batch(body: bytes) -> list[CloudEvent]:
    batch = load_json(body, envelope=True)
    if not isinstance(batch, list):
        raise BadEvent("a batch must be a JSON array")
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


def from_binary(meta: dict[str, Any], content_type: str, body: bytes) -> CloudEvent:
    """One event in binary mode: ce-* headers and the body as data."""
    attributes: dict[str, Any] = {}
    for key, raw in meta.items():
        if not key.startswith("HTTP_CE_"):
            continue
        # WSGI turns '-' into '_', so "foo_bar" here was ce-foo-bar or ce-foo_bar:
        # neither is a valid attribute name.
        name = key[8:].lower()
        if name == "datacontenttype":
            raise BadEvent("ce-datacontenttype must not be sent in binary mode")
        value = decode_header(name, raw)
        if name not in events.CORE_ATTRIBUTES:
            check_extension(name, value)
        check_string(name, value)
        attributes[name] = value
    if "specversion" not in attributes:
        raise BadEvent("not a CloudEvent: no ce-specversion header")
    check_required(attributes)
    if content_type:
        attributes["datacontenttype"] = content_type
    return build(attributes, decode_data(body, content_type))


def decode_header(name: str, raw: str) -> str:
    """Unquote a quoted-string, then one strict round of percent-decoding."""
    value = raw.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = _QUOTED_PAIR.sub(r"\1", value[1:-1])
    try:
        # WSGI hands header bytes over as latin-1 text.
        return unquote_to_bytes(value.encode("latin-1")).decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        raise BadEvent(f"ce-{name} is not valid percent-encoded UTF-8") from None


def decode_data(body: bytes, content_type: str) -> Any:
    """JSON data parsed, text decoded, anything else kept as bytes."""
    if not body:
        return None
    media, _, params = content_type.partition(";")
    media = media.strip().lower()
    if not media:  # no datacontenttype: assume nothing, keep the bytes
        return body
    if events.is_json(media):
        return load_json(body)
    if media.startswith("text/"):
        charset = re.search(r"charset=\"?([\w.:-]+)", params, re.IGNORECASE)
        try:
            return body.decode(charset.group(1) if charset else "utf-8")
        except (LookupError, UnicodeDecodeError):
            raise BadEvent("text data does not match its charset") from None
    return body


def check_required(attributes: dict[str, Any]) -> None:
    if attributes.get("specversion") != events.SPECVERSION:
        raise BadEvent(f"unsupported specversion {attributes.get('specversion')!r}")
    for name in REQUIRED:
        if not attributes.get(name):
            raise BadEvent(f"missing or empty {name}")
    for name in ("subject", "dataschema", "datacontenttype"):
        if name in attributes and not attributes[name]:
            raise BadEvent(f"{name} must not be empty")
    if "dataschema" in attributes and not _ABSOLUTE_URI.match(attributes["dataschema"]):
        raise BadEvent("dataschema must be an absolute URI")


def check_string(name: str, value: str) -> None:
    if events.NOT_IN_STRING.search(value):
        raise BadEvent(f"{name} holds a character a CloudEvents String cannot")


def check_extension(name: str, value: Any) -> None:
    if name == "data" or not events.EXTENSION_NAME.match(name):
        raise BadEvent(f"invalid attribute name {name[:30]!r}")
    if isinstance(value, bool | str):
        return
    if isinstance(value, int) and value in INT32:
        return
    raise BadEvent(f"extension {name} must be a string, boolean or 32-bit integer")


def build(attributes: dict[str, Any], data: Any) -> CloudEvent:
    if "time" in attributes:
        try:
            attributes["time"] = events.parse_time(attributes["time"])
        except ValueError:
            raise BadEvent("time is not an RFC 3339 timestamp") from None
    try:
        return events.from_attributes(attributes, data)
    except Exception as err:  # the SDK's own validation, as a last gate
        raise BadEvent(f"invalid event: {str(err)[:100]}") from None
