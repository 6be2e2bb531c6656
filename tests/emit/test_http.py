"""The http handler: real saves POSTed to a real loopback sink, per the binding."""

from __future__ import annotations

import datetime
import json
import logging
import re
import socket
import ssl
import threading
from collections.abc import Iterator
from urllib.parse import unquote_to_bytes

import pytest
import trustme
from django.core.exceptions import ImproperlyConfigured

from django_cloudevents_bridge import events
from django_cloudevents_bridge.emit import deliver
from django_cloudevents_bridge.emit.handlers import http
from django_cloudevents_bridge.exceptions import DeliveryError
from tests.raw_server import ACCEPTED_RAW, CannedServer, OneShotServer
from tests.sink import Fault, Sink
from tests.testapp.models import Question

pytestmark = pytest.mark.django_db(transaction=True)

EURO = "Euro € 😀"
EURO_ENCODED = "Euro%20%E2%82%AC%20%F0%9F%98%80"
UUID = re.compile(
    r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
)
ERRORS = "CloudEvent %s (%s) not delivered: %s"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch, settings):
    settings.CLOUDEVENTS_DELIVERY = "on_commit"  # the handler runs in the save()
    monkeypatch.delenv("K_SOURCE", raising=False)
    monkeypatch.delenv("K_CA_CERTS", raising=False)
    monkeypatch.delenv("K_CE_OVERRIDES", raising=False)
    events.parse_overrides.cache_clear()  # its warnings are logged once per value
    yield
    events.parse_overrides.cache_clear()


class PortSink(Sink):
    """The conftest sink, recording client ports and stopping without a 0.5 s poll."""

    def __init__(self) -> None:
        super().__init__()
        self.ports: list[int] = []
        recording = self.ports
        base = self.server.RequestHandlerClass

        class Handler(base):  # type: ignore[misc, valid-type]
            def do_POST(self) -> None:
                recording.append(self.client_address[1])
                super().do_POST()

        self.server.RequestHandlerClass = Handler
        self.thread = threading.Thread(
            target=self.server.serve_forever, args=(0.05,), daemon=True
        )


@pytest.fixture
def sink() -> Iterator[PortSink]:
    """Overrides the conftest ``sink`` (and so ``http_sink``) for this module."""
    server = PortSink().start()
    yield server
    server.stop()


def make_question(text: str = "What's up?") -> Question:
    return Question.objects.create(
        question_text=text,
        pub_date=datetime.datetime(2026, 11, 1, 9, 30, tzinfo=datetime.UTC),
    )


def handler_options(settings, **options) -> None:
    settings.CLOUDEVENTS_HANDLER_OPTIONS = {
        **settings.CLOUDEVENTS_HANDLER_OPTIONS,
        **options,
    }


def not_delivered(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.msg == ERRORS]


def decode(value: str) -> str:
    return unquote_to_bytes(value).decode("utf-8")


# Binary mode


def test_binary_mode_end_to_end(http_sink):
    question = make_question()

    [received] = http_sink.wait_for(1)
    assert received.problems == []
    assert received.method == "POST"
    headers = received.headers
    assert headers["ce-specversion"] == "1.0"
    assert headers["ce-type"] == "django.orm.post_save"
    assert headers["ce-source"] == "/tests"
    assert headers["ce-subject"] == f"DCE:testapp.question/{question.pk}"
    assert headers["ce-djangoapp"] == "testapp"
    assert headers["ce-djangomodel"] == "question"
    assert headers["ce-id"] == received.event.get_id()
    assert headers["ce-time"].endswith("Z")
    sent_at = datetime.datetime.fromisoformat(headers["ce-time"])
    assert abs(datetime.datetime.now(datetime.UTC) - sent_at).total_seconds() < 60
    assert headers["content-type"] == "application/json"
    assert "ce-datacontenttype" not in headers
    assert "authorization" not in headers
    assert json.loads(received.body) == {
        "data": {
            "id": question.pk,
            "question_text": "What's up?",
            "pub_date": "2026-11-01T09:30:00Z",
        },
        "signal_kwargs": {
            "created": True,
            "update_fields": None,
            "raw": False,
            "using": "default",
        },
        "db_table": "testapp_question",
    }
    assert received.event.get_data() == json.loads(received.body)


