"""The Pub/Sub push receiver: push envelopes -> CloudEvents -> the same dispatch."""

from __future__ import annotations

import base64
import datetime
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied
from django.core.servers.basehttp import WSGIServer
from django.db import DatabaseError, connections
from django.test import Client
from django.test.testcases import LiveServerThread, _StaticFilesHandler

from django_cloudevents_bridge import events, register_group_handler
from django_cloudevents_bridge.bindings import http, jsonformat, pubsub
from django_cloudevents_bridge.exceptions import AuthUnavailable, NotAuthenticated
from django_cloudevents_bridge.models import ReceivedEvent, TargetRun
from django_cloudevents_bridge.receive import auth, dispatch
from django_cloudevents_bridge.targets.groups import unregister_group_handler
from tests.pubsub_emulator import connect

pytestmark = pytest.mark.django_db

URL = "/cloudevents/pubsub/"
RECEIVER = "/cloudevents/"
EXAMPLES = (
    Path(__file__).resolve().parents[3]
    / "shared/cloudevents-spec/google-cloudevents/examples"
)
SUBSCRIPTION = "projects/test-project/subscriptions/my-subscription"
EURO = "Euro € 😀"


def envelope(data: bytes, attributes: dict[str, str], **message: Any) -> dict:
    """A push delivery as Pub/Sub sends it."""
    return {
        "message": {
            "data": base64.b64encode(data).decode(),
            "attributes": attributes,
            "messageId": "2070443601311540",
            "publishTime": "2026-11-01T09:30:00.123Z",
            **message,
        },
        "subscription": SUBSCRIPTION,
    }


def push(body: Any, url: str = URL, **headers: str):
    client = Client(enforce_csrf_checks=True)
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(
        url,
        raw,
        content_type=headers.pop("content_type", "application/json"),
        headers=headers,
    )


def question_event(**kwargs: Any) -> events.CloudEvent:
    return events.new(
        "polls.question.published",
        source="//pubsub.test/polls",
        subject=EURO,
        id=kwargs.pop("id", "q-1"),
        time=datetime.datetime(2026, 11, 1, 9, 30, tzinfo=datetime.UTC),
        extensions={"djangoapp": "polls", "tenant": "a b%20c"},
        data={"question": 1, "text": EURO},
        **kwargs,
    )


@pytest.fixture
def received() -> Iterator[list[events.CloudEvent]]:
    """Events a group handler for every type received, in order."""
    got: list[events.CloudEvent] = []

    def record(event: events.CloudEvent) -> None:
        got.append(event)

    register_group_handler(record, group=r".")
    yield got
    unregister_group_handler(record)


def assert_same(got: events.CloudEvent, sent: events.CloudEvent) -> None:
    assert got.get_attributes() == sent.get_attributes()
    assert got.get_data() == sent.get_data()


# Both modes of the binding, built by the emitter's own encoder.


@pytest.mark.parametrize("structured", [False, True], ids=["binary", "structured"])
def test_message_from_to_pubsub_is_dispatched(received, structured):
    sent = question_event()
    data, attributes = pubsub.to_pubsub(sent, structured=structured)

    response = push(envelope(data, attributes))

    assert response.status_code == 204
    assert response.content == b""
    [got] = received
    assert_same(got, sent)
    assert got.get_extension("tenant") == "a b%20c"  # attributes aren't %-decoded


def test_redelivery_runs_the_handler_once(received):
    data, attributes = pubsub.to_pubsub(question_event())
    delivery = envelope(data, attributes)

    first, second = push(delivery), push(delivery)

    assert (first.status_code, second.status_code) == (204, 204)
    assert len(received) == 1
    stored = ReceivedEvent.objects.get(event_id="q-1")
    assert stored.deliveries == 2


def test_a_new_message_id_with_the_same_event_id_is_a_duplicate(received):
    # Pub/Sub may publish twice (a retried publish gets a new messageId); the
    # CloudEvent's (source, id) is what identifies it.
    data, attributes = pubsub.to_pubsub(question_event())

    push(envelope(data, attributes, messageId="1"))
    push(envelope(data, attributes, messageId="2"))

    assert len(received) == 1


