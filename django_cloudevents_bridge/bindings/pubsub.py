"""The CloudEvents Google Pub/Sub binding: publish (``to_pubsub``) and push.

A push subscription POSTs ``{"message": {"data": <base64>, "attributes": {...},
"messageId": ..., "publishTime": ...}, "subscription": ...}``. The message is
read per the binding: structured mode when its content type is
``application/cloudevents...`` (the data is a JSON-format event), binary mode
otherwise (``ce-`` attributes, not percent-encoded, and the data as event data).

Eventarc delivers the same wrapper as the data of a
``google.cloud.pubsub.topic.v1.messagePublished`` CloudEvent; ``envelope_of``
unwraps that event too, so either way the caller gets the inner event.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from django.http import HttpRequest

from .. import events
from ..events import CloudEvent, canonical
from ..exceptions import BadEvent, UnsupportedFormat
from . import (
    PubSubMessage,
    build,
    check_extension,
    check_required,
    check_string,
    data_bytes,
    decode_data,
    load_json,
    written_as_json,
)
from .http import from_binary
from .jsonformat import STRUCTURED_JSON, from_structured, to_json

__all__ = ["PubSubMessage", "to_pubsub", "envelope_of", "from_envelope"]

# Pub/Sub limits: beyond them binary mode cannot carry the attributes.
PUBSUB_MAX_ATTRIBUTES = 100
PUBSUB_MAX_VALUE_BYTES = 1024
PUBSUB_MAX_KEY_BYTES = 256
MESSAGE_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"
# Binding 3.1.1 says "content-type"; sdk-go writes "Content-Type"; the binding's
# own example (and older emitters) use "ce-datacontenttype".
CONTENT_TYPE_KEYS = ("content-type", "Content-Type", "ce-datacontenttype")


def to_pubsub(event: CloudEvent, *, structured: bool = False) -> PubSubMessage:
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
        if "content-type" not in attributes and written_as_json(event):
            attributes["content-type"] = events.JSON
        if _fits_pubsub(attributes):
            return PubSubMessage(data_bytes(event), attributes)
    return PubSubMessage(to_json(event), {"content-type": STRUCTURED_JSON})


def _fits_pubsub(attributes: dict[str, str]) -> bool:
    return len(attributes) <= PUBSUB_MAX_ATTRIBUTES and all(
        len(key.encode()) <= PUBSUB_MAX_KEY_BYTES
        and len(value.encode()) <= PUBSUB_MAX_VALUE_BYTES
        for key, value in attributes.items()
    )


def envelope_of(request: HttpRequest, body: bytes) -> Any:
    """The push wrapper: the body itself, or the data of an Eventarc event."""
    content_type = request.META.get("CONTENT_TYPE", "")
    media = content_type.split(";")[0].strip().lower()
    if "HTTP_CE_SPECVERSION" in request.META:
        outer = from_binary(request.META, content_type, body)
    elif media.startswith("application/cloudevents"):
        if media != "application/cloudevents+json":
            raise UnsupportedFormat(f"unsupported event format {media}")
        outer = from_structured(load_json(body, envelope=True))
    else:
        return load_json(body)
    if outer.get_type() != MESSAGE_PUBLISHED:
        raise BadEvent(
            f"a {outer.get_type()[:60]} event is not a Pub/Sub push delivery; "
            "post it to the receiver"
        )
    return outer.get_data()


def from_envelope(envelope: Any) -> CloudEvent:
    """The CloudEvent in a push wrapper; raises BadEvent when there is none."""
    if not isinstance(envelope, dict) or not isinstance(envelope.get("message"), dict):
        raise BadEvent("not a Pub/Sub push delivery: no message object")
    message = envelope["message"]
    attributes = message.get("attributes") or {}
    if not isinstance(attributes, dict) or not all(
        isinstance(value, str) for value in attributes.values()
    ):
        raise BadEvent("message.attributes must map names to strings")
    return from_message(decode(message.get("data")), attributes)


def decode(data: Any) -> bytes:
    """A push message's base64 ``data`` as bytes."""
    if data is None:  # a message may carry attributes only
        return b""
    if not isinstance(data, str):
        raise BadEvent("message.data must be a base64 string")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise BadEvent("message.data is not valid base64") from None


def from_message(data: bytes, attributes: dict[str, str]) -> CloudEvent:
    """One Pub/Sub message (data and attributes) as a CloudEvent, strictly."""
    content_type = next(
        (attributes[key] for key in CONTENT_TYPE_KEYS if attributes.get(key)), ""
    )
    media = content_type.split(";")[0].strip().lower()
    if media.startswith("application/cloudevents-batch"):
        raise BadEvent("the Pub/Sub binding has no batched mode")
    if media.startswith("application/cloudevents"):
        if media != "application/cloudevents+json":
            raise UnsupportedFormat(f"unsupported event format {media}")
        return from_structured(load_json(data, envelope=True))
    event: dict[str, Any] = {}
    for key, value in attributes.items():
        if not key.startswith("ce-") or key == "ce-datacontenttype":
            continue  # other attributes (e.g. googclient_*) are not the event's
        name = key[3:]
        if name not in events.CORE_ATTRIBUTES:
            check_extension(name, value)
        check_string(name, value)
        event[name] = value  # binding 3.1.3.2: values are not percent-encoded
    if "specversion" not in event:
        raise BadEvent("not a CloudEvent: no ce-specversion attribute")
    check_required(event)
    if content_type:
        event["datacontenttype"] = content_type
    return build(event, decode_data(data, content_type))
