"""The CloudEvents HTTP binding: binary, structured and batched modes, both ways.

Out: ``to_http``/``to_http_batch`` give a request's headers and body. In:
``from_request`` reads an HttpRequest strictly. The SDK alone is lenient (it
invents a missing id and time, decodes invalid UTF-8 in headers), so every rule
of the binding is checked here, on the raw request, before an SDK event is built.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, unquote_to_bytes

from django.http import HttpRequest

from .. import events
from ..events import CloudEvent, canonical
from ..exceptions import BadEvent, LengthRequired, TooLarge, UnsupportedFormat
from . import (
    Message,
    build,
    check_extension,
    check_required,
    check_string,
    data_bytes,
    decode_data,
    load_json,
    written_as_json,
)
from .jsonformat import (
    BATCH_JSON,
    STRUCTURED_JSON,
    from_batch,
    from_structured,
    to_json,
)

__all__ = ["Message", "to_http", "to_http_batch", "from_request", "read_body"]

logger = logging.getLogger("django_cloudevents_bridge")

# HTTP binding 3.1.3.2: printable ASCII stays as it is, except space, '"' and '%'.
_HEADER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in ' "%')
_QUOTED_PAIR = re.compile(r"\\(.)")


def to_http(event: CloudEvent, *, structured: bool = False) -> Message:
    """Headers and body of an HTTP request, binary mode unless ``structured``."""
    if structured:
        return Message({"Content-Type": STRUCTURED_JSON}, to_json(event))
    # Our own header encoding, not the SDK's: it writes booleans as "True".
    headers = {}
    for name, value in event.get_attributes().items():
        if value is None:
            continue
        if name == "datacontenttype":  # binding 3.1.1: no ce-datacontenttype header
            headers["Content-Type"] = str(value)
        else:
            headers[f"ce-{name}"] = quote(canonical(value), safe=_HEADER_SAFE)
    if "Content-Type" not in headers and written_as_json(event):
        headers["Content-Type"] = events.JSON
    return Message(headers, data_bytes(event))


def to_http_batch(batch: Sequence[CloudEvent]) -> Message:
    """Headers and body of one batched-mode request (JSON batch format)."""
    body = b"[" + b",".join(to_json(event) for event in batch) + b"]"
    return Message({"Content-Type": BATCH_JSON}, body)


def from_request(
    request: HttpRequest, max_bytes: int, max_batch: int | None = None
) -> list[CloudEvent]:
    """The events in a request; raises BadEvent (or a subclass) when malformed.

    A body over ``max_bytes``, or a batch of more than ``max_batch`` events,
    raises TooLarge (413).
    """
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
        return from_batch(body, max_batch)
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
    chunked = (
        not declared and "chunked" in meta.get("HTTP_TRANSFER_ENCODING", "").lower()
    )
    # Django's WSGI request reads at most CONTENT_LENGTH bytes (0 when chunked).
    # A server that de-chunks and ends the stream (gunicorn, PEP 3333's
    # wsgi.input_terminated) lets us read the input itself; otherwise the body
    # cannot be read safely, so ask for a length rather than lose it.
    if chunked and not meta.get("wsgi.input_terminated"):
        raise LengthRequired("chunked bodies need a Content-Length here")
    try:
        if chunked:
            body = meta["wsgi.input"].read(max_bytes + 1)
        else:
            body = request.read(max_bytes + 1)
    except Exception as err:
        # The server's input stream failed: malformed chunked framing (gunicorn
        # raises its own parse errors, not OSError) or a connection cut short.
        # The request is what is wrong: 400, not an unhandled 500.
        logger.info("Unreadable request body (%s)", type(err).__name__)
        raise BadEvent("request body could not be read (malformed framing)") from None
    if len(body) > max_bytes:
        raise TooLarge(f"body larger than {max_bytes} bytes")
    return body


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
