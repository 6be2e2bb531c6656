"""Pub/Sub push deliveries -> CloudEvents -> the same dispatch.

A push subscription POSTs ``{"message": {"data": <base64>, "attributes": {...},
"messageId": ..., "publishTime": ...}, "subscription": ...}``. The message is
read per the CloudEvents Pub/Sub binding: structured mode when its content type
is ``application/cloudevents...`` (the data is a JSON-format event), binary mode
otherwise (``ce-`` attributes, not percent-encoded, and the data as event data).

Eventarc delivers the same wrapper as the data of a
``google.cloud.pubsub.topic.v1.messagePublished`` CloudEvent; posted here, that
event is unwrapped too, so either way the handlers see the inner event.
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt

from .. import conf, events
from ..events import CloudEvent
from . import dispatch, parse
from .views import ReceiverView, failure, owed_replies

logger = logging.getLogger("django_cloudevents_bridge")

MESSAGE_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"
# Binding 3.1.1 says "content-type"; sdk-go writes "Content-Type"; the binding's
# own example (and older emitters) use "ce-datacontenttype".
CONTENT_TYPE_KEYS = ("content-type", "Content-Type", "ce-datacontenttype")


@method_decorator(csrf_exempt, name="dispatch")
class PubSubPushView(ReceiverView):
    """POST Pub/Sub push deliveries here (or Eventarc's messagePublished events).

    204: processed, duplicates included (Pub/Sub acks any 2xx). 400/413/415: the
    message is malformed; Pub/Sub retries it like any non-2xx, so give the
    subscription a dead-letter topic. 500: a target failed (a redelivery runs
    only what failed). 503: our own transient trouble (database).
    """

    def receive(self, request: HttpRequest) -> list[CloudEvent]:
        body = parse.read_body(request, conf.receiver()["MAX_BYTES"])
        return [from_envelope(envelope_of(request, body))]

    def answer(
        self, reports: list[dispatch.Report], received: list[CloudEvent]
    ) -> HttpResponse:
        # Pub/Sub reads no response body: replies go out through the handler, also
        # when another target failed (the replying ones will be skipped on the
        # redelivery).
        self.send_owed(owed_replies(reports, received))
        if any(report.failed for report in reports):
            return failure(reports)
        return HttpResponse(status=204)


def envelope_of(request: HttpRequest, body: bytes) -> Any:
    """The push wrapper: the body itself, or the data of an Eventarc event."""
    content_type = request.META.get("CONTENT_TYPE", "")
    media = content_type.split(";")[0].strip().lower()
    if "HTTP_CE_SPECVERSION" in request.META:
        outer = parse.from_binary(request.META, content_type, body)
    elif media.startswith("application/cloudevents"):
        if media != "application/cloudevents+json":
            raise parse.UnsupportedFormat(f"unsupported event format {media}")
        outer = parse.from_structured(parse.load_json(body, envelope=True))
    else:
        return parse.load_json(body)
    if outer.get_type() != MESSAGE_PUBLISHED:
        raise parse.BadEvent(
            f"a {outer.get_type()[:60]} event is not a Pub/Sub push delivery; "
            "post it to the receiver"
        )
    return outer.get_data()


def from_envelope(envelope: Any) -> CloudEvent:
    """The CloudEvent in a push wrapper; raises BadEvent when there is none."""
    if not isinstance(envelope, dict) or not isinstance(envelope.get("message"), dict):
        raise parse.BadEvent("not a Pub/Sub push delivery: no message object")
    message = envelope["message"]
    attributes = message.get("attributes") or {}
    if not isinstance(attributes, dict) or not all(
        isinstance(value, str) for value in attributes.values()
    ):
        raise parse.BadEvent("message.attributes must map names to strings")
    return from_message(decode(message.get("data")), attributes)


def decode(data: Any) -> bytes:
    if data is None:  # a message may carry attributes only
        return b""
    if not isinstance(data, str):
        raise parse.BadEvent("message.data must be a base64 string")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise parse.BadEvent("message.data is not valid base64") from None


def from_message(data: bytes, attributes: dict[str, str]) -> CloudEvent:
    """One Pub/Sub message (data and attributes) as a CloudEvent, strictly."""
    content_type = next(
        (attributes[key] for key in CONTENT_TYPE_KEYS if attributes.get(key)), ""
    )
    media = content_type.split(";")[0].strip().lower()
    if media.startswith("application/cloudevents-batch"):
        raise parse.BadEvent("the Pub/Sub binding has no batched mode")
    if media.startswith("application/cloudevents"):
        if media != "application/cloudevents+json":
            raise parse.UnsupportedFormat(f"unsupported event format {media}")
        return parse.from_structured(parse.load_json(data, envelope=True))
    event: dict[str, Any] = {}
    for key, value in attributes.items():
        if not key.startswith("ce-") or key == "ce-datacontenttype":
            continue  # other attributes (e.g. googclient_*) are not the event's
        name = key[3:]
        if name not in events.CORE_ATTRIBUTES:
            parse.check_extension(name, value)
        parse.check_string(name, value)
        event[name] = value  # binding 3.1.3.2: values are not percent-encoded
    if "specversion" not in event:
        raise parse.BadEvent("not a CloudEvent: no ce-specversion attribute")
    parse.check_required(event)
    if content_type:
        event["datacontenttype"] = content_type
    return parse.build(event, parse.decode_data(data, content_type))
