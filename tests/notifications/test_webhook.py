"""The webhook channel against a real HTTP server on loopback.

The signature is checked here independently of the channel's code: the
Standard Webhooks recipe (HMAC-SHA256 over "id.timestamp.body" under the
base64 key after "whsec_"), computed with the standard library.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import threading
from collections import Counter

import pytest
from django.utils import timezone

from django_cloudevents_bridge.checks import check_notifications
from django_cloudevents_bridge.models import Delivery
from django_cloudevents_bridge.notifications import record, send_due
from django_cloudevents_bridge.notifications.channels import get_channel
from django_cloudevents_bridge.notifications.channels.webhook import new_secret
from tests.sink import Fault, Received, Sink

from .conftest import BASE_URL, event, person

Status = Delivery.Status
pytestmark = pytest.mark.django_db

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
BACKEND = "django_cloudevents_bridge.notifications.channels.webhook.Channel"


def configure(settings, url: str, **options) -> None:
    settings.CLOUDEVENTS_NOTIFICATIONS = {
        "BASE_URL": BASE_URL,
        "BACKOFF": 60.0,
        "MAX_ATTEMPTS": 3,
        "CHANNELS": {
            "hook": {
                "BACKEND": BACKEND,
                "OPTIONS": {"url": url, "secret": SECRET, **options},
            }
        },
    }


@pytest.fixture
def hook(settings, sink: Sink) -> Sink:
    configure(settings, sink.url + "hooks?token=t0ps3cret", timeout=30)
    return sink


def verified(received: Received, secret: str = SECRET) -> bool:
    """The Standard Webhooks check, as a receiver would write it."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    webhook_id = received.headers["webhook-id"]
    timestamp = received.headers["webhook-timestamp"]
    signed = f"{webhook_id}.{timestamp}.".encode() + received.body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
    return any(
        version == "v1" and hmac.compare_digest(value.encode(), expected)
        for version, _, value in (
            part.partition(",")
            for part in received.headers["webhook-signature"].split()
        )
    )


def due_now() -> None:
    Delivery.objects.update(next_attempt_at=timezone.now())


def test_each_delivery_is_posted_as_a_signed_structured_cloudevent(hook):
    people = [person("ann@example.com"), person("bob@example.com", watch=2)]
    record(event("e-9"), "hook", [(p, event("e-9")) for p in people])

    assert send_due() == Counter(sent=2)
    received = hook.wait_for(2)
    keys = set(Delivery.objects.values_list("key", flat=True))
    assert {r.headers["webhook-id"] for r in received} == keys
    for request in received:
        assert request.problems == []
        assert request.path == "/hooks?token=t0ps3cret"
        assert request.headers["content-type"].startswith(
            "application/cloudevents+json"
        )
        assert request.attributes["id"] == "e-9"
        assert request.attributes["source"] == "/wiki"
        assert json.loads(request.body)["data"] == {"page": 1}
        assert verified(request)
        assert not verified(request, new_secret())  # another key does not verify
        stamp = int(request.headers["webhook-timestamp"])
        assert abs(stamp - timezone.now().timestamp()) < 300  # the scheme's window
    tampered = Received("POST", "/", received[0].headers, received[0].body + b" ")
    assert not verified(tampered)
    assert set(Delivery.objects.values_list("status", flat=True)) == {Status.SENT}
    assert send_due() == Counter()  # nothing is sent twice


@pytest.mark.parametrize("status", [500, 503, 408, 429])
def test_a_server_error_or_a_retryable_client_error_is_retried(hook, status):
    hook.faults.append(Fault(status=status, body=b"try later"))
    record(event(), "hook", [(person("ann@example.com"), event())])

    assert send_due() == Counter(failed=1)
    row = Delivery.objects.get()
    assert row.status == Status.FAILED
    assert row.attempts == 1
    assert f"HTTP {status}" in row.last_error
    assert "t0ps3cret" not in row.last_error  # the URL's query is not shown
    assert row.next_attempt_at > timezone.now()
    assert send_due() == Counter()  # not due yet: the backoff

    due_now()
    assert send_due() == Counter(sent=1)
    [request] = hook.wait_for(1)
    assert hook.attempts == 2
    assert request.headers["webhook-id"] == row.key  # the same id on the retry
    assert verified(request)


