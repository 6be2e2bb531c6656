"""Named events: log() validates and emits; received, their handlers run once."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.test import Client
from django.urls import reverse

from django_cloudevents_bridge import (
    BaseEvent,
    EventNotFound,
    ValidationError,
    handler,
    log,
)
from django_cloudevents_bridge import events as ce
from django_cloudevents_bridge.bindings import http
from django_cloudevents_bridge.models import TargetRun
from django_cloudevents_bridge.targets import named
from tests.testapp import events as testapp_events
from tests.testapp.events import GiftPurchase, Purchase, Signup

pytestmark = pytest.mark.django_db(transaction=True)

CSRF_TOKEN = "t" * 32  # a CSRF secret in its unmasked form, as a page would send


@pytest.fixture(autouse=True)
def _direct_delivery(settings) -> None:
    settings.CLOUDEVENTS_DELIVERY = "on_commit"
    settings.CLOUDEVENTS_HANDLER = "locmem"


@pytest.fixture
def calls() -> Iterator[list]:
    """What the handlers did, in order."""
    testapp_events.calls.clear()
    yield testapp_events.calls
    testapp_events.calls.clear()


def audit(event):
    testapp_events.calls.append(("audit", event.get_type(), event.get_data()))


def on_signup(event):
    testapp_events.calls.append(("on_signup", event.get_type(), event.get_data()))


broken: list[bool] = []


def flaky(event):
    if broken:
        broken.pop()
        raise RuntimeError("the mail server is down")
    testapp_events.calls.append(("flaky", event.get_type(), event.get_data()))


@pytest.fixture
def functions() -> Iterator[None]:
    """Function handlers: a glob over the test app's events, and exact names."""
    handler("testapp.*")(audit)
    handler("testapp.Signup")(on_signup)
    handler("testapp.Sign*")(on_signup)  # the same target: still runs once
    yield
    named.unregister_handler(audit)
    named.unregister_handler(on_signup)
    named.unregister_handler(flaky)
    broken.clear()


def receive(cloudevent, client=None):
    """POST the event to the receiver in binary mode."""
    headers, body = http.to_http(cloudevent)
    content_type = headers.pop("Content-Type", "application/octet-stream")
    client = client or Client(enforce_csrf_checks=True)
    return client.post(
        "/cloudevents/", body, content_type=content_type, headers=headers
    )


# -- declaring ---------------------------------------------------------------


def test_events_modules_are_autodiscovered():
    assert named.find_event("testapp.Signup") is Signup
    assert Signup.name == "testapp.Signup"
    assert GiftPurchase.name == "testapp.GiftPurchase"


def test_handler_methods_are_kept_in_definition_order():
    assert Signup.handler_methods == ("welcome", "count")
    assert Purchase.handler_methods == ()
    assert GiftPurchase.handler_methods == ("wrap",)


def test_event_outside_an_installed_app_is_refused():
    with pytest.raises(ImproperlyConfigured, match="installed app"):

        class Stray(BaseEvent):
            pass


def test_two_events_with_one_name_are_refused():
    with pytest.raises(ImproperlyConfigured, match="testapp.Signup"):

        class Signup(BaseEvent):
            __module__ = "tests.testapp.elsewhere"

    assert named.find_event("testapp.Signup") is testapp_events.Signup


def test_event_declared_before_the_app_registry_is_named_on_first_use(monkeypatch):
    monkeypatch.setattr(named.apps, "apps_ready", False)

    class Early(BaseEvent):
        __module__ = "tests.testapp.events"

    assert Early.name == ""
    monkeypatch.undo()
    try:
        assert named.find_event("testapp.Early") is Early
        assert Early.name == "testapp.Early"
    finally:
        del named._events["testapp.Early"]


def test_registering_a_function_twice_is_a_no_op(functions):
    before = list(named._functions)

    handler("testapp.*")(audit)

    assert named._functions == before


def test_bare_handler_on_a_function_is_refused():
    with pytest.raises(TypeError, match="event name"):
        handler(audit)


def test_named_handler_on_a_method_is_refused():
    with pytest.raises(TypeError, match="bare @handler"):

        class Confused:
            @handler("testapp.Signup")
            def method(self):
                pass


