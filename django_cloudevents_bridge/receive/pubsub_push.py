"""Pub/Sub push deliveries -> CloudEvents -> the same dispatch.

The wrapper (or Eventarc's messagePublished event around it) is read by
``bindings.pubsub``; this view runs the receiver's dispatch on the inner event.
"""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt

from .. import conf
from ..bindings.http import read_body
from ..bindings.pubsub import (  # noqa: F401 - the names this module had
    CONTENT_TYPE_KEYS,
    MESSAGE_PUBLISHED,
    decode,
    envelope_of,
    from_envelope,
    from_message,
)
from ..events import CloudEvent
from . import dispatch
from .views import ReceiverView, failure, owed_replies

logger = logging.getLogger("django_cloudevents_bridge")


@method_decorator(csrf_exempt, name="dispatch")
class PubSubPushView(ReceiverView):
    """POST Pub/Sub push deliveries here (or Eventarc's messagePublished events).

    204: processed, duplicates included (Pub/Sub acks any 2xx). 400/413/415: the
    message is malformed; Pub/Sub retries it like any non-2xx, so give the
    subscription a dead-letter topic. 500: a target failed (a redelivery runs
    only what failed). 503: our own transient trouble (database).
    """

    def receive(self, request: HttpRequest) -> list[CloudEvent]:
        body = read_body(request, conf.receiver()["MAX_BYTES"])
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
