"""System checks of CLOUDEVENTS_NOTIFICATIONS, and the ledger's admin."""

from __future__ import annotations

from collections import Counter

import pytest

from django_cloudevents_bridge.checks import check_notifications
from django_cloudevents_bridge.models import Delivery
from django_cloudevents_bridge.notifications import record, send_due

from .conftest import event, items


def ids(settings, value) -> list[str]:
    settings.CLOUDEVENTS_NOTIFICATIONS = value
    return [message.id for message in check_notifications()]


def test_good_or_absent_settings_pass(settings):
    del settings.CLOUDEVENTS_NOTIFICATIONS
    assert check_notifications() == []
    assert ids(settings, {"BASE_URL": "https://example.com/"}) == []
    assert ids(settings, {"BASE_URL": "http://localhost:8000"}) == []


@pytest.mark.parametrize(
    "base",
    ["example.com", "ftp://example.com", "https://", "https://x.org/?a=1", 42],
)
def test_a_bad_base_url_is_an_error(settings, base):
    assert ids(settings, {"BASE_URL": base}) == ["cloudevents_bridge.E010"]


def test_a_missing_or_plain_http_base_url_is_a_warning(settings):
    assert ids(settings, {"MAX_ATTEMPTS": 3}) == ["cloudevents_bridge.W007"]
    assert ids(settings, {"BASE_URL": "http://example.com"}) == [
        "cloudevents_bridge.W008"
    ]


def test_channels_that_do_not_import_or_are_no_channels_are_errors(settings):
    base = {"BASE_URL": "https://example.com"}
    settings.CLOUDEVENTS_NOTIFICATIONS = {
        **base,
        "CHANNELS": {"sms": "nowhere.Channel", "odd": "collections.Counter"},
    }
    messages = check_notifications()
    assert [m.id for m in messages] == ["cloudevents_bridge.E011"] * 2
    assert "'sms'" in messages[0].msg and "'odd'" in messages[1].msg
    assert "no BaseChannel" in messages[1].msg
    assert ids(settings, {**base, "CHANNELS": ["email"]}) == ["cloudevents_bridge.E010"]


def test_an_email_channel_naming_a_mailer_that_is_not_there_is_an_error(settings):
    """Before Django 6.1 there are no MAILERS: any name is an error."""
    email = "django_cloudevents_bridge.notifications.channels.email.Channel"
    settings.CLOUDEVENTS_NOTIFICATIONS = {
        "BASE_URL": "https://example.com",
        "CHANNELS": {"email": {"BACKEND": email, "OPTIONS": {"mailer": "nope"}}},
    }
    [message] = check_notifications()
    assert message.id == "cloudevents_bridge.E011"
    assert "'email'" in message.msg and "mailer 'nope'" in message.msg


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("MAX_ATTEMPTS", 0),
        ("MAX_ATTEMPTS", 2.5),
        ("BATCH", True),
        ("BACKOFF", -1),
        ("LEASE", "10"),
    ],
)
def test_numbers_must_be_numbers(settings, key, value):
    bad = {"BASE_URL": "https://example.com", key: value}
    assert ids(settings, bad) == ["cloudevents_bridge.E010"]


def test_the_setting_must_be_a_dict(settings):
    assert ids(settings, ["BASE_URL"]) == ["cloudevents_bridge.E010"]


@pytest.mark.django_db
def test_admin_lists_deliveries_and_retries_or_revokes_them(admin_client, settings):
    settings.CLOUDEVENTS_NOTIFICATIONS = {}  # no BASE_URL: every send fails
    record(event(), "email", items("ann@example.com"))
    assert send_due() == Counter(failed=1)
    delivery = Delivery.objects.get()

    listing = admin_client.get("/admin/django_cloudevents_bridge/delivery/")
    assert listing.status_code == 200
    assert b"email:ann@example.com" in listing.content
    page = admin_client.get(
        f"/admin/django_cloudevents_bridge/delivery/{delivery.pk}/change/"
    )
    assert page.status_code == 200
    assert b"BASE_URL" in page.content

    Delivery.objects.update(status="parked", next_attempt_at=None)
    admin_client.post(
        "/admin/django_cloudevents_bridge/delivery/",
        {"action": "retry_deliveries", "_selected_action": [delivery.pk]},
    )
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("pending", 0)

    Delivery.objects.update(unsubscribe_digest="ab" * 32)
    admin_client.post(
        "/admin/django_cloudevents_bridge/delivery/",
        {"action": "revoke_links", "_selected_action": [delivery.pk]},
    )
    delivery.refresh_from_db()
    assert delivery.unsubscribe_digest == ""
