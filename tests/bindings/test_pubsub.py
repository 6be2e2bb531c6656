"""The Pub/Sub binding, publishing: binary mode and its fallback to structured."""

from __future__ import annotations

import json

from django_cloudevents_bridge import events
from django_cloudevents_bridge.bindings import jsonformat, pubsub


def test_pubsub_binary_and_fallback_to_structured():
    event = events.new("t", data={"k": "€"}, extensions={"note": "Euro € 😀"})
    data, attributes = pubsub.to_pubsub(event)
    assert attributes["ce-note"] == "Euro € 😀"  # no percent-encoding in Pub/Sub
    assert attributes["content-type"] == "application/json"
    assert json.loads(data) == {"k": "€"}

    big = events.new("t", data={"k": 1}, extensions={"note": "x" * 1025})
    data, attributes = pubsub.to_pubsub(big)
    assert attributes == {"content-type": jsonformat.STRUCTURED_JSON}
    assert json.loads(data)["note"] == "x" * 1025
