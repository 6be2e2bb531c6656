"""The JSON event format: what to_json writes and from_json reads back."""

from __future__ import annotations

import json

import pytest

from django_cloudevents_bridge import events
from django_cloudevents_bridge.bindings import jsonformat


def test_json_round_trip_keeps_id_time_and_data():
    event = events.new(
        "t", data={"k": [1, 2]}, subject="s", extensions={"djangoapp": "a"}
    )
    again = jsonformat.from_json(jsonformat.to_json(event))
    assert again.get_attributes() == event.get_attributes()
    assert again.get_data() == event.get_data()


@pytest.mark.parametrize(
    "content_type, data",
    [("Application/JSON", {"a": 1}), ("text/plain", [1, 2]), (None, "text")],
)
def test_json_format_keeps_data_as_its_json_value(content_type, data):
    event = events.new("t", data=data, datacontenttype=content_type)
    document = json.loads(jsonformat.to_json(event))
    assert document["data"] == data
    assert jsonformat.from_json(jsonformat.to_json(event)).get_data() == data


def test_json_format_writes_bytes_as_base64():
    event = events.new(
        "t", data=b"\x00\xff", datacontenttype="application/octet-stream"
    )
    document = json.loads(jsonformat.to_json(event))
    assert document["data_base64"] == "AP8="
    assert "data" not in document


def test_json_round_trip_invents_no_time():
    event = events.from_attributes(
        {"specversion": "1.0", "id": "1", "source": "/s", "type": "t"}
    )
    assert (
        "time" not in jsonformat.from_json(jsonformat.to_json(event)).get_attributes()
    )