@pytest.mark.parametrize("key", ["content-type", "Content-Type", "ce-datacontenttype"])
def test_content_type_attribute_spellings(received, key):
    # The binding says content-type; sdk-go writes Content-Type; the binding's
    # own example shows ce-datacontenttype.
    data, attributes = pubsub.to_pubsub(question_event())
    attributes[key] = attributes.pop("content-type")

    assert push(envelope(data, attributes)).status_code == 204
    [got] = received
    assert got.get_datacontenttype() == "application/json"
    assert got.get_data() == {"question": 1, "text": EURO}


def test_structured_mode_detected_from_content_type_case_insensitively(received):
    sent = question_event()
    data, _ = pubsub.to_pubsub(sent, structured=True)

    push(envelope(data, {"Content-Type": "Application/CloudEvents+JSON"}))

    assert_same(received[0], sent)


def test_binary_data_without_content_type_stays_bytes(received):
    sent = events.new(
        "raw.bytes", source="/raw", id="r-1", data=b"\x00\x01", datacontenttype=None
    )
    data, attributes = pubsub.to_pubsub(sent)
    assert "content-type" not in attributes

    push(envelope(data, attributes))

    assert received[0].get_data() == b"\x00\x01"
    assert received[0].get_datacontenttype() is None


def test_message_with_attributes_only(received):
    push(
        {
            "message": {
                "attributes": {
                    "ce-specversion": "1.0",
                    "ce-id": "a-1",
                    "ce-source": "/attrs",
                    "ce-type": "only.attributes",
                    "googclient_schemaencoding": "JSON",  # not the event's
                },
                "messageId": "1",
            }
        }
    )

    [got] = received
    assert got.get_data() is None
    assert "googclientschemaencoding" not in got.get_attributes()
    assert got.get_time() is None  # never invented


def test_ordering_key_and_other_attributes_are_not_event_attributes(received):
    data, attributes = pubsub.to_pubsub(question_event())
    attributes["origin"] = "batch-job"

    push(envelope(data, attributes, orderingKey="polls.question:1"))

    assert_same(received[0], question_event())


def test_no_trailing_slash_is_served_too(received):
    data, attributes = pubsub.to_pubsub(question_event())

    response = push(envelope(data, attributes), url=URL.rstrip("/"))

    assert response.status_code == 204  # a 3xx would be a failure to Pub/Sub
    assert len(received) == 1


# Malformed deliveries: 400 with a JSON reason (a dead-letter topic stops the
# retries Pub/Sub makes on any non-2xx).


def without(attributes: dict[str, str], name: str) -> dict[str, str]:
    return {key: value for key, value in attributes.items() if key != name}


def binary_attributes() -> dict[str, str]:
    return pubsub.to_pubsub(question_event())[1]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "body is not valid JSON"),
        ([], "no message object"),
        ({"subscription": SUBSCRIPTION}, "no message object"),
        ({"message": "text"}, "no message object"),
        ({"message": {"data": "***", "attributes": {}}}, "not valid base64"),
        ({"message": {"data": "AQI", "attributes": {}}}, "not valid base64"),
        ({"message": {"data": 12}}, "must be a base64 string"),
        ({"message": {"attributes": ["ce-id"]}}, "map names to strings"),
        ({"message": {"attributes": {"ce-id": 1}}}, "map names to strings"),
        (
            envelope(b"{}", without(binary_attributes(), "ce-id")),
            "missing or empty id",
        ),
        (
            envelope(b"{}", without(binary_attributes(), "ce-specversion")),
            "not a CloudEvent: no ce-specversion attribute",
        ),
        (
            envelope(b"{}", {**binary_attributes(), "ce-specversion": "0.3"}),
            "unsupported specversion",
        ),
        (
            envelope(b"{}", {**binary_attributes(), "ce-Tenant": "x"}),
            "invalid attribute name",
        ),
        (
            envelope(b"{}", {**binary_attributes(), "ce-time": "yesterday"}),
            "not an RFC 3339 timestamp",
        ),
        (
            envelope(b"{}", {**binary_attributes(), "ce-subject": "a\x00b"}),
            "subject holds a character",
        ),
        (
            envelope(b"{}", {**binary_attributes(), "ce-id": "x" * 256}),
            "id longer than 255 characters",
        ),
        (envelope(b"{nope", binary_attributes()), "body is not valid JSON"),
        (
            envelope(b"not json", {"content-type": jsonformat.STRUCTURED_JSON}),
            "body is not valid JSON",
        ),
        (
            envelope(b'{"id": "1"}', {"content-type": jsonformat.STRUCTURED_JSON}),
            "unsupported specversion",
        ),
        (
            envelope(b"[]", {"content-type": jsonformat.BATCH_JSON}),
            "no batched mode",
        ),
    ],
)
def test_malformed_delivery_is_400(received, body, reason):
    response = push(body)

    assert response.status_code == 400
    assert reason in response.json()["error"]
    assert received == []
    assert not ReceivedEvent.objects.exists()