def test_each_save_is_one_event_with_its_own_id(http_sink):
    question = make_question()
    question.delete()

    received = http_sink.wait_for(2)
    assert [r.headers["ce-type"] for r in received] == [
        "django.orm.post_save",
        "django.orm.post_delete",
    ]
    assert len({r.headers["ce-id"] for r in received}) == 2
    assert http_sink.attempts == 2


def test_header_values_are_percent_encoded_as_the_binding_says(http_sink, monkeypatch):
    value = f'{EURO} "quoted" 100%'
    overrides = {"extensions": {"motto": value, "plain": "a-b_c.d~e:f/g"}}
    monkeypatch.setenv("K_CE_OVERRIDES", json.dumps(overrides))
    make_question()

    [received] = http_sink.wait_for(1)
    assert received.problems == []
    assert received.headers["ce-motto"] == f"{EURO_ENCODED}%20%22quoted%22%20100%25"
    assert decode(received.headers["ce-motto"]) == value
    assert received.event.get_extension("motto") == value
    assert received.headers["ce-plain"] == "a-b_c.d~e:f/g"  # printable: as it is


def test_source_is_percent_encoded_too(http_sink, settings):
    settings.CLOUDEVENTS_SOURCE = f"urn:{EURO}"
    make_question()

    [received] = http_sink.wait_for(1)
    assert received.problems == []
    assert received.headers["ce-source"] == f"urn:{EURO_ENCODED}"
    assert received.event.get_source() == f"urn:{EURO}"


# Structured mode


def test_structured_mode(http_sink, settings):
    handler_options(settings, mode="structured")
    question = make_question()

    [received] = http_sink.wait_for(1)
    assert received.problems == []
    assert received.headers["content-type"].startswith("application/cloudevents+json")
    assert not [name for name in received.headers if name.startswith("ce-")]
    document = json.loads(received.body)
    assert set(document) == {
        "specversion",
        "id",
        "source",
        "type",
        "subject",
        "time",
        "datacontenttype",
        "djangoapp",
        "djangomodel",
        "partitionkey",  # the subject (Partitioning extension)
        "data",
    }
    assert document["specversion"] == "1.0"
    assert document["type"] == "django.orm.post_save"
    assert document["source"] == "/tests"
    assert document["subject"] == f"DCE:testapp.question/{question.pk}"
    assert document["datacontenttype"] == "application/json"
    assert document["djangoapp"] == "testapp"
    assert document["djangomodel"] == "question"
    assert document["time"].endswith("Z")
    assert document["data"]["data"]["question_text"] == "What's up?"
    assert received.event.get_id() == document["id"]


def test_unknown_mode_fails_at_start_up():
    with pytest.raises(Exception, match="mode must be one of"):
        http.Handler(mode="batched")


@pytest.mark.parametrize("value", [0, -1, 1.5, "1024", True])
def test_a_batch_max_bytes_that_is_not_a_positive_int_fails_at_start_up(value):
    with pytest.raises(ImproperlyConfigured, match="batch_max_bytes"):
        http.Handler(batch=True, batch_max_bytes=value)


@pytest.mark.parametrize(
    ("lengths", "limit", "sizes"),
    [
        ([], 100, []),
        ([10, 10, 10], 100, [3]),
        ([10, 10, 10], 23, [2, 1]),  # "[" + 10 + "," + 10 + "]" = 23 bytes
        ([10, 10, 10], 22, [1, 1, 1]),
        ([50, 5, 5], 20, [1, 2]),  # too big alone: goes alone
        ([10] * 5, None, [5]),
    ],
)
def test_batches_are_cut_at_batch_max_bytes(lengths, limit, sizes):
    assert http._batch_sizes([b"x" * n for n in lengths], limit) == sizes


@pytest.mark.parametrize("value", [0, -1, 1.5, "100", True])
def test_a_batch_max_events_that_is_not_a_positive_int_fails_at_start_up(value):
    with pytest.raises(ImproperlyConfigured, match="batch_max_events"):
        http.Handler(batch=True, batch_max_events=value)