# -- log() -------------------------------------------------------------------


def test_log_validates_and_emits_one_event(sent_events):
    cloudevent = log("testapp.Signup", {"email": "Ada@Example.com"})

    assert sent_events == [cloudevent]
    assert cloudevent.get_type() == "testapp.Signup"
    assert cloudevent.get_source() == "/tests"
    assert cloudevent.get_data() == {"email": "ada@example.com"}  # as clean() left it


def test_log_sends_data_in_its_json_form(sent_events):
    when = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    log("testapp.Signup", {"email": "a@b.c", "at": when})

    assert sent_events[0].get_data()["at"] == "2024-05-01T12:30:00Z"


def test_log_unknown_event_raises_event_not_found(sent_events):
    with pytest.raises(EventNotFound, match="testapp.Nope"):
        log("testapp.Nope", {})
    with pytest.raises(LookupError):
        log("Signup", {"email": "a@b.c"})
    assert sent_events == []


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("testapp.Signup", {}, "missing data key(s): email"),
        ("testapp.Signup", None, "missing data key(s): email"),
        ("testapp.Signup", {"email": "nobody"}, "email is not an address"),
        ("testapp.Signup", ["a@b.c"], "event data must be a JSON object"),
        ("testapp.Signup", {"email": object()}, "not JSON-serializable"),
        ("testapp.Purchase", {"sku": "X"}, "missing data key(s): quantity"),
        ("testapp.Purchase", {"sku": "X", "quantity": 0}, "must be at least 1"),
        ("testapp.GiftPurchase", {"quantity": 2}, "missing data key(s): sku"),
    ],
)
def test_log_bad_data_raises_validation_error_and_emits_nothing(
    sent_events, name, data, reason
):
    with pytest.raises(ValidationError) as caught:
        log(name, data)

    assert reason in "; ".join(caught.value.messages)
    assert sent_events == []


def test_require_data_keys_names_every_missing_key():
    event = Purchase({"colour": "red"})

    with pytest.raises(ValidationError) as caught:
        event.require_data_keys(["sku", "colour", "quantity"])

    assert caught.value.messages == ["missing data key(s): sku, quantity"]
    assert caught.value.code == "required"
    Purchase({"sku": "X", "quantity": 1}).require_data_keys(["sku", "quantity"])


def test_validation_error_is_also_djangos():
    from django.core.exceptions import ValidationError as DjangoValidationError

    with pytest.raises(DjangoValidationError):
        log("testapp.Signup", {})


def test_log_in_a_rolled_back_transaction_emits_nothing(sent_events):
    with pytest.raises(RuntimeError), transaction.atomic():
        log("testapp.Signup", {"email": "a@b.c"})
        raise RuntimeError("rolled back")

    assert sent_events == []


# -- receiving ---------------------------------------------------------------


def test_received_event_runs_methods_then_functions_once(sent_events, calls, functions):
    cloudevent = log("testapp.Signup", {"email": "a@b.c"})
    data = {"email": "a@b.c"}

    assert receive(cloudevent).status_code == 202
    assert calls == [
        ("welcome", "testapp.Signup", data),
        ("count", "testapp.Signup", data),
        ("audit", "testapp.Signup", data),
        ("on_signup", "testapp.Signup", data),
    ]

    assert receive(sent_events[0]).status_code == 202  # delivered twice
    assert len(calls) == 4


def test_methods_see_cleaned_data_and_functions_the_event_as_received(calls, functions):
    cloudevent = ce.new("testapp.Signup", data={"email": "Ada@Example.com"})

    assert receive(cloudevent).status_code == 202
    assert calls == [
        ("welcome", "testapp.Signup", {"email": "ada@example.com"}),
        ("count", "testapp.Signup", {"email": "ada@example.com"}),
        ("audit", "testapp.Signup", {"email": "Ada@Example.com"}),
        ("on_signup", "testapp.Signup", {"email": "Ada@Example.com"}),
    ]