def test_unknown_event_format_is_415(received):
    response = push(envelope(b"...", {"content-type": "application/cloudevents+avro"}))

    assert response.status_code == 415
    assert received == []


def test_body_over_the_limit_is_413(received, settings):
    settings.CLOUDEVENTS_RECEIVER = {"MAX_BYTES": 100}
    data, attributes = pubsub.to_pubsub(question_event())

    response = push(envelope(data, attributes))

    assert response.status_code == 413


# The files in shared/: push envelopes of plain (non-CloudEvent) messages, and
# the Eventarc CloudEvent whose data is such an envelope.


@pytest.mark.parametrize(
    "name", ["MessagePublishedData-simple.json", "MessagePublishedData-complex.json"]
)
def test_example_push_envelopes_carry_no_cloudevent(received, name):
    body = (EXAMPLES / "binary/pubsub" / name).read_bytes()

    response = push(body)

    assert response.status_code == 400
    assert response.json() == {"error": "not a CloudEvent: no ce-specversion attribute"}


def test_eventarc_example_at_the_receiver_is_a_message_published_event(received):
    # Eventarc's event is a CloudEvent in its own right: at the receiver, group
    # handlers get it with the push wrapper as data, unchanged.
    body = (EXAMPLES / "structured/pubsub/MessagePublishedData.json").read_bytes()

    response = push(body, url=RECEIVER, content_type=jsonformat.STRUCTURED_JSON)

    assert response.status_code == 202
    [got] = received
    assert got.get_type() == "google.cloud.pubsub.topic.v1.messagePublished"
    assert got.get_id() == "3103425958877813"
    assert got.get_data()["message"]["attributes"] == {"attr1": "attr1-value"}
    assert base64.b64decode(got.get_data()["message"]["data"]) == b"test message 3"


def test_eventarc_example_at_the_push_view_has_no_inner_cloudevent(received):
    body = (EXAMPLES / "structured/pubsub/MessagePublishedData.json").read_bytes()

    response = push(body, content_type=jsonformat.STRUCTURED_JSON)

    assert response.status_code == 400
    assert "no ce-specversion attribute" in response.json()["error"]
    assert received == []


def eventarc(wrapped: events.CloudEvent, *, structured: bool) -> events.CloudEvent:
    """The example Eventarc event, its message replaced by one carrying ``wrapped``."""
    example = json.loads(
        (EXAMPLES / "structured/pubsub/MessagePublishedData.json").read_bytes()
    )
    data, attributes = pubsub.to_pubsub(wrapped, structured=structured)
    example["data"]["message"].update(
        data=base64.b64encode(data).decode(), attributes=attributes
    )
    return jsonformat.from_json(json.dumps(example))