@pytest.mark.parametrize(
    ("count", "limit", "max_events", "sizes"),
    [
        (250, None, 100, [100, 100, 50]),  # the default: the receiver's MAX_BATCH
        (5, None, None, [5]),
        (5, 23, 1, [1, 1, 1, 1, 1]),
        (5, 23, 3, [2, 2, 1]),  # whichever limit comes first
    ],
)
def test_batches_are_cut_at_batch_max_events(count, limit, max_events, sizes):
    documents = [b"x" * 10] * count
    assert http._batch_sizes(documents, limit, max_events) == sizes
    assert http.Handler().batch_max_events == 100


def test_unknown_option_fails_at_start_up():
    with pytest.raises(Exception, match="unknown options"):
        http.Handler(sinc="http://example.com/")


# K_CE_OVERRIDES


def overridden(http_sink, settings, monkeypatch, value: str) -> dict:
    """Save with K_CE_OVERRIDES=value; the JSON event the sink received."""
    handler_options(settings, mode="structured")  # to see JSON types, not headers
    monkeypatch.setenv("K_CE_OVERRIDES", value)
    make_question()
    [received] = http_sink.wait_for(1)
    assert received.problems == []
    return json.loads(received.body)


def test_empty_overrides_change_nothing(http_sink, settings, monkeypatch, caplog):
    document = overridden(http_sink, settings, monkeypatch, "")
    assert set(document) - {"data"} == {
        "specversion",
        "id",
        "source",
        "type",
        "subject",
        "time",
        "datacontenttype",
        "djangoapp",
        "djangomodel",
        "partitionkey",
    }
    assert "K_CE_OVERRIDES" not in caplog.text


def test_invalid_overrides_are_ignored_with_a_warning(
    http_sink, settings, monkeypatch, caplog
):
    document = overridden(http_sink, settings, monkeypatch, "{not json")
    assert document["djangoapp"] == "testapp"
    [warning] = [r for r in caplog.records if "K_CE_OVERRIDES" in r.getMessage()]
    assert warning.levelno == logging.WARNING
    assert "not JSON" in warning.getMessage()


def test_invalid_overrides_warn_once_not_per_save(http_sink, monkeypatch, caplog):
    monkeypatch.setenv("K_CE_OVERRIDES", "[1, 2]")
    make_question()
    make_question()

    assert len(http_sink.wait_for(2)) == 2
    warnings = [r for r in caplog.records if "K_CE_OVERRIDES" in r.getMessage()]
    assert len(warnings) == 1


def test_overrides_cannot_replace_core_attributes(
    http_sink, settings, monkeypatch, caplog
):
    core = {"type": "evil", "id": "1", "source": "/evil", "Time": "x", "data": "x"}
    raw = json.dumps({"extensions": {**core, "extra": "kept"}})
    document = overridden(http_sink, settings, monkeypatch, raw)

    assert document["type"] == "django.orm.post_save"
    assert document["source"] == "/tests"
    assert document["id"] != "1"
    assert document["time"] != "x"
    assert isinstance(document["data"], dict)
    assert document["extra"] == "kept"
    messages = caplog.text
    for name in ("type", "id", "source", "time", "data"):
        assert f"cannot override the attribute '{name}'" in messages


def test_override_names_are_lower_cased(http_sink, monkeypatch):
    monkeypatch.setenv("K_CE_OVERRIDES", '{"extensions": {"Extra": "yes"}}')
    make_question()

    [received] = http_sink.wait_for(1)
    assert received.problems == []
    assert received.headers["ce-extra"] == "yes"
    assert received.event.get_extension("extra") == "yes"


def test_invalid_override_names_are_skipped(http_sink, monkeypatch, caplog):
    raw = '{"extensions": {"not-valid": "x", "ok": "y"}}'
    monkeypatch.setenv("K_CE_OVERRIDES", raw)
    make_question()

    [received] = http_sink.wait_for(1)
    assert received.problems == []
    assert received.headers["ce-ok"] == "y"
    assert "ce-not-valid" not in received.headers
    assert "invalid extension name 'not-valid'" in caplog.text


