"""One-click unsubscribe (RFC 8058): GET asks, POST unsubscribes; links revocable."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections import Counter
from urllib.parse import urlsplit

import pytest
from django.test import Client

from django_cloudevents_bridge.models import Delivery
from django_cloudevents_bridge.notifications import record, send_due, unsubscribe
from django_cloudevents_bridge.notifications.unsubscribe import register_unsubscriber

from .conftest import event, items

ONE_CLICK = {"List-Unsubscribe": "One-Click"}


def links(smtp) -> list[str]:
    """The List-Unsubscribe URLs of the messages received, in order."""
    return [
        str(m["List-Unsubscribe"]).strip().strip("<>") for m in smtp.mailbox.messages
    ]


def path(url: str) -> str:
    return urlsplit(url).path


@pytest.fixture
def sent(smtp, unsubscribed) -> str:
    """One delivery sent to ann: its unsubscribe link."""
    record(event(), "email", items("ann@example.com"))
    assert send_due() == Counter(sent=1)
    [link] = links(smtp)
    return link


@pytest.mark.django_db
def test_get_shows_a_confirmation_and_changes_nothing(sent, unsubscribed):
    client = Client(enforce_csrf_checks=True)
    for _ in range(2):  # a mail scanner, then the person
        response = client.get(path(sent))
        assert response.status_code == 200
        assert b'name="List-Unsubscribe" value="One-Click"' in response.content
        assert b'method="post"' in response.content
        assert response["Cache-Control"] == "no-store"
    assert unsubscribed == []
    assert Delivery.objects.get().unsubscribed_at is None


@pytest.mark.django_db
def test_post_unsubscribes_every_reason_once_without_a_csrf_token(sent, unsubscribed):
    client = Client(enforce_csrf_checks=True)
    response = client.post(path(sent), ONE_CLICK)
    assert response.status_code == 200
    assert b"Unsubscribed" in response.content
    assert unsubscribed == [
        (
            {"kind": "watch", "id": 1, "class": "wiki.EditDocument"},
            "email:ann@example.com",
        )
    ]
    assert Delivery.objects.get().unsubscribed_at is not None
    # Clicked again (or the provider's POST and the person's): done once.
    assert client.post(path(sent), ONE_CLICK).status_code == 200
    assert client.get(path(sent)).status_code == 200
    assert len(unsubscribed) == 1


@pytest.mark.django_db
def test_a_post_that_is_no_one_click_request_is_refused(sent, unsubscribed):
    client = Client(enforce_csrf_checks=True)
    assert client.post(path(sent)).status_code == 400
    assert client.post(path(sent), {"List-Unsubscribe": "yes"}).status_code == 400
    assert unsubscribed == []


@pytest.mark.django_db
def test_forged_tampered_and_unknown_links_are_404(sent, unsubscribed):
    client = Client(enforce_csrf_checks=True)
    signed = path(sent).rstrip("/").rsplit("/", 1)[1]
    value, rest = signed.split(":", 1)
    forged = [
        "nothing",
        signed[:-2] + "xx",  # a bad signature
        unsubscribe.link(Delivery.objects.get().pk, "guessed-token").rsplit("/", 2)[1],
        unsubscribe.link(999, "token").rsplit("/", 2)[1],
        "x" * 500,
        value + ":" + rest.upper(),
    ]
    for bad in forged:
        response = client.post(f"/cloudevents/unsubscribe/{bad}/", ONE_CLICK)
        assert response.status_code == 404, bad
        assert b"invalid or has been revoked" in response.content
        assert client.get(f"/cloudevents/unsubscribe/{bad}/").status_code == 404
    assert unsubscribed == []


@pytest.mark.django_db
def test_revoked_links_stop_working(sent, unsubscribed):
    client = Client(enforce_csrf_checks=True)
    assert Delivery.objects.all().revoke_links() == 1
    assert client.post(path(sent), ONE_CLICK).status_code == 404
    assert unsubscribed == []


@pytest.mark.django_db
def test_a_resent_delivery_has_a_new_link_and_the_old_one_is_revoked(
    smtp, sent, unsubscribed
):
    Delivery.objects.update(status="failed", next_attempt_at="2000-01-01T00:00Z")
    assert send_due() == Counter(sent=1)
    old, new = links(smtp)
    client = Client(enforce_csrf_checks=True)
    assert client.post(path(old), ONE_CLICK).status_code == 404
    assert client.post(path(new), ONE_CLICK).status_code == 200
    assert len(unsubscribed) == 1


@pytest.mark.django_db
def test_a_failing_unsubscriber_changes_nothing_and_asks_to_retry(sent, caplog):
    calls = []

    def broken(reason: dict, key: str) -> None:
        calls.append(key)
        raise RuntimeError("watch table locked")

    register_unsubscriber("watch", broken)
    client = Client(enforce_csrf_checks=True, raise_request_exception=False)
    response = client.post(path(sent), ONE_CLICK)
    assert response.status_code == 503
    assert calls == ["email:ann@example.com"]
    assert Delivery.objects.get().unsubscribed_at is None
    assert "Unsubscribing delivery" in caplog.text


@pytest.mark.django_db
def test_reasons_of_an_unregistered_kind_are_skipped_with_a_warning(
    sent, unsubscribed, caplog
):
    Delivery.objects.update(
        reasons=[{"kind": "digest", "id": 3}, {"kind": "watch", "id": 1}]
    )
    response = Client().post(path(sent), ONE_CLICK)
    assert response.status_code == 200
    assert [reason["id"] for reason, _ in unsubscribed] == [1]
    assert "No unsubscriber is registered for reasons of kind 'digest'" in (caplog.text)


def test_register_unsubscriber_needs_a_callable():
    with pytest.raises(TypeError, match="must be callable"):
        register_unsubscriber("watch", "not callable")  # type: ignore[arg-type]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_a_mail_providers_one_click_post_over_http(
    live_server, smtp, unsubscribed, settings, encoding
):
    """What Gmail or Yahoo send (RFC 8058 3.2): a POST to the header's URL, no
    cookie, no CSRF token, no redirects followed."""
    settings.CLOUDEVENTS_NOTIFICATIONS = {"BASE_URL": live_server.url}
    record(event(), "email", items("ann@example.com"))
    assert send_due() == Counter(sent=1)
    [received] = smtp.mailbox.messages
    assert received["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    [url] = links(smtp)
    assert url.startswith(live_server.url + "/cloudevents/unsubscribe/")

    if encoding == "urlencoded":
        body = b"List-Unsubscribe=One-Click"
        content_type = "application/x-www-form-urlencoded"
    else:
        body = (
            b"--b0undary\r\n"
            b'Content-Disposition: form-data; name="List-Unsubscribe"\r\n\r\n'
            b"One-Click\r\n--b0undary--\r\n"
        )
        content_type = "multipart/form-data; boundary=b0undary"
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": content_type}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
    assert [key for _, key in unsubscribed] == ["email:ann@example.com"]

    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(
            urllib.request.Request(url + "x/", data=body, method="POST"), timeout=30
        )
    assert refused.value.code == 404