@pytest.mark.parametrize(
    "http_structured", [False, True], ids=["http-binary", "http-structured"]
)
@pytest.mark.parametrize("structured", [False, True], ids=["binary", "structured"])
def test_eventarc_event_is_unwrapped_at_the_push_view(
    received, structured, http_structured
):
    sent = question_event()
    outer = eventarc(sent, structured=structured)
    headers, body = http.to_http(outer, structured=http_structured)
    content_type = headers.pop("Content-Type")

    response = push(body, content_type=content_type, **headers)

    assert response.status_code == 204
    [got] = received
    assert_same(got, sent)


def test_other_cloudevents_are_not_push_deliveries(received):
    headers, body = http.to_http(question_event())
    content_type = headers.pop("Content-Type")

    response = push(body, content_type=content_type, **headers)

    assert response.status_code == 400
    assert "post it to the receiver" in response.json()["error"]


def test_avro_cloudevent_at_the_push_view_is_415(received):
    response = push(b"...", content_type="application/cloudevents+avro")

    assert response.status_code == 415


# Failures of our own: 5xx, so Pub/Sub redelivers.


def test_failing_target_is_500_and_the_redelivery_runs_only_it(received):
    broken = {"yes": True}

    def flaky(event: events.CloudEvent) -> None:
        if broken["yes"]:
            raise RuntimeError("boom")

    register_group_handler(flaky, group=r"^polls\.")
    try:
        delivery = envelope(*pubsub.to_pubsub(question_event()))
        first = push(delivery)
        broken["yes"] = False
        second = push(delivery)
    finally:
        unregister_group_handler(flaky)

    assert first.status_code == 500
    assert first.json() == {"error": "1 target(s) failed; retry"}
    assert second.status_code == 204
    assert len(received) == 1  # the other target did not run again
    runs = TargetRun.objects.filter(event__event_id="q-1")
    assert {run.status for run in runs} == {TargetRun.Status.DONE}
    assert sorted(run.attempts for run in runs) == [1, 2]


def test_database_error_is_503(received, monkeypatch):
    def unavailable(event: events.CloudEvent, report: object = None) -> None:
        raise DatabaseError("database is locked")

    monkeypatch.setattr(dispatch, "deliver", unavailable)

    response = push(envelope(*pubsub.to_pubsub(question_event())))

    assert response.status_code == 503
    assert response["Retry-After"] == "1"


@pytest.mark.parametrize(
    ("error", "status", "headers"),
    [
        (PermissionDenied("not this sender"), 403, {}),
        (
            NotAuthenticated("no token", challenge='Bearer realm="push"'),
            401,
            {"WWW-Authenticate": 'Bearer realm="push"'},
        ),
        (AuthUnavailable("issuer down"), 503, {"Retry-After": "5"}),
    ],
)
def test_authentication_outcomes(received, monkeypatch, error, status, headers):
    def refuse(request: Any) -> None:
        raise error

    monkeypatch.setattr(auth, "authenticate", refuse)

    response = push(envelope(*pubsub.to_pubsub(question_event())))

    assert response.status_code == status
    assert {name: response[name] for name in headers} == headers
    assert received == []


def test_a_shared_secret_is_checked_like_at_the_receiver(received, settings):
    settings.CLOUDEVENTS_RECEIVER = {"SECRET": "s3cret"}
    delivery = envelope(*pubsub.to_pubsub(question_event()))

    refused = push(delivery)
    accepted = push(delivery, Authorization="Bearer s3cret")

    assert refused.status_code == 401
    assert accepted.status_code == 204
    assert len(received) == 1


def test_reply_events_go_out_through_the_handler(
    received, sent_events, django_capture_on_commit_callbacks
):
    def answer(event: events.CloudEvent) -> events.CloudEvent:
        return events.new("polls.question.seen", source="/tests", id="reply-1")

    register_group_handler(answer, group=r"^polls\.question\.published$")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            response = push(envelope(*pubsub.to_pubsub(question_event())))
    finally:
        unregister_group_handler(answer)

    assert response.status_code == 204  # Pub/Sub reads no body: no reply in it
    assert [event.get_id() for event in sent_events] == ["reply-1"]