def test_override_replaces_our_extension_of_the_same_name(http_sink, monkeypatch):
    monkeypatch.setenv("K_CE_OVERRIDES", '{"extensions": {"djangoapp": "polls"}}')
    make_question()

    [received] = http_sink.wait_for(1)
    assert received.headers["ce-djangoapp"] == "polls"
    assert received.headers["ce-djangomodel"] == "question"


def test_override_values_stay_strings(http_sink, settings, monkeypatch):
    raw = '{"extensions": {"additional": "42", "flag": "true"}}'
    document = overridden(http_sink, settings, monkeypatch, raw)
    assert document["additional"] == "42"
    assert document["flag"] == "true"


# OIDC


def test_oidc_token_is_read_for_each_request(http_sink, settings, tmp_path):
    token = tmp_path / "token"
    token.write_text("first.jwt.token\n")
    handler_options(settings, oidc_token_path=str(token))

    make_question()
    token.write_text("second.jwt.token")  # Knative refreshes the file in place
    make_question()

    first, second = http_sink.wait_for(2)
    assert first.headers["authorization"] == "Bearer first.jwt.token"
    assert second.headers["authorization"] == "Bearer second.jwt.token"


def test_no_token_file_no_authorization_header(http_sink, settings, tmp_path):
    handler_options(settings, oidc_token_path=str(tmp_path / "missing"))
    make_question()

    [received] = http_sink.wait_for(1)
    assert "authorization" not in received.headers


def test_an_unreadable_token_is_skipped_with_a_warning(
    http_sink, settings, tmp_path, caplog
):
    handler_options(settings, oidc_token_path=str(tmp_path))  # a directory
    make_question()

    [received] = http_sink.wait_for(1)
    assert "authorization" not in received.headers
    assert "Cannot read the OIDC token file" in caplog.text


def test_an_empty_token_file_sends_no_header(http_sink, settings, tmp_path):
    token = tmp_path / "token"
    token.write_text("\n")
    handler_options(settings, oidc_token_path=str(token))
    make_question()

    [received] = http_sink.wait_for(1)
    assert "authorization" not in received.headers


def test_the_token_is_never_logged(http_sink, settings, tmp_path, caplog):
    token = tmp_path / "token"
    token.write_text("very.secret.token")
    handler_options(settings, oidc_token_path=str(token))
    http_sink.faults.append(Fault(status=401, body=b"bad token"))

    make_question()

    [record] = not_delivered(caplog)
    assert "401" in record.getMessage()
    assert "very.secret.token" not in caplog.text


def test_configured_headers_are_sent(http_sink, settings):
    handler_options(settings, headers={"X-Tenant": "blue"})
    make_question()

    [received] = http_sink.wait_for(1)
    assert received.headers["x-tenant"] == "blue"


# TLS


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def https_sink(ca, settings, monkeypatch):
    """The sink behind TLS, with a certificate for 127.0.0.1 signed by ``ca``."""
    server = PortSink()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    server.server.socket = context.wrap_socket(server.server.socket, server_side=True)
    server.start()
    monkeypatch.setenv("K_SINK", server.url.replace("http://", "https://"))
    settings.CLOUDEVENTS_HANDLER = "http"
    settings.CLOUDEVENTS_HANDLER_OPTIONS = {
        "timeout": (1.0, 1.0),
        "oidc_token_path": None,
        "ca_certs_dir": None,
    }
    yield server
    server.stop()


def test_tls_sink_trusted_through_k_ca_certs(https_sink, ca, monkeypatch):
    monkeypatch.setenv("K_CA_CERTS", ca.cert_pem.bytes().decode())
    make_question()

    [received] = https_sink.wait_for(1)
    assert received.problems == []
    assert received.headers["ce-type"] == "django.orm.post_save"


def test_tls_sink_trusted_through_a_trust_bundle_dir(
    https_sink, ca, settings, tmp_path
):
    ca.cert_pem.write_to_path(str(tmp_path / "bundle.pem"))
    handler_options(settings, ca_certs_dir=str(tmp_path))
    make_question()

    [received] = https_sink.wait_for(1)
    assert received.problems == []


