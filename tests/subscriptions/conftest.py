from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User

from django_cloudevents_bridge import events
from django_cloudevents_bridge.events import CloudEvent
from django_cloudevents_bridge.subscriptions import (
    Medium,
    Source,
    SourceGroup,
    resolvers,
)
from django_cloudevents_bridge.targets import subscriptions as target
from tests.mail_settings import LOCMEM, use_mail

BASE_URL = "https://example.test"
TYPE = "com.example.issue.commented"


@pytest.fixture(autouse=True)
def _site(settings) -> None:
    settings.CLOUDEVENTS_NOTIFICATIONS = {"BASE_URL": BASE_URL}
    use_mail(settings, LOCMEM)
    settings.CLOUDEVENTS_RECEIVER = {"TASK_BACKEND": False}  # the worker: by hand


@pytest.fixture(autouse=True)
def registry(monkeypatch) -> Iterator[resolvers.Registry]:
    """The resolver's registry, restored after the test (tests register more)."""
    copy = resolvers.registry.copy()
    monkeypatch.setattr(resolvers, "registry", copy)
    target._forget()
    yield copy
    target._forget()


@pytest.fixture
def source(db) -> Source:
    group = SourceGroup.objects.create(name="issues", display_name="Issues")
    return Source.objects.create(
        name="commented",
        display_name="New comment",
        group=group,
        event_type=TYPE,
        lifetime=timedelta(days=30),
    )


@pytest.fixture
def email(db) -> Medium:
    return Medium.objects.create(name="email", display_name="E-mail", channel="email")


@pytest.fixture
def feed(db) -> Medium:
    return Medium.objects.create(name="feed", display_name="Feed", channel="feed")


def user(name: str, *groups: Group) -> User:
    made = User.objects.create_user(name, f"{name}@example.org", "x")
    made.groups.add(*groups)
    return made


def ref(instance) -> str:
    return f"{instance._meta.label_lower}/{instance.pk}"


def cloudevent(*actors, id: str = "c-1", **options) -> CloudEvent:
    extensions = dict(options.pop("extensions", {}))
    if actors:
        extensions["actors"] = ",".join(ref(actor) for actor in actors)
    return events.new(
        TYPE,
        source="/issues",
        id=id,
        data=options.pop("data", {"issue": 7, "text": "hello"}),
        extensions=extensions,
        **options,
    )
