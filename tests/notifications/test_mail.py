"""``_mail``: e-mail connections through MAILERS (Django 6.1+) or EMAIL_BACKEND."""

from __future__ import annotations

import warnings

import django
import pytest
from django.core import mail
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMessage

from django_cloudevents_bridge.notifications import _mail
from tests.mail_settings import LOCMEM

mailers_only = pytest.mark.skipif(not _mail.HAS_MAILERS, reason="Django 6.1+")
before_mailers = pytest.mark.skipif(_mail.HAS_MAILERS, reason="before Django 6.1")


def message() -> EmailMessage:
    return EmailMessage("Hello", "body", "wiki@example.com", ["ann@example.com"])


def test_mailers_are_found_on_the_django_that_has_them():
    assert _mail.HAS_MAILERS is (django.VERSION >= (6, 1))


def test_the_default_sends_through_the_configured_smtp_server_with_no_warning(smtp):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # none of Django's deprecations either
        with _mail.connection() as connection:
            assert connection.send_messages([message(), message()]) == 2
    assert smtp.mailbox.connections == 1
    assert [to for _, [to] in smtp.mailbox.envelopes] == ["ann@example.com"] * 2


def test_nothing_named_is_not_checked():
    _mail.check()  # Django's default: Django's own checks cover it


@mailers_only
def test_a_mailer_is_chosen_by_name(smtp, settings):
    server = settings.MAILERS["default"]  # the smtp fixture's
    settings.MAILERS = {"default": {"BACKEND": LOCMEM}, "notices": server}
    _mail.check("notices")
    with _mail.connection("notices") as connection:
        assert connection.alias == "notices"
        assert connection.send_messages([message()]) == 1
    assert len(smtp.mailbox.messages) == 1
    assert mail.outbox == []  # not the default mailer


@mailers_only
def test_an_unknown_or_broken_mailer_is_improperly_configured(settings):
    settings.MAILERS = {"default": {"BACKEND": LOCMEM}, "odd": {"BACKEND": "no.Such"}}
    with pytest.raises(
        ImproperlyConfigured, match="The mailer 'nope' is not configured"
    ):
        _mail.check("nope")
    with pytest.raises(ImproperlyConfigured, match="Could not find BACKEND 'no.Such'"):
        _mail.connection("odd")


@mailers_only
def test_a_backend_path_cannot_be_used_with_mailers(settings):
    with pytest.raises(ImproperlyConfigured, match="name that entry with the 'mailer'"):
        _mail.check(backend=LOCMEM)
    with pytest.raises(ImproperlyConfigured, match="not both"):
        _mail.connection("default", LOCMEM)


@mailers_only
def test_a_backend_path_still_works_without_mailers_and_is_deprecated(settings):
    """A project on 6.1 that keeps the old settings (Django's transition)."""
    del settings.MAILERS
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        connection = _mail.connection(backend=LOCMEM)
    said = [(w.category, str(w.message)) for w in caught]
    assert (DeprecationWarning, _mail.BACKEND_DEPRECATED) in said
    assert any("get_connection() is deprecated" in text for _, text in said)  # Django
    assert connection.send_messages([message()]) == 1
    assert [m.to for m in mail.outbox] == [["ann@example.com"]]


@before_mailers
def test_before_mailers_a_backend_path_is_used_and_no_mailer_can_be_named():
    connection = _mail.connection(backend=LOCMEM)
    assert connection.send_messages([message()]) == 1
    assert len(mail.outbox) == 1
    with pytest.raises(ImproperlyConfigured, match="needs Django 6.1"):
        _mail.check("default")