def test_tls_sink_trusted_through_requests_ca_bundle(
    https_sink, ca, monkeypatch, tmp_path
):
    # As requests reads it: the bundle replaces the default roots.
    ca.cert_pem.write_to_path(str(tmp_path / "roots.pem"))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "roots.pem"))
    make_question()

    [received] = https_sink.wait_for(1)
    assert received.problems == []


def test_untrusted_tls_sink_is_not_delivered(https_sink, caplog):
    question = make_question()  # save() is fine

    assert Question.objects.filter(pk=question.pk).exists()
    [record] = not_delivered(caplog)
    assert "TLS error" in record.getMessage()
    assert https_sink.received == []


def test_untrusted_tls_sink_raises_delivery_error(https_sink):
    event = events.new("t")
    handler = http.Handler(ca_certs_dir=None, oidc_token_path=None)
    with handler, pytest.raises(DeliveryError, match="TLS error") as caught:
        handler.send_events([event])
    assert caught.value.event_id == event.get_id()
    assert caught.value.delivered == 0


def test_invalid_k_ca_certs_is_ignored_with_a_warning(https_sink, monkeypatch, caplog):
    monkeypatch.setenv("K_CA_CERTS", "-----BEGIN CERTIFICATE-----\nbroken")
    question = make_question()

    assert question.pk is not None
    assert "Ignoring the CA certificates in K_CA_CERTS" in caplog.text
    [record] = not_delivered(caplog)
    assert "TLS error" in record.args[2]


# Failures: the save() succeeds, the failure is logged with the event id


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (Fault(status=503, body=b"try later"), "HTTP 503"),
        (Fault(status=400, body=b"bad event"), "HTTP 400"),
        (Fault(status=429, headers={"Retry-After": "7"}), "HTTP 429"),
        (Fault(drop=True), "connection error"),
    ],
    ids=["503", "400", "429", "dropped"],
)
def test_sink_failure_is_logged_and_the_save_succeeds(http_sink, caplog, fault, reason):
    http_sink.faults.append(fault)
    question = make_question()

    assert Question.objects.filter(pk=question.pk).exists()
    [record] = not_delivered(caplog)
    event_id, event_type, why = record.args
    assert event_type == "django.orm.post_save"
    assert UUID.match(event_id)
    assert reason in why
    assert record.levelno == logging.ERROR
    assert http_sink.received == []
    assert http_sink.attempts == 1


def test_error_body_is_in_the_reason(http_sink, caplog):
    http_sink.faults.append(Fault(status=503, body=b"broker  is\nfull"))
    make_question()

    [record] = not_delivered(caplog)
    assert record.args[2] == "HTTP 503 Service Unavailable: broker is full"


def test_next_save_after_a_failure_is_delivered(http_sink, caplog):
    http_sink.faults.extend([Fault(drop=True)])
    make_question("lost")
    make_question("sent")

    [received] = http_sink.wait_for(1)
    assert received.event.get_data()["data"]["question_text"] == "sent"
    assert len(not_delivered(caplog)) == 1


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_connection_refused(settings, monkeypatch, caplog):
    monkeypatch.setenv("K_SINK", f"http://127.0.0.1:{closed_port()}/")
    settings.CLOUDEVENTS_HANDLER = "http"
    settings.CLOUDEVENTS_HANDLER_OPTIONS = {"timeout": 1.0, "oidc_token_path": None}

    question = make_question()

    assert question.pk is not None
    [record] = not_delivered(caplog)
    assert "connection error" in record.args[2]


def test_a_sink_that_is_not_a_url(settings, monkeypatch, caplog):
    monkeypatch.setenv("K_SINK", "broker-ingress.knative-eventing")
    settings.CLOUDEVENTS_HANDLER = "http"
    make_question()

    [record] = not_delivered(caplog)
    assert record.args[2].startswith("MissingSchema: ")


def test_a_sink_that_never_answers_blocks_the_save_only_until_the_timeout(
    http_sink, settings, caplog
):
    handler_options(settings, timeout=(0.5, 0.5))
    stall = threading.Event()  # the sink answers once it is set
    http_sink.faults.append(Fault(hold=stall))

    make_question()  # returns while the sink still holds the request
    stall.set()

    assert http_sink.attempts == 1  # one read timeout, not one per retry
    [record] = not_delivered(caplog)
    assert "read timeout" in record.args[2]