def test_target_names_are_stable(sent_events, functions):
    cloudevent = log("testapp.Signup", {"email": "a@b.c"})
    receive(cloudevent)

    assert list(TargetRun.objects.order_by("pk").values_list("target", flat=True)) == [
        "named:testapp.Signup:tests.testapp.events.Signup.welcome",
        "named:testapp.Signup:tests.testapp.events.Signup.count",
        "named:testapp.Signup:tests.receive.test_named.audit",
        "named:testapp.Signup:tests.receive.test_named.on_signup",
    ]


def test_glob_handlers_match_only_their_events(sent_events, calls, functions):
    cloudevent = log("testapp.GiftPurchase", {"sku": "X", "quantity": "2"})

    assert receive(cloudevent).status_code == 202
    data = {"sku": "X", "quantity": "2"}
    assert calls == [
        ("wrap", "testapp.GiftPurchase", data),
        ("audit", "testapp.GiftPurchase", data),
    ]


def test_unregistered_types_reach_no_named_handler(calls, functions):
    cloudevent = ce.new("testapp.Unknown", data={"email": "a@b.c"})

    assert receive(cloudevent).status_code == 202
    assert calls == []


def test_failing_handler_alone_runs_again_on_redelivery(sent_events, calls, functions):
    handler("testapp.Signup")(flaky)
    broken.append(True)
    cloudevent = log("testapp.Signup", {"email": "a@b.c"})

    response = receive(cloudevent)

    assert response.status_code == 500
    assert [c[0] for c in calls] == ["welcome", "count", "audit", "on_signup"]
    failed = TargetRun.objects.get(status=TargetRun.Status.FAILED)
    assert failed.target.endswith("test_named.flaky")
    assert "the mail server is down" in failed.error

    assert receive(cloudevent).status_code == 202
    assert [c[0] for c in calls] == ["welcome", "count", "audit", "on_signup", "flaky"]


def test_received_event_with_invalid_data_runs_no_handler(calls, functions, caplog):
    cloudevent = ce.new("testapp.Signup", data={"email": "nobody"})

    response = receive(cloudevent)
    # The sender's bad data, answered 400: a warning, not an error with a traceback.
    rejected = [r for r in caplog.records if "rejected CloudEvent" in r.getMessage()]
    assert rejected and all(r.levelname == "WARNING" for r in rejected)
    assert "email is not an address" in rejected[0].getMessage()
    assert not any(r.exc_info for r in caplog.records if r.levelname == "ERROR")
    assert response.status_code == 400  # a retry cannot help: dead-letter it
    assert response.json() == {"error": "invalid event data: email is not an address"}
    assert calls == []
    errors = set(TargetRun.objects.values_list("error", flat=True))
    assert errors == {"ValidationError: ['email is not an address']"}


def test_handler_may_reply_with_an_event(sent_events, functions):
    def answer(event):
        return ce.new("testapp.Welcomed", data=event.get_data())

    handler("testapp.Signup")(answer)
    try:
        response = receive(log("testapp.Signup", {"email": "a@b.c"}))
    finally:
        named.unregister_handler(answer, "testapp.Signup")

    assert response.status_code == 200
    assert response["ce-type"] == "testapp.Welcomed"


# -- events from the official Python SDK ------------------------------------------


def sdk_1x(type_: str, data: dict) -> tuple[dict[str, str], bytes]:
    """The request the SDK's 1.x API builds (``cloudevents.v1`` in 2.x)."""
    from cloudevents.v1.conversion import to_binary
    from cloudevents.v1.http import CloudEvent as V1Event

    return to_binary(V1Event({"type": type_, "source": "/sdk"}, data))


def sdk_2x(type_: str, data: dict) -> tuple[dict[str, str], bytes]:
    """The request the SDK's 2.x API builds."""
    from cloudevents.core.bindings.http import to_binary_event
    from cloudevents.core.v1.event import CloudEvent as V2Event

    message = to_binary_event(
        V2Event(attributes={"type": type_, "source": "/sdk"}, data=data)
    )
    return message.headers, message.body


def post_exactly(headers: dict[str, str], body: bytes):
    """POST these headers and body, and no Content-Type unless they have one."""
    headers = dict(headers)
    content_type = ""
    for name in list(headers):
        if name.lower() == "content-type":
            content_type = headers.pop(name)
    return Client(enforce_csrf_checks=True).generic(
        "POST", "/cloudevents/", body, headers=headers, CONTENT_TYPE=content_type
    )