@pytest.mark.parametrize("status", [400, 401, 404, 410, 422, 301])
def test_any_other_client_error_or_a_redirect_is_parked_at_once(hook, status):
    hook.faults.append(
        Fault(status=status, headers={"Location": "http://127.0.0.1:9/"})
    )
    record(event(), "hook", [(person("ann@example.com"), event())])

    assert send_due() == Counter(parked=1)
    row = Delivery.objects.get()
    assert row.status == Status.PARKED
    assert row.next_attempt_at is None
    assert f"HTTP {status}" in row.last_error
    due_now()
    assert send_due() == Counter()
    assert hook.attempts == 1
    assert hook.received == []


def test_a_timeout_is_retried_and_the_batch_goes_on(settings, sink):
    configure(settings, sink.url, timeout=2)
    held = threading.Event()
    sink.faults.append(Fault(hold=held))
    record(
        event(),
        "hook",
        [(person(a), event()) for a in ("ann@example.com", "bob@example.com")],
    )
    try:
        assert send_due() == Counter(failed=1, sent=1)
    finally:
        held.set()
    failed = Delivery.objects.get(status=Status.FAILED)
    assert "did not answer" in failed.last_error

    due_now()
    assert send_due() == Counter(sent=1)
    # The held request is answered late: the receiver sees its id twice.
    ids = Counter(r.headers["webhook-id"] for r in sink.wait_for(3))
    sent = Delivery.objects.exclude(pk=failed.pk).get()
    assert ids == Counter({failed.key: 2, sent.key: 1})


def test_a_refused_connection_is_retried_then_parked(settings):
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    configure(settings, f"http://user:pw@127.0.0.1:{port}/hooks")
    record(event(), "hook", [(person("ann@example.com"), event())])

    assert send_due() == Counter(failed=1)
    row = Delivery.objects.get()
    assert "ConnectionError" in row.last_error
    assert "user" not in row.last_error and "pw" not in row.last_error
    due_now()
    assert send_due() == Counter(failed=1)
    due_now()
    assert send_due() == Counter(parked=1)  # MAX_ATTEMPTS 3


def test_an_edited_row_that_cannot_be_loaded_is_parked(hook):
    record(event(), "hook", [(person("ann@example.com"), event())])
    Delivery.objects.update(message={"body": "no content type"})

    assert send_due() == Counter(parked=1)
    assert hook.attempts == 0


def test_only_a_cloudevent_is_a_webhook_message(hook):
    with pytest.raises(TypeError, match="sends a CloudEvent"):
        record(event(), "hook", [(person("ann@example.com"), {"page": 1})])
    assert not Delivery.objects.exists()


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"url": "https://example.com/h", "secret": "plain"}, "whsec_"),
        ({"url": "https://example.com/h", "secret": "whsec_!!"}, "whsec_"),
        ({"url": "https://example.com/h", "secret": "whsec_c2hvcnQ="}, "24 bytes"),
        ({"url": "example.com/h", "secret": SECRET}, "absolute http"),
        ({"url": "https://example.com/h", "secret": SECRET, "timeout": 0}, "timeout"),
        ({"url": "https://example.com/h"}, "secret"),
    ],
)
def test_a_misconfigured_webhook_is_a_check_error(settings, options, error):
    settings.CLOUDEVENTS_NOTIFICATIONS = {
        "BASE_URL": BASE_URL,
        "CHANNELS": {"hook": {"BACKEND": BACKEND, "OPTIONS": options}},
    }
    with pytest.raises((ValueError, TypeError), match=error):
        get_channel("hook")
    [message] = check_notifications()
    assert message.id == "cloudevents_bridge.E011"
    assert "'hook'" in message.msg
    assert SECRET not in message.msg


def test_a_channel_entry_without_a_backend_or_with_bad_options_is_an_error(
    settings,
):
    settings.CLOUDEVENTS_NOTIFICATIONS = {
        "BASE_URL": BASE_URL,
        "CHANNELS": {
            "nobackend": {"OPTIONS": {}},
            "badoptions": {"BACKEND": BACKEND, "OPTIONS": ["x"]},
        },
    }
    messages = check_notifications()
    assert [m.id for m in messages] == ["cloudevents_bridge.E011"] * 2