def test_no_sink_warns_once_per_process(settings, monkeypatch, caplog):
    monkeypatch.delenv("K_SINK", raising=False)
    monkeypatch.setattr(http, "_warned_no_sink", False)
    settings.CLOUDEVENTS_HANDLER = "http"

    make_question()
    make_question()

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        "K_SINK is not set: CloudEvents are not delivered"
    ]
    failures = not_delivered(caplog)
    assert len(failures) == 2
    assert all("no sink" in r.args[2] for r in failures)


def test_no_sink_is_a_delivery_error(monkeypatch):
    monkeypatch.delenv("K_SINK", raising=False)
    monkeypatch.setattr(http, "_warned_no_sink", True)
    with pytest.raises(DeliveryError, match="no sink: K_SINK is not set") as caught:
        http.Handler().send_events([events.new("t")])
    assert caught.value.delivered == 0


def test_sink_option_wins_over_the_environment(sink, monkeypatch):
    monkeypatch.setenv("K_SINK", f"http://127.0.0.1:{closed_port()}/")
    with http.Handler(sink=sink.url, oidc_token_path=None) as handler:
        assert handler.send_events([events.new("t")]) == 1
    assert len(sink.wait_for(1)) == 1


# send_events directly


@pytest.fixture
def handler(sink):
    with http.Handler(sink=sink.url, timeout=(1.0, 1.0), oidc_token_path=None) as h:
        yield h


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("120", 120.0), (" 0 ", 0.0), ("soon", None), ("", None)],
)
def test_retry_after_seconds(sink, handler, header, seconds):
    sink.faults.append(Fault(status=429, headers={"Retry-After": header}))
    event = events.new("t")
    with pytest.raises(DeliveryError) as caught:
        handler.send_events([event])
    error = caught.value
    assert error.retry_after == seconds
    assert error.event_id == event.get_id()
    assert error.delivered == 0
    assert "HTTP 429" in error.reason


@pytest.mark.parametrize("zone", ["GMT", "-0000", "+0000"])
def test_retry_after_http_date(sink, handler, zone):
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=90)
    header = later.strftime(f"%a, %d %b %Y %H:%M:%S {zone}")
    sink.faults.append(Fault(status=503, headers={"Retry-After": header}))
    with pytest.raises(DeliveryError) as caught:
        handler.send_events([events.new("t")])
    assert 80 <= caught.value.retry_after <= 90


@pytest.mark.parametrize("status", [500, 404, 400])
def test_retry_after_counts_only_on_429_and_503(sink, handler, status):
    sink.faults.append(Fault(status=status, headers={"Retry-After": "3600"}))
    with pytest.raises(DeliveryError) as caught:
        handler.send_events([events.new("t")])
    assert caught.value.retry_after is None  # the usual backoff, not an hour


def test_retry_after_in_the_past_is_zero(sink, handler):
    header = "Wed, 21 Oct 2015 07:28:00 GMT"
    sink.faults.append(Fault(status=503, headers={"Retry-After": header}))
    with pytest.raises(DeliveryError) as caught:
        handler.send_events([events.new("t")])
    assert caught.value.retry_after == 0.0


def test_a_failure_stops_the_batch(sink, handler):
    sink.faults.extend([Fault(), Fault(status=500)])
    batch = [events.new("t", data={"n": n}) for n in range(3)]

    with pytest.raises(DeliveryError) as caught:
        handler.send_events(batch)

    assert caught.value.delivered == 1
    assert caught.value.event_id == batch[1].get_id()
    assert sink.attempts == 2
    assert [r.event.get_id() for r in sink.received] == [batch[0].get_id()]


def test_deliver_logs_each_undelivered_event(http_sink, caplog):
    http_sink.faults.extend([Fault(), Fault(status=500)])
    batch = [events.new("t", data={"n": n}) for n in range(3)]

    assert deliver(batch) == 0

    assert [r.args for r in not_delivered(caplog)] == [
        (batch[1].get_id(), "t", "HTTP 500 Internal Server Error"),
        (batch[2].get_id(), "t", "an earlier event failed"),
    ]
    assert http_sink.attempts == 2


