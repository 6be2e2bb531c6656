"""No credential in what is logged or stored about a failed delivery.

A real loopback sink answers with an error page that shows the request it got,
``Authorization: Bearer <OIDC token>`` and a configured API key among its headers;
the relay records the failure. Neither credential may reach ``last_error``, the
log or the admin, and the migration scrubs errors stored before.
"""

from __future__ import annotations

import datetime
import importlib
import logging
import uuid
from types import SimpleNamespace

import pytest
from django.apps import apps
from django.db import connection

from django_cloudevents_bridge.emit import handlers, outbox
from django_cloudevents_bridge.emit.relay import Relay
from django_cloudevents_bridge.models import OutboxEvent, ReceivedEvent, TargetRun
from django_cloudevents_bridge.redact import REDACTED, redact
from tests.sink import Fault
from tests.testapp.models import Question

pytestmark = pytest.mark.django_db(transaction=True)

NOW = datetime.datetime(2026, 11, 1, tzinfo=datetime.UTC)
API_KEY = "shared-secret-" + uuid.uuid4().hex
# An opaque token (not JWT-shaped): only the exact match can find it.
TOKEN = "opaque-oidc-token-" + uuid.uuid4().hex
JWT = (
    "eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYS0xIn0"
    ".eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ"
    ".c2lnbmF0dXJlLWJ5dGVzLWhlcmU"
)
ECHO = ("Authorization", "X-Api-Key")
migration = importlib.import_module(
    "django_cloudevents_bridge.migrations.0003_redact_stored_errors"
)


@pytest.fixture
def credentials(settings, http_sink, tmp_path):
    """The HTTP handler sends an OIDC token and an API key with every request."""
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    settings.CLOUDEVENTS_HANDLER_OPTIONS = {
        **settings.CLOUDEVENTS_HANDLER_OPTIONS,
        "oidc_token_path": str(token_file),
        "headers": {"X-Api-Key": API_KEY},
    }
    settings.CLOUDEVENTS_DELIVERY = "outbox"
    settings.CLOUDEVENTS_OUTBOX = {"BACKGROUND": False, "BACKOFF": 0.001}
    return http_sink


def relay(settings) -> Relay:
    handler = handlers.get_handler(**settings.CLOUDEVENTS_HANDLER_OPTIONS)
    return Relay(handler, options=outbox.conf.outbox())


def leaked(text: str) -> list[str]:
    return [secret for secret in (TOKEN, API_KEY) if secret in text]


@pytest.mark.parametrize("status", [500, 400], ids=["retried", "parked"])
def test_an_echoed_request_leaves_no_credential_behind(
    settings, credentials, caplog, admin_client, status
):
    credentials.faults.append(Fault(status=status, body=b"<h1>Oops</h1>\n", echo=ECHO))
    Question.objects.create(question_text="q", pub_date=NOW)
    caplog.set_level(logging.DEBUG)

    result = relay(settings).run_once()

    assert result.failed == 1
    assert credentials.attempts == 1  # the sink got (and echoed) both credentials
    row = OutboxEvent.objects.get()
    assert row.last_error.startswith(f"HTTP {status} ")
    assert "Oops" in row.last_error and REDACTED in row.last_error
    assert leaked(row.last_error) == []
    assert "HTTP" in caplog.text and leaked(caplog.text) == []
    page = admin_client.get(
        f"/admin/django_cloudevents_bridge/outboxevent/{row.pk}/change/"
    )
    assert page.status_code == 200
    assert "Oops" in page.content.decode()
    assert leaked(page.content.decode()) == []


def test_an_echoed_request_is_not_logged_by_a_direct_send(
    settings, credentials, caplog
):
    settings.CLOUDEVENTS_DELIVERY = "on_commit"  # sent in the save, failure logged
    credentials.faults.append(Fault(status=503, echo=ECHO))
    Question.objects.create(question_text="q", pub_date=NOW)
    assert "HTTP 503" in caplog.text
    assert leaked(caplog.text) == []


HOOK_SECRET = "s3cr3t-value-" + uuid.uuid4().hex


class RaisingHandler(handlers.BaseHandler):
    """A handler with a bug: it raises, not DeliveryError, quoting its URL."""

    def send_events(self, events):
        raise RuntimeError(
            f"cannot post to https://hook.example/in?token={HOOK_SECRET}"
        )


@pytest.mark.parametrize("path", ["relay", "on_commit", "background"])
def test_a_handler_bug_logs_no_credential(settings, caplog, path):
    # The exception's message and its traceback (which quotes the message) are
    # both in the log; neither may carry the token.
    settings.CLOUDEVENTS_HANDLER = RaisingHandler
    settings.CLOUDEVENTS_HANDLER_OPTIONS = {}
    settings.CLOUDEVENTS_DELIVERY = "on_commit" if path == "on_commit" else "outbox"
    settings.CLOUDEVENTS_OUTBOX = {"BACKGROUND": path == "background", "BACKOFF": 0.001}
    caplog.set_level(logging.DEBUG)
    Question.objects.create(question_text="q", pub_date=NOW)
    if path == "relay":
        assert relay(settings).run_once().failed == 1
    elif path == "background":
        assert outbox.background.wait(10)
    assert "RuntimeError" in caplog.text and "Traceback" in caplog.text
    assert HOOK_SECRET not in caplog.text
    for record in caplog.records:
        assert HOOK_SECRET not in logging.Formatter().format(record)
    for row in OutboxEvent.objects.all():
        assert HOOK_SECRET not in row.last_error