def test_replies_are_sent_even_when_another_target_fails(
    received, sent_events, django_capture_on_commit_callbacks
):
    def answer(event: events.CloudEvent) -> events.CloudEvent:
        return events.new("polls.question.seen", source="/tests", id="reply-1")

    def broken(event: events.CloudEvent) -> None:
        raise RuntimeError("boom")

    register_group_handler(answer, group=r"^polls\.question\.published$")
    register_group_handler(broken, group=r"^polls\.")
    try:
        delivery = envelope(*pubsub.to_pubsub(question_event()))
        with django_capture_on_commit_callbacks(execute=True):
            first = push(delivery)
            second = push(delivery)  # "answer" is done: skipped, no second reply
    finally:
        unregister_group_handler(answer)
        unregister_group_handler(broken)

    assert (first.status_code, second.status_code) == (500, 500)
    assert [event.get_id() for event in sent_events] == ["reply-1"]


def test_an_echoed_event_is_not_sent_again(received, sent_events):
    def echo(event: events.CloudEvent) -> events.CloudEvent:
        return event

    register_group_handler(echo, group=r"^polls\.")
    try:
        response = push(envelope(*pubsub.to_pubsub(question_event())))
    finally:
        unregister_group_handler(echo)

    assert response.status_code == 204
    assert sent_events == []


# End to end: the real emulator pushes to a live server.


class SerialWSGIServer(WSGIServer):
    """One request at a time: an in-memory SQLite connection is shared."""

    def __init__(self, *args: Any, connections_override: Any = None, **kw: Any):
        super().__init__(*args, **kw)


class SerialServerThread(LiveServerThread):
    server_class = SerialWSGIServer


@pytest.fixture
def push_endpoint(settings, transactional_db) -> Iterator[str]:
    """The push view served by a real HTTP server on a loopback port."""
    # Read when the server starts; the test settings have no static files.
    settings.STATIC_URL, settings.MEDIA_URL = "/static/", "/media/"
    settings.ALLOWED_HOSTS = ["127.0.0.1"]
    shared = {
        conn.alias: conn
        for conn in connections.all()
        if conn.vendor == "sqlite" and conn.is_in_memory_db()
    }
    for conn in shared.values():
        conn.inc_thread_sharing()
    server = SerialServerThread(
        "127.0.0.1", _StaticFilesHandler, connections_override=shared
    )
    server.daemon = True
    server.start()
    server.is_ready.wait()
    try:
        if server.error:
            raise server.error
        yield f"http://127.0.0.1:{server.port}{URL}"
    finally:
        server.terminate()
        for conn in shared.values():
            conn.dec_thread_sharing()


@pytest.mark.pubsub
def test_push_subscription_on_the_emulator(
    pubsub_emulator, monkeypatch, push_endpoint, received
):
    helper = connect(pubsub_emulator, monkeypatch)
    try:
        pushed = helper.path("subscriptions", f"push-{uuid.uuid4().hex[:12]}")
        helper.subscriber.create_subscription(
            request={
                "name": pushed,
                "topic": helper.topic,
                "push_config": {"push_endpoint": push_endpoint},
            }
        )
        binary, structured = question_event(id="e-1"), question_event(id="e-2")
        for event, mode in ((binary, False), (structured, True), (binary, False)):
            data, attributes = pubsub.to_pubsub(event, structured=mode)
            helper.publisher.publish(helper.topic, data, **attributes).result(10)

        deadline = time.monotonic() + 30
        while ReceivedEvent.objects.filter(deliveries__gte=1).count() < 2 or (
            ReceivedEvent.objects.get(event_id="e-1").deliveries < 2
        ):
            assert time.monotonic() < deadline, "the emulator did not push"
            time.sleep(0.1)
    finally:
        helper.subscriber.delete_subscription(subscription=pushed)
        helper.close()

    assert sorted(e.get_id() for e in received) == ["e-1", "e-2"]  # e-1 once
    for got in received:
        assert_same(got, binary if got.get_id() == "e-1" else structured)