def test_send_events_returns_the_count(sink, handler):
    batch = [events.new("t", data={"n": n}) for n in range(3)]
    assert handler.send_events(batch) == 3
    assert [r.event.get_data() for r in sink.wait_for(3)] == [
        {"n": 0},
        {"n": 1},
        {"n": 2},
    ]


def test_event_without_data_has_no_body_and_no_content_type(sink, handler):
    handler.send_events([events.new("t")])

    [received] = sink.wait_for(1)
    assert received.problems == []
    assert received.body == b""
    assert "content-type" not in received.headers


# Keep-alive


def test_saves_reuse_one_connection(http_sink):
    for n in range(4):
        make_question(f"q{n}")

    assert len(http_sink.wait_for(4)) == 4
    assert len(http_sink.ports) == 4
    assert len(set(http_sink.ports)) == 1


def test_a_dropped_connection_is_replaced(http_sink, caplog):
    make_question("a")
    http_sink.faults.append(Fault(drop=True))
    make_question("lost")
    make_question("b")

    assert len(http_sink.wait_for(2)) == 2
    first, dropped, last = http_sink.ports
    assert first == dropped != last
    assert len(not_delivered(caplog)) == 1


# Redirects (http-webhook.md: a sender MUST NOT follow them)


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirects_are_not_followed(http_sink, caplog, status):
    location = http_sink.url + "elsewhere"
    http_sink.faults.append(Fault(status=status, headers={"Location": location}))
    make_question()

    [record] = not_delivered(caplog)
    assert f"HTTP {status}" in record.args[2]
    assert http_sink.received == []
    assert http_sink.attempts == 1


def test_trust_bundle_files_need_not_end_in_pem(https_sink, ca, settings, tmp_path):
    ca.cert_pem.write_to_path(str(tmp_path / "ca.crt"))
    handler_options(settings, ca_certs_dir=str(tmp_path))
    make_question()

    [received] = https_sink.wait_for(1)
    assert received.problems == []


def test_a_bad_trust_bundle_file_is_skipped(https_sink, ca, settings, tmp_path, caplog):
    (tmp_path / "broken.pem").write_text("not a certificate")
    ca.cert_pem.write_to_path(str(tmp_path / "good.pem"))
    handler_options(settings, ca_certs_dir=str(tmp_path))
    make_question()

    [received] = https_sink.wait_for(1)
    assert received.problems == []
    assert "broken.pem" in caplog.text


def test_a_binary_trust_bundle_file_is_skipped(
    https_sink, ca, settings, tmp_path, caplog
):
    (tmp_path / "ca.der").write_bytes(b"\x30\x82\xff\xfe")
    ca.cert_pem.write_to_path(str(tmp_path / "good.pem"))
    handler_options(settings, ca_certs_dir=str(tmp_path))
    make_question()

    assert len(https_sink.wait_for(1)) == 1
    assert "ca.der" in caplog.text


def test_close_is_idempotent_and_the_handler_reopens(sink):
    handler = http.Handler(sink=sink.url, oidc_token_path=None)
    assert handler.open() is True
    assert handler.open() is False
    handler.close()
    handler.close()
    assert handler.send_events([events.new("t")]) == 1
    handler.close()
    assert len(sink.wait_for(1)) == 1


# The transport: our own client (tested in tests/bindings/test_http11.py),
# requests behind a proxy


@pytest.fixture
def one_shot() -> Iterator[OneShotServer]:
    server = OneShotServer()
    yield server
    server.close()