@pytest.mark.parametrize(
    "text",
    [
        f"Authorization: Bearer {JWT}",
        f'{{"headers": {{"Authorization": "Bearer {JWT}"}}}}',
        f"{{'authorization': 'Bearer {JWT}'}}",
        f"<td>Bearer</td><td>{JWT}</td>",
        f"token {JWT} rejected",
        "Proxy-Authorization: Basic dXNlcjpodW50ZXIy",
        "got Basic dXNlcjpodW50ZXIy from you",
        "POST /hook?api_key=hunter2&x=1",
        "password=hunter2; session_id=hunter2",
        '{"client_secret": "hunter2", "access_token":"hunter2"}',
        "X-Api-Key: hunter2",
        "Cookie: sid=hunter2",
        "proxy http://user:hunter2@proxy:3128 refused",
        "Authorization: Token hunter2",  # Django REST framework's scheme
        'got {"password": "ab\\"cd hunter2"}',  # an escaped quote in the value
        "got {'password': 'ab\\'cd hunter2'}",
        'credentials=["hunter2"]',  # list values
        'passwords: ["x", "hunter2"], user: ann',
        '"auth": {"user": "ann", "pin": "hunter2"}',
        "smtp_pass=hunter2 db_pwd=hunter2",
        "pass_word: hunter2",
        "refresh_tokens: hunter2",
        '"password": "hunter2',  # cut off before its closing quote
    ],
)
def test_redact_takes_out_what_looks_like_a_credential(text):
    redacted = redact(text)
    assert "hunter2" not in redacted
    assert JWT not in redacted
    assert "dXNlcjpodW50ZXIy" not in redacted
    assert REDACTED in redacted
    assert redact(redacted) == redacted  # stored text may be redacted again


@pytest.mark.parametrize(
    "text",
    [
        "HTTP 401 Unauthorized: bad token",
        "HTTP 503 Service Unavailable: broker is full",
        "tokens_used_by: 5, author: Ann",
        "connection error: [Errno 111] Connection refused",
        "compass: north; bypass: on; passenger: 3",
        "invalid token provided, tokens_used: 5",
    ],
)
def test_redact_keeps_a_plain_diagnosis(text):
    assert redact(text) == text


def test_the_exact_credentials_sent_are_taken_out_whatever_their_shape():
    assert redact(f"echo: {TOKEN}|{API_KEY}", [TOKEN, API_KEY, None]) == (
        f"echo: {REDACTED}|{REDACTED}"
    )


def test_the_migration_scrubs_errors_stored_before(monkeypatch):
    monkeypatch.setattr(migration, "BATCH", 2)  # several pages
    leaky = f"HTTP 500 Internal Server Error: Authorization: Bearer {JWT} Host: x"
    plain = "HTTP 503 Service Unavailable: broker is full"
    rows = [
        OutboxEvent.objects.create(
            event_id=str(n),
            source="urn:test",
            type="t",
            event="{}",
            last_error=leaky if n % 2 else plain,
        )
        for n in range(5)
    ]
    OutboxEvent.objects.create(event_id="ok", source="urn:test", type="t", event="{}")
    received = ReceivedEvent.objects.create(
        source="urn:test", event_id="r", type="t", event="{}"
    )
    run = TargetRun.objects.create(
        event=received,
        target="group:x",
        status=TargetRun.Status.FAILED,
        error="HTTPError: 401 for https://hook.example/?token=hunter2",
    )

    migration.redact_errors(apps, SimpleNamespace(connection=connection))

    stored = dict(OutboxEvent.objects.values_list("event_id", "last_error"))
    assert stored == {
        "0": plain,
        "1": f"HTTP 500 Internal Server Error: Authorization: {REDACTED} Host: x",
        "2": plain,
        "3": f"HTTP 500 Internal Server Error: Authorization: {REDACTED} Host: x",
        "4": plain,
        "ok": "",
    }
    assert rows[1].last_error == leaky  # the objects in hand are untouched
    run.refresh_from_db()
    assert run.error == f"HTTPError: 401 for https://hook.example/?token={REDACTED}"


def test_a_target_error_is_stored_redacted():
    received = ReceivedEvent.objects.create(
        source="urn:test", event_id="r", type="t", event="{}"
    )
    TargetRun.objects.create(event=received, target="group:x")
    TargetRun.objects.fail(
        received.pk, "group:x", RuntimeError(f"webhook said: Authorization: {JWT}")
    )
    [error] = TargetRun.objects.values_list("error", flat=True)
    assert error == f"RuntimeError: webhook said: Authorization: {REDACTED}"
