"""The e-mail channel against a real SMTP server on loopback."""

from __future__ import annotations

import base64
from collections import Counter
from datetime import timedelta

import pytest
from django.core import mail
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.utils import timezone

from django_cloudevents_bridge.models import Delivery
from django_cloudevents_bridge.notifications import record, send_due
from django_cloudevents_bridge.notifications._mail import HAS_MAILERS
from django_cloudevents_bridge.notifications.channels import get_channel
from tests.mail_settings import LOCMEM, SMTP, use_mail

from .conftest import BASE_URL, event, items, person

Status = Delivery.Status
pytestmark = pytest.mark.django_db


def test_messages_are_dumped_to_json_and_loaded_back_whole():
    channel = get_channel("email")
    message = EmailMultiAlternatives(
        "Édition",
        "plain body",
        "Wiki <wiki@example.com>",
        ["ann@example.com"],
        cc=["cc@example.com"],
        bcc=["bcc@example.com"],
        reply_to=["reply@example.com"],
        headers={"X-Wiki": "1"},
    )
    message.attach_alternative("<p>html body</p>", "text/html")
    message.attach("notes.txt", "some notes", "text/plain")
    message.attach("logo.png", b"\x89PNG\x00\xff", "image/png")
    dumped = channel.dump(message)

    assert (
        dumped["attachments"][1]["content_base64"]
        == base64.b64encode(b"\x89PNG\x00\xff").decode()
    )
    loaded = channel.load(dumped)
    assert channel.dump(loaded) == dumped
    assert loaded.recipients() == [
        "ann@example.com",
        "cc@example.com",
        "bcc@example.com",
    ]
    assert loaded.alternatives[0][0] == "<p>html body</p>"
    assert loaded.attachments[1][1] == b"\x89PNG\x00\xff"


def test_an_attachment_with_no_json_form_is_refused():
    from email.mime.text import MIMEText

    message = EmailMessage("s", "b", "a@example.com", ["ann@example.com"])
    # What attach(part) leaves: Django 6.1 deprecates attaching a MIMEBase, and
    # Django 5.2 cannot attach a MIMEPart.
    message.attachments.append(MIMEText("inline"))
    with pytest.raises(TypeError, match=r"\(filename, content, mimetype\)"):
        get_channel("email").dump(message)


