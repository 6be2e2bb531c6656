"""Replies for Knative's RequestReply: the request's correlation id comes back as
the reply's reply id, in the HTTP response (inline) and through the emit path
(deferred)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from django_cloudevents_bridge import events, work
from django_cloudevents_bridge.events import CloudEvent
from django_cloudevents_bridge.targets.groups import (
    register_group_handler,
    unregister_group_handler,
)

pytestmark = pytest.mark.django_db(transaction=True)

TYPE = "com.example.quote.requested"
CORRELATION = "aGVsbG8:replica-1:c2lnbmVk"  # opaque, as RequestReply signs it


def quote(event: CloudEvent) -> CloudEvent:
    return events.new("com.example.quote.given", source="/quotes", data={"p": 1})


def quote_with_own_reply_id(event: CloudEvent) -> CloudEvent:
    return events.new(
        "com.example.quote.given", source="/quotes", extensions={"replyid": "mine"}
    )


@pytest.fixture
def replier() -> Iterator[Any]:
    registered: list[Any] = []

    def register(function: Any) -> None:
        register_group_handler(function, group=r"^com\.example\.quote\.requested$")
        registered.append(function)

    yield register
    for function in registered:
        unregister_group_handler(function)


def request(id: str = "q-1", **extensions: str) -> Any:
    headers = {f"ce-{name}": value for name, value in extensions.items()}
    return Client(enforce_csrf_checks=True).generic(
        "POST",
        "/cloudevents/",
        b"{}",
        content_type="application/json",
        headers={
            "ce-specversion": "1.0",
            "ce-id": id,  # a new id each time: a redelivery gets the stored reply
            "ce-source": "/client",
            "ce-type": TYPE,
            **headers,
        },
    )


def test_the_reply_carries_the_correlation_id_as_reply_id(replier) -> None:
    replier(quote)
    response = request(correlationid=CORRELATION)
    assert response.status_code == 200
    assert response["ce-type"] == "com.example.quote.given"
    assert response["ce-replyid"] == CORRELATION
    assert "ce-correlationid" not in response


def test_no_correlation_id_no_reply_id(replier) -> None:
    replier(quote)
    response = request()
    assert response.status_code == 200
    assert "ce-replyid" not in response


def test_a_reply_id_set_by_the_handler_is_kept(replier) -> None:
    replier(quote_with_own_reply_id)
    assert request(correlationid=CORRELATION)["ce-replyid"] == "mine"


def test_attribute_names_are_settings(replier, settings) -> None:
    replier(quote)
    settings.CLOUDEVENTS_RECEIVER = {
        "CORRELATION_ATTRIBUTE": "correlate",
        "REPLY_ATTRIBUTE": "reply",
    }
    response = request(correlate="abc", correlationid="other")
    assert response["ce-reply"] == "abc"
    assert "ce-replyid" not in response
    settings.CLOUDEVENTS_RECEIVER = {"CORRELATION_ATTRIBUTE": None}
    assert "ce-reply" not in request("q-2", correlate="abc")
    assert "ce-replyid" not in request("q-3", correlationid="abc")


def test_deferred_replies_carry_it_through_the_emit_path(
    replier, settings, sent_events
) -> None:
    replier(quote)
    settings.CLOUDEVENTS_RECEIVER = {"MODE": "deferred", "TASK_BACKEND": False}
    assert request(correlationid=CORRELATION).status_code == 202
    assert sent_events == []
    assert work.process()["done"] == 1
    [reply] = sent_events
    assert reply.get_type() == "com.example.quote.given"
    assert reply.get_extension("replyid") == CORRELATION
    assert reply.get_extension("correlationid") is None


def test_bad_attribute_names_fail_the_checks(settings) -> None:
    from django_cloudevents_bridge import checks

    settings.CLOUDEVENTS_RECEIVER = {"REPLY_ATTRIBUTE": "Reply-Id"}
    messages = [error.msg for error in checks.check_receiver_auth()]
    assert any("REPLY_ATTRIBUTE must be an attribute name" in m for m in messages)


def test_replies_name_their_cause_and_conversation(replier) -> None:
    replier(quote)
    response = request("q-10")
    assert response["ce-causationid"] == "q-10"
    assert response["ce-correlationid"] == "q-10"  # the first event of it


def test_a_conversation_id_carries_through(replier) -> None:
    replier(quote)
    response = request("q-11", correlationid="order-7")
    # RequestReply's attribute: the reply carries it back as replyid, not as its
    # own correlationid; the cause is still named.
    assert response["ce-replyid"] == "order-7"
    assert "ce-correlationid" not in response
    assert response["ce-causationid"] == "q-11"


def test_events_a_handler_emits_carry_them_too(replier, sent_events) -> None:
    def forward(event: CloudEvent) -> None:
        from django_cloudevents_bridge import emit

        emit([events.new("com.example.quote.logged", source="/quotes")])

    replier(forward)
    settings_free = request("q-12")
    assert settings_free.status_code == 202
    [logged] = sent_events
    assert logged.get_extension("causationid") == "q-12"
    assert logged.get_extension("correlationid") == "q-12"
    outside = events.new("com.example.other", source="/x")
    assert outside.get_extension("causationid") is None
