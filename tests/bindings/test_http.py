"""The HTTP binding, out: binary-mode headers, structured and batched content types."""

from __future__ import annotations

import json

from django_cloudevents_bridge import events
from django_cloudevents_bridge.bindings import http


def test_binary_http_headers():
    event = events.new(
        "t", data={"k": "v"}, subject="s p", extensions={"flag": True, "count": 5}
    )
    headers, body = http.to_http(event)
    assert headers["Content-Type"] == "application/json"
    assert "ce-datacontenttype" not in headers
    assert headers["ce-subject"] == "s%20p"
    assert headers["ce-flag"] == "true"
    assert headers["ce-count"] == "5"
    assert json.loads(body) == {"k": "v"}


def test_structured_content_types_use_a_lower_case_charset():
    # Equal by the spec; the JavaScript SDK refuses "charset=UTF-8".
    event = events.new("t", data={"k": 1})
    assert http.to_http(event, structured=True)[0] == {
        "Content-Type": "application/cloudevents+json; charset=utf-8"
    }
    assert http.to_http_batch([event])[0] == {
        "Content-Type": "application/cloudevents-batch+json; charset=utf-8"
    }