def test_a_batch_goes_over_one_smtp_connection_with_unsubscribe_headers(smtp):
    people = [f"p{n}@example.com" for n in range(5)]
    record(event(), "email", items(*people))

    assert send_due() == Counter(sent=5)
    box = smtp.mailbox
    assert box.connections == 1
    assert sorted(to for _, [to] in box.envelopes) == people
    for received in box.messages:
        assert received["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        link = str(received["List-Unsubscribe"]).strip()  # folded: a long line
        assert link.startswith(f"<{BASE_URL}/cloudevents/unsubscribe/")
        assert link.endswith("/>")
    assert len({m["List-Unsubscribe"] for m in box.messages}) == 5
    assert all(row.unsubscribe_digest for row in Delivery.objects.all())
    assert send_due() == Counter()
    assert box.connections == 1


def test_refused_recipients_are_parked_and_the_others_sent(smtp):
    smtp.mailbox.refuse["gone@example.com"] = "550 5.1.1 no such user"
    smtp.mailbox.refuse["full@example.com"] = "452 4.2.2 mailbox full"
    record(
        event(),
        "email",
        items("ann@example.com", "gone@example.com", "full@example.com", "bo@x.org"),
    )

    assert send_due() == Counter(sent=2, parked=1, failed=1)
    rows = {row.recipient: row for row in Delivery.objects.all()}
    gone, full = rows["email:gone@example.com"], rows["email:full@example.com"]
    assert gone.status == Status.PARKED and "550" in gone.last_error
    assert full.status == Status.FAILED and "452" in full.last_error
    assert smtp.mailbox.connections == 1  # a refusal keeps the connection

    del smtp.mailbox.refuse["full@example.com"]
    Delivery.objects.filter(pk=full.pk).update(next_attempt_at=timezone.now())
    assert send_due() == Counter(sent=1)
    assert sorted(to for _, [to] in smtp.mailbox.envelopes) == [
        "ann@example.com",
        "bo@x.org",
        "full@example.com",
    ]


def test_a_temporary_data_error_is_retried_and_a_permanent_one_parked(smtp):
    smtp.mailbox.fail_data[:] = ["451 4.3.0 try again later", "554 5.6.0 rejected"]
    record(event(), "email", items("a@example.com", "b@example.com", "c@example.com"))

    assert send_due() == Counter(failed=1, parked=1, sent=1)
    statuses = dict(Delivery.objects.values_list("recipient", "status"))
    assert statuses == {
        "email:a@example.com": Status.FAILED,
        "email:b@example.com": Status.PARKED,
        "email:c@example.com": Status.SENT,
    }


def test_a_server_that_is_down_fails_each_delivery_and_a_retry_sends_it(settings):
    from tests.smtp import SMTPServer

    server = SMTPServer()  # its port, not listening yet
    use_mail(settings, SMTP, host="127.0.0.1", port=server.port, timeout=10)
    record(event(), "email", items("a@example.com", "b@example.com"))

    assert send_due() == Counter(failed=2)
    for row in Delivery.objects.all():
        assert row.attempts == 1 and "ConnectionRefusedError" in row.last_error
        assert row.next_attempt_at > timezone.now() + timedelta(seconds=50)

    server.start()
    try:
        Delivery.objects.update(next_attempt_at=timezone.now())  # the backoff ran out
        assert send_due() == Counter(sent=2)
    finally:
        server.stop()
    assert sorted(to for _, [to] in server.mailbox.envelopes) == [
        "a@example.com",
        "b@example.com",
    ]


def test_a_dropped_connection_fails_one_message_and_the_next_reconnects(smtp):
    smtp.mailbox.fail_data[:] = ["421 4.3.2 closing"]  # the server hangs up
    record(event(), "email", items("a@example.com", "b@example.com"))

    assert send_due() == Counter(failed=1, sent=1)
    assert smtp.mailbox.connections == 2


def test_without_base_url_nothing_is_sent_and_the_error_says_why(settings):
    settings.CLOUDEVENTS_NOTIFICATIONS = {}
    record(event(), "email", items("a@example.com"))
    assert send_due() == Counter(failed=1)
    assert mail.outbox == []
    assert "BASE_URL" in Delivery.objects.get().last_error


def test_a_message_with_no_recipients_is_parked():
    record(event(), "email", [(person("a@x.org"), EmailMessage("s", "b", "f@x.org"))])
    assert send_due() == Counter(parked=1)
    assert "no recipients" in Delivery.objects.get().last_error


def test_a_stored_message_that_no_longer_loads_is_parked_and_the_rest_sent(smtp):
    record(event(), "email", items("a@example.com", "b@example.com"))
    Delivery.objects.filter(recipient="email:a@example.com").update(message={})
    assert send_due() == Counter(parked=1, sent=1)
    assert "KeyError" in Delivery.objects.get(status="parked").last_error
    assert smtp.mailbox.connections == 1


@pytest.mark.parametrize("people", [1, 10])
def test_sending_a_batch_costs_a_fixed_number_of_queries_plus_one_per_message(
    django_assert_num_queries, people
):
    record(event(), "email", items(*(f"p{n}@example.com" for n in range(people))))
    # Due channels, the claim, the claimed rows, their links' digests; an
    # outcome per message (each recorded before the next is sent); due channels.
    with django_assert_num_queries(5 + people):
        assert send_due() == Counter(sent=people)


EMAIL_CHANNEL = "django_cloudevents_bridge.notifications.channels.email.Channel"


def email_channel(settings, **options) -> None:
    """The built-in "email" channel, configured with ``options``."""
    channels = {"email": {"BACKEND": EMAIL_CHANNEL, "OPTIONS": options}}
    settings.CLOUDEVENTS_NOTIFICATIONS = {"BASE_URL": BASE_URL, "CHANNELS": channels}


@pytest.mark.skipif(not HAS_MAILERS, reason="MAILERS: Django 6.1 and later")
def test_the_mailer_option_sends_through_that_mailer(smtp, settings):
    server = settings.MAILERS["default"]  # the smtp fixture's
    settings.MAILERS = {"default": {"BACKEND": LOCMEM}, "notices": server}
    email_channel(settings, mailer="notices")
    record(event(), "email", items("a@example.com", "b@example.com"))

    assert send_due() == Counter(sent=2)
    assert len(smtp.mailbox.messages) == 2 and smtp.mailbox.connections == 1
    assert mail.outbox == []  # not the default mailer


@pytest.mark.skipif(HAS_MAILERS, reason="EMAIL_BACKEND: before Django 6.1")
def test_the_backend_option_sends_through_that_backend(smtp, settings):
    settings.EMAIL_BACKEND = LOCMEM  # EMAIL_HOST/EMAIL_PORT: the smtp fixture's
    email_channel(settings, backend=SMTP)
    record(event(), "email", items("a@example.com", "b@example.com"))

    assert send_due() == Counter(sent=2)
    assert len(smtp.mailbox.messages) == 2 and smtp.mailbox.connections == 1
    assert mail.outbox == []  # not EMAIL_BACKEND


def test_an_unknown_mailer_fails_each_delivery_and_a_retry_sends_it(smtp, settings):
    """Before Django 6.1 every mailer name is unknown: there are no MAILERS."""
    email_channel(settings, mailer="nope")
    assert record(event(), "email", items("a@example.com", "b@example.com")) == 2

    assert send_due() == Counter(failed=2)
    for row in Delivery.objects.all():
        assert row.status == Status.FAILED and row.next_attempt_at is not None
        assert "mailer 'nope'" in row.last_error

    email_channel(settings)  # the configuration mended
    Delivery.objects.update(next_attempt_at=timezone.now())
    assert send_due() == Counter(sent=2)
    assert len(smtp.mailbox.messages) == 2


def test_a_backend_that_cannot_be_used_fails_each_delivery(settings):
    """A path that does not import; on Django 6.1 also any path beside MAILERS."""
    email_channel(settings, backend="no.such.EmailBackend")
    record(event(), "email", items("a@example.com", "b@example.com"))
    assert send_due() == Counter(failed=2)
    assert all("no.such" in row.last_error for row in Delivery.objects.all())