def test_a_sink_behind_a_proxy_is_reached_through_it(one_shot, monkeypatch):
    # The "proxy" answers itself; what matters is that the request went to it,
    # in the absolute form a proxy gets, for a sink that is not listening at all.
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{one_shot.port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    sink = f"http://sink.example:{closed_port()}/events"
    with http.Handler(sink=sink, timeout=(1.0, 1.0), oidc_token_path=None) as handler:
        assert handler.send_events([events.new("t")]) == 1
    [head] = one_shot.requests
    assert head.startswith(f"POST {sink} HTTP/1.1".encode())
    assert b"\r\nce-type: t" in head


def test_an_interim_answer_through_a_proxy_never_answers_the_next_event(
    monkeypatch,
):
    # requests (http.client) takes a 103 for the answer and leaves the 202 on
    # the connection: read by the next request, it would pass off that event's
    # 500 as delivered.
    server = CannedServer(
        [
            b"HTTP/1.1 103 Early Hints\r\n\r\n" + ACCEPTED_RAW,
            b"HTTP/1.1 500 No\r\nContent-Length: 0\r\n\r\n",
        ]
    )
    monkeypatch.setenv("HTTP_PROXY", server.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    sink = f"http://sink.example:{closed_port()}/events"
    errors = []
    with http.Handler(sink=sink, timeout=(1.0, 1.0), oidc_token_path=None) as handler:
        for _ in range(2):
            with pytest.raises(DeliveryError) as caught:
                handler.send_events([events.new("t")])
            errors.append(caught.value)
    server.close()
    assert "unexpected 103 answer" in errors[0].reason
    assert not errors[0].permanent  # retried: the sink may not have it
    assert errors[1].reason.startswith("HTTP 500 No")
    assert server.connections == 2


def test_a_token_that_would_split_the_request_is_not_sent(sink, tmp_path):
    token = tmp_path / "token"
    token.write_text("eyJ.a\r\nX-Evil: 1")  # stripped at the ends, not inside
    handler = http.Handler(sink=sink.url, oidc_token_path=str(token))
    with handler, pytest.raises(DeliveryError, match="invalid token") as caught:
        handler.send_events([events.new("t")])
    assert not caught.value.permanent  # Knative rewrites the file: try again
    assert sink.received == []


def test_configured_headers_replace_the_defaults_whatever_their_case(one_shot):
    url = f"http://127.0.0.1:{one_shot.port}/"
    headers = {"host": "broker.example", "content-type": "application/x-custom"}
    handler = http.Handler(sink=url, oidc_token_path=None, headers=headers)
    with handler:
        handler.send_events([events.new("t", data={"a": 1})])
    [head] = one_shot.requests
    lines = head.decode().lower().split("\r\n")
    assert [line for line in lines if line.startswith("host:")] == [
        "host: broker.example"
    ]
    assert [line for line in lines if line.startswith("content-type:")] == [
        "content-type: application/x-custom"
    ]
    assert sum(line.startswith("user-agent:") for line in lines) == 1


@pytest.mark.parametrize(
    "headers",
    [{"Content-Length": "1"}, {"Connection": "close"}, {"X-A": 1}, {"X-A": "a\nb"}],
    ids=["content-length", "connection", "not-a-string", "newline"],
)
def test_headers_that_cannot_be_sent_fail_at_start_up(headers):
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match="http handler"):
        http.Handler(headers=headers)


def test_a_retry_after_of_other_digits_is_ignored(sink, handler):
    sink.faults.append(Fault(status=503, headers={"Retry-After": "\u00b2"}))
    with pytest.raises(DeliveryError) as caught:
        handler.send_events([events.new("t")])
    assert caught.value.retry_after is None


def test_a_malformed_answer_is_a_retried_connection_error():
    server = CannedServer([b"ICY 200 OK\r\n\r\n"])
    handler = http.Handler(sink=server.url, timeout=(1.0, 1.0), oidc_token_path=None)
    with handler, pytest.raises(DeliveryError) as caught:
        handler.send_events([events.new("t")])
    server.close()
    assert caught.value.reason.startswith("connection error: BadStatusLine")
    assert not caught.value.permanent


def test_a_huge_error_body_is_cut_in_the_reason():
    body = b"x" * 2_000_000
    answer = b"HTTP/1.1 500 Oops\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    server = CannedServer([answer])
    handler = http.Handler(sink=server.url, timeout=(1.0, 1.0), oidc_token_path=None)
    with handler, pytest.raises(DeliveryError) as caught:
        handler.send_events([events.new("t")])
    server.close()
    assert caught.value.reason.startswith("HTTP 500 Oops: xxx")
    assert len(caught.value.reason) < 300
