"""Wire formats as ``to_*``/``from_*`` pairs, one module per binding.

``http`` (binary, structured and batched modes), ``pubsub`` (publish and push)
and ``jsonformat`` (the JSON event format both use in structured mode). Here:
the message types they return, and what both bindings' binary modes share: the
data as bytes on the way out, and the strict checks of attributes on the way in.
"""

from __future__ import annotations

import codecs
import json
import math
import re
from typing import Any, NamedTuple

from .. import events
from ..events import CloudEvent
from ..exceptions import BadEvent

REQUIRED = ("id", "source", "type")
INT32 = range(-(2**31), 2**31)
# JSON nesting we accept: far deeper data would hit Python's recursion limit when
# stored or re-encoded, a 500 retried for ever instead of a 400.
MAX_DEPTH = 128
JSON_MEDIA = re.compile(r"^[a-z0-9.+-]+/([a-z0-9.+-]+\+)?json\Z")
# Codecs Python decodes text with that are no charset a sender can mean (IANA):
# "undefined" always raises, the others reinterpret the text.
NOT_CHARSETS = frozenset(
    {"undefined", "idna", "punycode", "unicode-escape", "raw-unicode-escape"}
)
_CHARSET = re.compile(r"charset=\"?([\w.:-]+)", re.IGNORECASE)
# dataschema is a URI, not a URI-reference: it starts with a scheme.
_ABSOLUTE_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


class Message(NamedTuple):
    """An HTTP request's headers and body (a tuple: ``headers, body = ...``)."""

    headers: dict[str, str]
    body: bytes


class PubSubMessage(NamedTuple):
    """A Pub/Sub message's data and attributes, in the order publish() takes them."""

    data: bytes
    attributes: dict[str, str]


def is_json(media_type: str | None) -> bool:
    """True for ``*/json`` and ``*/*+json`` (parameters and case ignored)."""
    media = (media_type or "").split(";")[0].strip().lower()
    return bool(JSON_MEDIA.match(media))


# Binary mode, out


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


def written_as_json(event: CloudEvent) -> bool:
    """True when data_bytes() writes JSON for an event that names no media type.

    The JSON format takes data without a datacontenttype for JSON; a binary-mode
    message must then say so itself, or a receiver keeps the body as bytes.
    """
    data = event.get_data()
    return data is not None and not isinstance(data, bytes | bytearray)


# Binary and structured mode, in: every rule checked before the SDK builds an
# event (the SDK alone invents a missing id and time).


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


def decode_data(body: bytes, content_type: str) -> Any:
    """JSON data parsed, text decoded, anything else kept as bytes.

    A body without a media type is JSON if it parses as JSON, else bytes: the
    official SDKs send dict data that way (no Content-Type), and read it back so.
    """
    if not body:
        return None
    media, _, params = content_type.partition(";")
    media = media.strip().lower()
    if not media:
        try:
            return load_json(body)
        except BadEvent:
            return body
    if is_json(media):
        return load_json(body)
    if media.startswith("text/"):
        charset = _CHARSET.search(params)
        return decode_text(body, charset.group(1) if charset else "utf-8")
    return body


def decode_text(body: bytes, charset: str) -> str:
    """``body`` decoded with a text ``charset``; BadEvent for any other codec.

    Python also knows bytes-to-bytes codecs (base64, zlib, rot13) and codecs that
    are no charset (``NOT_CHARSETS``): a sender naming one gets a 400, not a 500.
    """
    try:
        codec = codecs.lookup(charset)
    except LookupError:
        raise BadEvent(f"unknown charset {charset[:40]!r}") from None
    if not getattr(codec, "_is_text_encoding", True) or codec.name in NOT_CHARSETS:
        raise BadEvent(f"{charset[:40]!r} is not a text charset")
    try:
        return body.decode(codec.name)
    except ValueError:  # UnicodeDecodeError, and the UnicodeError some codecs raise
        raise BadEvent("text data does not match its charset") from None


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
    """The event for attributes checked above; BadEvent if the SDK refuses it."""
    if "time" in attributes:
        try:
            attributes["time"] = events.parse_time(attributes["time"])
        except ValueError:
            raise BadEvent("time is not an RFC 3339 timestamp") from None
    try:
        return events.from_attributes(attributes, data)
    except Exception as err:  # the SDK's own validation, as a last gate
        raise BadEvent(f"invalid event: {str(err)[:100]}") from None
