"""Subscriptions as a dispatch target: received, stored once, notified once."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test import Client
from django.utils import timezone

from django_cloudevents_bridge import events, work
from django_cloudevents_bridge.bindings.http import to_http
from django_cloudevents_bridge.models import Delivery, TargetRun
from django_cloudevents_bridge.notifications import send_due, unsubscribe
from django_cloudevents_bridge.subscriptions import (
    Event,
    EventActor,
    Medium,
    Unsubscription,
    subscribe,
)
from django_cloudevents_bridge.targets import subscriptions as target
from django_cloudevents_bridge.targets import targets_for
from django_cloudevents_bridge.watches import WatchEvent
from django_cloudevents_bridge.watches.base import unregister

from .conftest import TYPE, cloudevent, user

pytestmark = pytest.mark.django_db(transaction=True)


def receive(event: events.CloudEvent) -> int:
    headers, body = to_http(event)
    content_type = headers.pop("Content-Type", "application/json")
    return (
        Client(enforce_csrf_checks=True)
        .generic(
            "POST", "/cloudevents/", body, content_type=content_type, headers=headers
        )
        .status_code
    )


@pytest.fixture
def commented():
    """A watch class of the same type: watches and subscriptions both match."""

    class Commented(WatchEvent):
        event_type = TYPE

    yield Commented
    unregister(Commented)


def test_only_types_of_a_source_that_pass_its_filter_get_the_target(source):
    assert [t.name for t in targets_for(cloudevent())] == ["subscriptions"]
    assert all(t.deferred for t in targets_for(cloudevent()))
    assert targets_for(events.new("com.example.other")) == []
    source.filter = {"exact": {"subject": "issue/7"}}
    source.save()  # the process forgets its list of sources at once
    assert targets_for(cloudevent()) == []
    assert [t.name for t in targets_for(cloudevent(subject="issue/7"))] == [
        "subscriptions"
    ]


@pytest.mark.parametrize("mode", ["inline", "deferred"])
def test_two_groups_and_a_watch_make_one_message_over_smtp(
    mode, settings, smtp, source, email, feed, commented
):
    settings.CLOUDEVENTS_RECEIVER = {"MODE": mode, "TASK_BACKEND": False}
    red, blue = Group.objects.create(name="red"), Group.objects.create(name="blue")
    ann, bob = user("ann", red, blue), user("bob", blue)
    for group in (red, blue):
        for medium in (email, feed):
            subscribe(medium, source, group, sub_entity_type=ann, only_following=False)
    commented.notify(ann)
    event = cloudevent(bob)

    assert receive(event) == 202
    assert Event.objects.count() == 0  # on the worker, never in the request
    assert work.process() == Counter(done=2)  # watches, subscriptions
    assert send_due() == Counter(sent=2)

    stored = Event.objects.get()
    assert (stored.event_source, stored.event_id) == ("/issues", "c-1")
    assert stored.context == {"issue": 7, "text": "hello"}
    assert stored.expires_at == stored.time + timedelta(days=30)
    assert [(a.entity_id) for a in EventActor.objects.all()] == [str(bob.pk)]
    assert sorted(to for _, [to] in smtp.mailbox.envelopes) == [
        "ann@example.org",
        "bob@example.org",
    ]
    assert sorted(Delivery.objects.values_list("recipient", "channel")) == [
        (f"user:{ann.pk}", "email"),
        (f"user:{bob.pk}", "email"),
    ]
    mail = next(m for m in smtp.mailbox.messages if m["To"] == "bob@example.org")
    assert mail["Subject"] == "New comment"
    assert "<https://example.test/cloudevents/unsubscribe/" in mail["List-Unsubscribe"]

    # Redelivered: nobody is notified again.
    assert receive(event) == 202
    assert work.process() == Counter()
    assert send_due() == Counter()


def test_expirytime_and_actors_path(source, email):
    source.actors_path = "by.refs"
    source.lifetime = None
    source.save()
    ann = user("ann")
    expiry = timezone.now() + timedelta(hours=2)
    event = cloudevent(
        data={"by": {"refs": [f"auth.user/{ann.pk}", "nope.model/1", "auth.user/x"]}},
        extensions={"expirytime": expiry.isoformat()},
    )

    stored = target.store(event, source)

    assert stored.expires_at == expiry
    assert [(a.entity_id) for a in stored.actors.all()] == [str(ann.pk)]
    # No expiry, no lifetime: current for ever.
    assert target.store(cloudevent(id="2"), source).expires_at is None


def test_one_click_unsubscribe_opts_the_member_out(settings, source, email):
    settings.CLOUDEVENTS_RECEIVER = {"MODE": "inline", "TASK_BACKEND": False}
    red = Group.objects.create(name="red")
    ann, bob = user("ann", red), user("bob", red)
    subscribe(email, source, red, sub_entity_type=ann, only_following=False)
    assert receive(cloudevent(id="1")) == 202
    work.process()
    delivery = Delivery.objects.get(recipient=f"user:{bob.pk}")

    assert unsubscribe.unsubscribe(delivery)

    assert Unsubscription.objects.get().entity_id == str(bob.pk)
    assert receive(cloudevent(id="2")) == 202
    work.process()
    assert sorted(
        Delivery.objects.filter(event_id="2").values_list("recipient", flat=True)
    ) == [f"user:{ann.pk}"]


def test_the_webhook_medium_posts_the_cloudevent_to_a_loopback_server(
    settings, sink, source
):
    import base64

    settings.CLOUDEVENTS_NOTIFICATIONS = {
        "BASE_URL": "https://example.test",
        "CHANNELS": {
            "hook": {
                "BACKEND": "django_cloudevents_bridge.notifications.channels."
                "webhook.Channel",
                "OPTIONS": {
                    "url": sink.url + "hooks",
                    "secret": "whsec_" + base64.b64encode(b"k" * 32).decode(),
                    "timeout": 30,
                },
            }
        },
    }
    settings.CLOUDEVENTS_RECEIVER = {"MODE": "inline", "TASK_BACKEND": False}
    hook = Medium.objects.create(name="hook", display_name="Hook", channel="hook")
    ann, bob = user("ann"), user("bob")
    for person in (ann, bob):
        subscribe(hook, source, person, only_following=False)

    assert receive(cloudevent()) == 202
    assert work.process() == Counter(done=1)
    assert send_due() == Counter(sent=2)

    received = sink.wait_for(2)
    assert len({r.headers["webhook-id"] for r in received}) == 2
    assert {r.event.get_id() for r in received} == {"c-1"}
    assert {r.event.get_type() for r in received} == {TYPE}
    # One POST per person, each saying whom it is for.
    assert sorted(r.event.get_attributes()["recipient"] for r in received) == sorted(
        [f"user:{ann.pk}", f"user:{bob.pk}"]
    )


@pytest.mark.postgres
def test_concurrent_duplicate_deliveries_store_one_event_and_notify_once(
    settings, source, email
):
    """The target itself run by racing threads (past the dispatch's claim)."""
    assert connection.vendor == "postgresql"
    red = Group.objects.create(name="red")
    people = [user(f"u{i}", red) for i in range(5)]
    subscribe(email, source, red, sub_entity_type=people[0], only_following=False)
    event = cloudevent(people[0])
    threads, errors, news = 6, [], []
    barrier = threading.Barrier(threads)

    def run() -> None:
        from django.db import transaction

        try:
            barrier.wait(timeout=60)
            with transaction.atomic():
                news.append(target.notify_subscribers(event))
        except Exception as err:
            errors.append(err)
        finally:
            connection.close()

    running = [threading.Thread(target=run) for _ in range(threads)]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join(timeout=120)

    assert not errors, errors
    assert Event.objects.count() == 1
    assert EventActor.objects.count() == 1
    assert sum(news) == 5
    assert Delivery.objects.count() == 5


@pytest.mark.postgres
def test_concurrent_posts_of_one_cloudevent_run_the_target_once(
    settings, source, email
):
    settings.CLOUDEVENTS_RECEIVER = {"MODE": "inline", "TASK_BACKEND": False}
    ann = user("ann")
    subscribe(email, source, ann, only_following=False)
    event = cloudevent()
    barrier, statuses = threading.Barrier(4), []

    def post() -> None:
        try:
            barrier.wait(timeout=60)
            statuses.append(receive(event))
        finally:
            connection.close()

    running = [threading.Thread(target=post) for _ in range(4)]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join(timeout=120)
    work.process()

    assert all(status < 300 for status in statuses), statuses
    assert len(statuses) == 4
    assert TargetRun.objects.filter(target="subscriptions").count() == 1
    assert Event.objects.count() == 1
    assert list(Delivery.objects.values_list("recipient", flat=True)) == [
        f"user:{ann.pk}"
    ]
