"""The data of a binary-mode message, the same in the HTTP and Pub/Sub bindings."""

from __future__ import annotations

import json

import pytest

from django_cloudevents_bridge import events
from django_cloudevents_bridge.bindings import http, jsonformat, pubsub


@pytest.mark.parametrize("content_type", ["application/json", "text/vnd.a+JSON"])
def test_text_under_a_json_type_is_a_json_string_in_binary_mode(content_type):
    event = events.new("t", data="hello € world", datacontenttype=content_type)
    _headers, body = http.to_http(event)
    assert json.loads(body) == "hello € world"
    data, _attributes = pubsub.to_pubsub(event)
    assert json.loads(data) == "hello € world"


@pytest.mark.parametrize("data", [{"pong": True}, [1, 2], 5, False, "text", ""])
def test_data_without_a_datacontenttype_is_sent_as_json_and_says_so(data):
    # A target's reply built as CloudEvent(attributes, {"pong": True}); the JSON
    # event format reads data without a datacontenttype as JSON, so text too.
    event = events.from_attributes(
        {"specversion": "1.0", "id": "1", "source": "/s", "type": "t"}, data
    )
    headers, body = http.to_http(event)
    assert (headers["Content-Type"], json.loads(body)) == ("application/json", data)
    message, attributes = pubsub.to_pubsub(event)
    assert (attributes["content-type"], json.loads(message)) == (
        "application/json",
        data,
    )
    assert json.loads(jsonformat.to_json(event))["data"] == data  # as structured mode


@pytest.mark.parametrize("data", [b"\x00", None])
def test_bytes_or_no_data_without_a_datacontenttype_name_no_type(data):
    event = events.from_attributes(
        {"specversion": "1.0", "id": "1", "source": "/s", "type": "t"}, data
    )
    assert "Content-Type" not in http.to_http(event)[0]
    assert "content-type" not in pubsub.to_pubsub(event)[1]


def test_text_under_a_text_type_goes_as_it_is():
    event = events.new("t", data="hello €", datacontenttype="text/plain")
    assert http.to_http(event)[1] == "hello €".encode()
    assert pubsub.to_pubsub(event)[0] == "hello €".encode()
