"""Anonymous watches: activation over HTTP, rate limits, claiming, purging,
unsubscribing."""

from __future__ import annotations

import io
import re
import socket
import time
from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes

import pytest
from django.contrib.auth import get_user_model
from django.core import mail, signing
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import transaction
from django.test import Client
from django.utils import timezone

from django_cloudevents_bridge.models import Watch
from django_cloudevents_bridge.notifications import tokens
from django_cloudevents_bridge.targets.watches import unsubscribe
from django_cloudevents_bridge.watches import claim_watches, keys
from django_cloudevents_bridge.watches.purge import purge
from tests.conftest import need
from tests.mail_settings import SMTP, use_mail
from tests.testapp.models import Question
from tests.watches.watchers import EditInLanguage, EditQuestion

pytestmark = pytest.mark.django_db

ADDRESS = "ann@example.org"


def link(message) -> str:
    """The activation link's path (the mail holds the absolute URL)."""
    [url] = re.findall(r"https://example\.test(/\S+)", message.body)
    return url


def client() -> Client:
    return Client(enforce_csrf_checks=True)


def always_verified(user) -> bool:
    return True


def test_an_address_watch_is_pending_until_the_post(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        watch = EditInLanguage.notify(ADDRESS, language="de")
    assert not watch.active
    [message] = mail.outbox
    assert message.to == [ADDRESS]
    assert message.subject == "Confirm your watch"
    path = link(message)
    assert path.startswith("/cloudevents/watches/activate/")
    stored = Watch.objects.get()
    assert stored.secret_digest and len(stored.secret_digest) == 64
    assert stored.secret_digest not in message.body  # only the digest is stored

    page = client().get(path)  # a mail scanner, or the person
    assert page.status_code == 200
    assert b'<form method="post">' in page.content
    assert not Watch.objects.get().active

    done = client().post(path)
    assert done.status_code == 200
    activated = Watch.objects.get()
    assert activated.active and activated.secret_digest == ""
    again = client().post(path)
    assert again.status_code == 200 and b"active already" in again.content


def test_an_expired_forged_or_replaced_link_is_refused(
    monkeypatch, settings, django_capture_on_commit_callbacks
):
    settings.CLOUDEVENTS_NOTIFICATIONS = {
        "BASE_URL": "https://example.test",
        "ACTIVATION_RATE": (10, 3600),
    }
    with django_capture_on_commit_callbacks(execute=True):
        EditInLanguage.notify(ADDRESS, language="de")
    path = link(mail.outbox[0])
    later = time.time() + 3 * 24 * 3600 + 60
    with monkeypatch.context() as patched:
        patched.setattr(signing.time, "time", lambda: later)
        assert client().get(path).status_code == 410
        assert client().post(path).status_code == 410
    assert client().post(path[:-3] + "xx/").status_code == 404
    token, _ = tokens.new()
    forged = signing.dumps({"w": Watch.objects.get().pk, "t": token}, salt="other")
    assert client().post(f"/cloudevents/watches/activate/{forged}/").status_code == 404
    assert not Watch.objects.get().active

    # A new link (a later period) replaces the first one.
    Watch.objects.update(secret_created_at=timezone.now() - timedelta(hours=2))
    with django_capture_on_commit_callbacks(execute=True):
        EditInLanguage.notify(ADDRESS, language="de")
    assert len(mail.outbox) == 2
    assert client().post(path).status_code == 404
    assert client().post(link(mail.outbox[1])).status_code == 200
    assert Watch.objects.get().active


def test_activation_mails_are_rate_limited_per_address(
    django_capture_on_commit_callbacks,
):
    with django_capture_on_commit_callbacks(execute=True):
        for language in ("de", "fr", "it", "es", "nl"):
            EditInLanguage.notify(ADDRESS, language=language)
            EditInLanguage.notify(ADDRESS.upper(), language=language)  # same person
        EditInLanguage.notify("bob@example.org", language="de")
    assert [m.to for m in mail.outbox] == [[ADDRESS]] * 3 + [["bob@example.org"]]
    assert Watch.objects.filter(owner=f"email:{ADDRESS}").count() == 5


def test_no_mail_when_the_transaction_rolls_back(django_capture_on_commit_callbacks):
    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        EditInLanguage.notify(ADDRESS)
        raise RuntimeError
    assert mail.outbox == [] and not Watch.objects.exists()


def test_activation_needs_the_base_url(settings):
    settings.CLOUDEVENTS_NOTIFICATIONS = {}
    with pytest.raises(ImproperlyConfigured, match="BASE_URL"):
        EditInLanguage.notify(ADDRESS)


def test_claim_watches_only_for_a_verified_address(settings):
    user = get_user_model().objects.create_user("ann", "Ann@Example.org", "x")
    EditInLanguage.notify(ADDRESS, language="de")
    active = EditInLanguage.notify(ADDRESS.upper(), language="fr")
    Watch.objects.filter(pk=active.pk).update(active=True)
    EditInLanguage.notify(user, language="fr")  # the user has this one already
    EditInLanguage.notify("bob@example.org")

    assert claim_watches(user) == 0  # nobody said the address is verified
    assert claim_watches(user, verified=False) == 0
    settings.CLOUDEVENTS_NOTIFICATIONS = {
        "EMAIL_VERIFIED": "tests.watches.test_anonymous.always_verified"
    }
    assert claim_watches(user) == 1
    mine = Watch.objects.filter(user=user).order_by("key")
    assert [(w.filters, w.active, w.owner, w.email) for w in mine] == [
        ({"language": "de"}, True, f"user:{user.pk}", ""),
        ({"language": "fr"}, True, f"user:{user.pk}", ""),
    ]
    assert Watch.objects.filter(user=None).get().email == "bob@example.org"


def test_purge_pending_orphaned_and_inactive_users_watches():
    now = timezone.now()
    question = Question.objects.create(question_text="q", pub_date=now)
    gone = Question.objects.create(question_text="gone", pub_date=now)
    user = get_user_model().objects.create_user("ann", ADDRESS, "x")
    leaving = get_user_model().objects.create_user("bob", "bob@example.org", "x")
    kept = [
        EditQuestion.notify(user, question),
        EditQuestion.notify(user),
        EditInLanguage.notify("new@example.org"),
    ]
    EditQuestion.notify(user, gone)
    EditInLanguage.notify(leaving)
    old = EditInLanguage.notify("old@example.org")
    Watch.objects.filter(pk=old.pk).update(created_at=now - timedelta(days=8))
    key = keys.match_key("t", "vanished.model", "1", {})
    Watch.objects.create(
        event_type="t",
        subject_type="vanished.model",
        subject_id="1",
        key=key,
        key_digest=keys.digest(key),
        owner=keys.owner_of(user),
        user=user,
        active=True,
    )
    gone.delete()
    leaving.is_active = False
    leaving.save()

    assert purge() == {"pending": 1, "inactive user": 1, "deleted object": 2}
    assert set(Watch.objects.values_list("pk", flat=True)) == {w.pk for w in kept}
    out = io.StringIO()
    call_command("cloudevents_purge_watches", stdout=out)
    assert "pending: 0 deleted" in out.getvalue()


def test_unsubscribe_deletes_only_the_recipients_watch():
    user = get_user_model().objects.create_user("ann", "Ann@example.org", "x")
    own = EditInLanguage.notify(user, language="de")
    anonymous = EditInLanguage.notify(ADDRESS, language="fr")
    other = EditInLanguage.notify("bob@example.org")

    unsubscribe({"kind": "watch", "id": other.pk}, f"user:{user.pk}")
    assert Watch.objects.filter(pk=other.pk).exists()  # not theirs
    unsubscribe({"kind": "watch", "id": own.pk}, f"user:{user.pk}")
    unsubscribe({"kind": "watch", "id": anonymous.pk}, f"user:{user.pk}")  # merged
    unsubscribe({"kind": "watch", "id": other.pk}, "email:bob@example.org")
    assert not Watch.objects.exists()


@pytest.fixture
def smtp(settings) -> Iterator[list]:
    """A real SMTP server on loopback (aiosmtpd); the messages it received."""
    try:
        from aiosmtpd.controller import Controller
    except ImportError:  # pragma: no cover - the test extra installs it
        need("aiosmtpd", "pip install -e '.[test]'")
    received: list = []

    class Inbox:
        async def handle_DATA(self, server, session, envelope) -> str:
            received.append((envelope.rcpt_tos, message_from_bytes(envelope.content)))
            return "250 OK"

    with socket.socket() as probe:  # a free port (the controller checks it by name)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Inbox(), hostname="127.0.0.1", port=port)
    controller.start()
    use_mail(settings, SMTP, host="127.0.0.1", port=port, timeout=30)
    yield received
    controller.stop()


@pytest.mark.django_db(transaction=True)
def test_activation_over_smtp_and_http(smtp):
    """The mail goes through a real SMTP server; GET shows, POST activates."""
    watch = EditInLanguage.notify(ADDRESS, language="de")  # autocommit: sent now
    [(recipients, message)] = smtp
    assert recipients == [ADDRESS]
    body = message.get_payload(decode=True).decode()
    [path] = re.findall(r"https://example\.test(/\S+)", body)
    assert client().get(path).status_code == 200
    assert not Watch.objects.get(pk=watch.pk).active
    assert client().post(path).status_code == 200
    assert Watch.objects.get(pk=watch.pk).active
