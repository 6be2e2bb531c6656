"""Secrets never leave, whatever path the data takes (issue 12, item 10).

Every event the bridge builds from data goes through ``events.new()``, which
leaves out the keys that look like secrets, at any depth, with a warning. Each
path is followed to the end: the outbox row, then a real sink on a loopback port
(through the relay), or the receiver's HTTP answer for a reply.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
from django.conf import settings as django_settings
from django.db.models.signals import post_save
from django.test import Client

from django_cloudevents_bridge import BaseEvent, conf, events, log
from django_cloudevents_bridge.emit import emit, handlers, serialize
from django_cloudevents_bridge.emit.relay import Relay
from django_cloudevents_bridge.events import CloudEvent
from django_cloudevents_bridge.models import OutboxEvent, TargetRun
from django_cloudevents_bridge.targets import groups, named
from tests.sink import Sink
from tests.testapp.models import Tag

pytestmark = pytest.mark.django_db(transaction=True)

HASH = "pbkdf2_sha256$720000$salt$c2VjcmV0LWhhc2g="
SECRETS = ("hunter2", HASH, "t0k3n-value", "k3y-value")
# What a project sends, secrets and all; and what must arrive of it.
DATA = {
    "email": "ann@example.com",
    "password": "hunter2",
    "api_key": "k3y-value",
    "profile": {"name": "ann", "token": "t0k3n-value", "tokens_used": 3},
    "items": [{"accessToken": "t0k3n-value", "sku": "A1"}, {"X-Api-Key": "k3y-value"}],
    "author": "ann",
}
SENT = {
    "email": "ann@example.com",
    "profile": {"name": "ann", "tokens_used": 3},
    "items": [{"sku": "A1"}, {}],
    "author": "ann",
}
CSRF_TOKEN = "t" * 32


@pytest.fixture(autouse=True)
def _fresh_warnings() -> None:
    serialize._reported.clear()  # each test sees its own warnings


@pytest.fixture
def delivered(settings, http_sink: Sink) -> Callable[[int], list[CloudEvent]]:
    """Outbox delivery; ``delivered(n)`` runs the relay and returns what the sink got.

    Neither the outbox rows nor anything on the wire (headers, body) may hold
    one of the secrets.
    """
    settings.CLOUDEVENTS_DELIVERY = "outbox"
    settings.CLOUDEVENTS_OUTBOX = {"BACKGROUND": False}

    def run(count: int) -> list[CloudEvent]:
        rows = list(OutboxEvent.objects.values_list("event", flat=True))
        assert len(rows) == count
        for secret in SECRETS:
            assert not any(secret in row for row in rows), secret
        handler = handlers.get_handler(**settings.CLOUDEVENTS_HANDLER_OPTIONS)
        Relay(handler, options=conf.outbox()).drain()
        received = http_sink.wait_for(count)
        for request in received:
            wire = json.dumps(request.headers).encode() + request.body
            assert request.problems == []
            for secret in SECRETS:
                assert secret.encode() not in wire, secret
        return [request.event for request in received]

    return run


def warned(caplog) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if "looks like a secret" in r.getMessage()
    ]


# --- log() and the HTTP log view ---------------------------------------------------


def test_log_sends_no_secret(delivered, caplog):
    cloudevent = log("testapp.Signup", DATA)

    assert cloudevent.get_data() == SENT  # what log() returns is what is sent
    [received] = delivered(1)
    assert received.get_type() == "testapp.Signup"
    assert received.get_data() == SENT
    assert warned(caplog) == [
        f"testapp.Signup: the key {key!r} looks like a secret and is not sent (see "
        "CLOUDEVENTS_SENSITIVE_FIELDS)"
        for key in ("password", "api_key", "token", "accessToken", "X-Api-Key")
    ]


@pytest.fixture
def page() -> Client:
    """A browser that has the CSRF cookie, as after loading a page."""
    client = Client(enforce_csrf_checks=True)
    client.cookies[django_settings.CSRF_COOKIE_NAME] = CSRF_TOKEN
    return client


def test_log_view_form_post_sends_no_secret(delivered, page):
    response = page.post(
        "/cloudevents/log?__event__=testapp.Signup&password=hunter2",
        {"email": "ann@example.com", "api_key": "k3y-value", "tokens_used": "3"},
        headers={"X-CSRFToken": CSRF_TOKEN},
    )

    assert response.status_code == 202
    [received] = delivered(1)
    assert received.get_data() == {"email": "ann@example.com", "tokens_used": "3"}


def test_log_view_json_post_sends_no_secret(delivered, page):
    # A page posting JSON: the view takes its data from the query string.
    response = page.post(
        "/cloudevents/log?__event__=testapp.Signup&email=ann@example.com"
        "&password=hunter2&authToken=t0k3n-value&author=ann",
        {"ignored": True},
        content_type="application/json",
        headers={"X-CSRFToken": CSRF_TOKEN},
    )

    assert response.status_code == 202
    [received] = delivered(1)
    assert received.get_data() == {"email": "ann@example.com", "author": "ann"}


def test_a_clean_that_requires_a_secret_fails_in_the_caller(page, sent_events):
    # The key would never reach the receiver: the caller hears so at once (400
    # here, ValidationError from log()), not the receiver's clean() later.
    class Login(BaseEvent):
        __module__ = "tests.testapp.events"  # declared in the test app
        http_log = True

        def clean(self) -> None:
            self.require_data_keys(["password"])

    try:
        response = page.post(
            "/cloudevents/log?__event__=testapp.Login&password=hunter2",
            headers={"X-CSRFToken": CSRF_TOKEN},
        )
    finally:
        named._events.pop(Login.name)

    assert response.status_code == 400
    assert response.json() == {"error": "missing data key(s): password"}
    assert sent_events == []


# --- model event sources -----------------------------------------------------------


@pytest.fixture
def source() -> Iterator[None]:
    def tag_events(tag: Tag) -> Iterator[dict]:
        yield {
            "group": "tag.saved",
            "key": f"tag.saved:{tag.pk}",
            "context": {**DATA, "password": HASH, "owner": tag},
        }

    groups.register_model_event_source(sender=Tag, source=tag_events)
    yield
    groups.MODEL_SOURCES.pop(Tag, None)
    post_save.disconnect(sender=Tag, dispatch_uid=groups.DISPATCH_UID)


def test_a_model_event_source_context_sends_no_secret(delivered, source, caplog):
    Tag.objects.create(name="news")

    [received] = delivered(1)
    assert received.get_type() == "tag.saved"
    assert received.get_data() == {**SENT, "owner": "news"}
    assert "tag.saved: the key 'password' looks like a secret" in caplog.text


# --- emit() of events built with events.new() ---------------------------------------


def test_emit_of_a_built_event_sends_no_secret(delivered):
    emit([events.new("com.example.order.placed", data=DATA)])

    [received] = delivered(1)
    assert received.get_data() == SENT


def test_an_event_built_with_the_sdk_class_is_sent_as_built(sent_events):
    # The documented way to send a key the rule leaves out, on purpose (say a
    # one-time token for a mailer of your own): build the CloudEvent yourself.
    hand_built = CloudEvent(
        {
            "type": "com.example.reset",
            "source": "/shop",
            "datacontenttype": "application/json",
        },
        {"reset_token": "t0k3n-value"},
    )
    emit([hand_built])

    [sent] = sent_events
    assert sent.get_data() == {"reset_token": "t0k3n-value"}


# --- replies of a group handler -------------------------------------------------------


@pytest.fixture
def replying() -> Iterator[None]:
    """Two group handlers that reply with secrets: one reply goes in the answer,
    the other through the handler (the outbox)."""

    def billing(event: CloudEvent) -> CloudEvent:
        return events.new(
            "com.example.invoice", data={**DATA, "card_token": "t0k3n-value"}
        )

    def shipping(event: CloudEvent) -> CloudEvent:
        return events.new("com.example.shipment", data={"label": 1, "auth": "hunter2"})

    groups.register_group_handler(billing, group=r"^com\.example\.order\.")
    groups.register_group_handler(shipping, group=r"^com\.example\.order\.")
    yield
    groups.unregister_group_handler(billing)
    groups.unregister_group_handler(shipping)


def test_replies_send_no_secret(delivered, replying):
    response = Client().generic(
        "POST",
        "/cloudevents/",
        b'{"order": 1}',
        content_type="application/json",
        headers={
            "ce-specversion": "1.0",
            "ce-id": "order-1",
            "ce-source": "/shop",
            "ce-type": "com.example.order.created",
        },
    )

    assert response.status_code == 200
    assert response["ce-type"] == "com.example.invoice"
    answer = json.dumps(dict(response.headers)).encode() + response.content
    kept = "".join(TargetRun.objects.values_list("reply", flat=True))
    for secret in SECRETS:
        assert secret.encode() not in answer, secret
        assert secret not in kept, secret
    assert json.loads(response.content) == SENT
    [forwarded] = delivered(1)
    assert forwarded.get_type() == "com.example.shipment"
    assert forwarded.get_data() == {"label": 1}