@pytest.mark.parametrize("sdk", [sdk_1x, sdk_2x])
def test_dict_data_from_the_official_sdk_reaches_named_handlers(calls, functions, sdk):
    headers, body = sdk("testapp.Signup", {"email": "A@B.C"})
    assert "content-type" not in {name.lower() for name in headers}  # the SDK's way

    response = post_exactly(headers, body)

    assert response.status_code == 202, response.content
    data = {"email": "a@b.c"}  # as clean() left it
    assert ("welcome", "testapp.Signup", data) in calls
    assert ("on_signup", "testapp.Signup", {"email": "A@B.C"}) in calls


@pytest.mark.parametrize("sdk", [sdk_1x, sdk_2x])
@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("testapp.Signup", {"email": "nobody"}, "email is not an address"),
        ("testapp.Purchase", {"sku": "X", "quantity": 0}, "must be at least 1"),
    ],
)
def test_sdk_event_refused_by_clean_answers_with_its_message(
    calls, functions, sdk, name, data, reason
):
    response = post_exactly(*sdk(name, data))

    assert response.status_code == 400
    assert response.json() == {"error": f"invalid event data: {reason}"}
    assert calls == []


def test_data_that_is_no_json_object_says_what_it_is(calls, functions):
    response = post_exactly(sdk_2x("testapp.Signup", {})[0], b"\x00not json")

    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid event data: event data must be a JSON object, not binary data"
    }


# -- the HTTP log view ----------------------------------------------------------


@pytest.fixture
def page() -> Client:
    """A browser that has the CSRF cookie, as after loading a page."""
    client = Client(enforce_csrf_checks=True)
    client.cookies[django_settings.CSRF_COOKIE_NAME] = CSRF_TOKEN
    return client


def test_log_view_accepts_query_string_and_form_data(page, sent_events):
    response = page.post(
        "/cloudevents/log?__event__=testapp.Signup&email=query@b.c&plan=free",
        {"email": "Form@B.C"},
        headers={"X-CSRFToken": CSRF_TOKEN},
    )

    assert response.status_code == 202
    [cloudevent] = sent_events
    assert response.json() == {"id": cloudevent.get_id()}
    assert cloudevent.get_type() == "testapp.Signup"
    assert cloudevent.get_data() == {"email": "form@b.c", "plan": "free"}


@pytest.mark.parametrize("url", ["/cloudevents/log", "/cloudevents/log/"])
def test_log_view_takes_a_plain_form(page, sent_events, url):
    form = {"__event__": "testapp.Signup", "email": "a@b.c"}
    response = page.post(url, {**form, "csrfmiddlewaretoken": CSRF_TOKEN})

    assert response.status_code == 202
    assert sent_events[0].get_data() == {"email": "a@b.c"}


def test_the_log_url_reverses_as_documented():
    assert reverse("cloudevents:log") == "/cloudevents/log"


def test_log_view_rejects_bad_data_with_the_reason(page, sent_events):
    response = page.post(
        "/cloudevents/log?__event__=testapp.Signup&email=nobody",
        headers={"X-CSRFToken": CSRF_TOKEN},
    )

    assert response.status_code == 400
    assert response.json() == {"error": "email is not an address"}
    assert sent_events == []


@pytest.mark.parametrize("name", ["testapp.Nope", "testapp.Purchase", ""])
def test_log_view_refuses_unknown_or_not_opted_in_events(page, sent_events, name):
    response = page.post(
        f"/cloudevents/log?__event__={name}&sku=X&quantity=1",
        headers={"X-CSRFToken": CSRF_TOKEN},
    )

    assert response.status_code == 404
    assert "accepts HTTP logging" in response.json()["error"]
    assert sent_events == []


def test_log_view_is_post_only(page):
    assert page.get("/cloudevents/log?__event__=testapp.Signup").status_code == 405


def test_log_view_needs_a_csrf_token(page, sent_events):
    response = page.post("/cloudevents/log?__event__=testapp.Signup&email=a@b.c")

    assert response.status_code == 403
    assert sent_events == []
