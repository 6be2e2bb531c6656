from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.mail import EmailMessage

from django_cloudevents_bridge.events import CloudEvent, new
from django_cloudevents_bridge.notifications import Recipient, address_key, unsubscribe
from tests.mail_settings import LOCMEM, use_mail

BASE_URL = "https://example.com"


@pytest.fixture(autouse=True)
def notifications_settings(settings) -> None:
    settings.CLOUDEVENTS_NOTIFICATIONS = {"BASE_URL": BASE_URL, "BACKOFF": 60.0}
    use_mail(settings, LOCMEM)
    settings.CLOUDEVENTS_RECEIVER = {"TASK_BACKEND": False}  # no task: send_due()


@pytest.fixture
def unsubscribed() -> Iterator[list[tuple[dict, str]]]:
    """Reasons of kind "watch" unsubscribed, in order (a registered unsubscriber)."""
    calls: list[tuple[dict, str]] = []
    saved = dict(unsubscribe._unsubscribers)
    unsubscribe.register_unsubscriber("watch", lambda r, k: calls.append((r, k)))
    yield calls
    unsubscribe._unsubscribers.clear()
    unsubscribe._unsubscribers.update(saved)


def event(id: str = "e-1", source: str = "/wiki") -> CloudEvent:
    return new("com.example.wiki.edit", data={"page": 1}, source=source, id=id)


def person(address: str, watch: int = 1) -> Recipient:
    return Recipient(
        key=address_key(address),
        email=address,
        reasons=({"kind": "watch", "id": watch, "class": "wiki.EditDocument"},),
    )


def mail(address: str, subject: str = "Page edited") -> EmailMessage:
    return EmailMessage(subject, f"Hello {address}", "wiki@example.com", [address])


def items(*addresses: str) -> list[tuple[Recipient, EmailMessage]]:
    return [(person(address), mail(address)) for address in addresses]
