"""One subscriber's feed: newest first, keyset pages, seen per person, the view."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_cloudevents_bridge.subscriptions import (
    Event,
    EventSeen,
    Source,
    entity_events,
    mark_seen,
    subscribe,
    unsubscribe,
)
from django_cloudevents_bridge.subscriptions.feed import BadCursor
from django_cloudevents_bridge.targets.subscriptions import store

from .conftest import cloudevent, user

pytestmark = pytest.mark.django_db


@pytest.fixture
def stream(source):
    """Ten events a minute apart, by bob (even) or by the red group (odd)."""
    red = Group.objects.create(name="red")
    ann, bob = user("ann", red), user("bob")
    start = timezone.now() - timedelta(hours=1)
    stored = [
        store(
            cloudevent(
                bob if i % 2 == 0 else red,
                id=str(i),
                time=start + timedelta(minutes=i),
            ),
            source,
        )
        for i in range(10)
    ]
    return ann, bob, red, stored


def ids(page) -> list[str]:
    return [event.event_id for event in page]


def test_pages_newest_first_in_three_queries(stream, feed, source):
    ann, bob, red, _ = stream
    subscribe(feed, source, red, sub_entity_type=ann, only_following=False)
    entity_events(feed, ann)  # content types cached

    with CaptureQueriesContext(connection) as captured:
        first = entity_events(feed, ann, limit=4)
    assert len(captured) <= 3
    second = entity_events(feed, ann, limit=4, cursor=first.cursor)
    last = entity_events(feed, ann, limit=4, cursor=second.cursor)

    assert ids(first) == ["9", "8", "7", "6"]
    assert ids(second) == ["5", "4", "3", "2"]
    assert ids(last) == ["1", "0"] and last.cursor is None
    assert [a.entity_id for a in first.events[0].actors.all()] == [str(red.pk)]


def test_only_following_and_unsubscriptions(stream, feed, source):
    ann, bob, red, _ = stream
    subscribe(feed, source, red, sub_entity_type=ann, only_following=True)
    subscribe(feed, source, bob, only_following=True)

    assert ids(entity_events(feed, ann)) == ["9", "7", "5", "3", "1"]  # by red
    assert ids(entity_events(feed, bob)) == ["8", "6", "4", "2", "0"]  # by bob
    unsubscribe(feed, source, ann)
    assert ids(entity_events(feed, ann)) == []


def test_expired_events_are_left_out_unless_asked_for(stream, feed, source):
    ann, _, red, stored = stream
    subscribe(feed, source, ann, only_following=False)
    stored[9].expires_at = timezone.now() - timedelta(seconds=1)
    stored[9].save()

    assert "9" not in ids(entity_events(feed, ann))
    assert ids(entity_events(feed, ann, include_expired=True))[0] == "9"
    assert "9" not in [e.event_id for e in feed.events()]
    assert [e.event_id for e in feed.events(include_expired=True)][0] == "9"
    assert "9" not in [e.event_id for e, _ in feed.events_targets()]


def test_mark_seen_is_per_person(stream, feed, source):
    ann, bob, red, stored = stream
    subscribe(feed, source, ann, only_following=False)
    subscribe(feed, source, bob, only_following=False)

    mark_seen(ann, stored[8:])
    mark_seen(ann, stored[8:])  # idempotent
    page = entity_events(feed, ann, limit=3)

    assert [e.is_seen for e in page] == [True, True, False]
    assert ids(entity_events(feed, ann, seen=False, limit=2)) == ["7", "6"]
    assert ids(entity_events(feed, ann, seen=True)) == ["9", "8"]
    assert not any(e.is_seen for e in entity_events(feed, bob))  # bob saw nothing
    entity_events(feed, bob, limit=2, mark_seen=True)
    assert ids(entity_events(feed, bob, seen=True)) == ["9", "8"]
    assert EventSeen.objects.filter(person=f"user:{ann.pk}").count() == 2
    pairs = feed.events_targets(seen=False)
    assert [p.key for p in dict(pairs)[stored[9]]] == []  # both saw it
    both = [f"user:{ann.pk}", f"user:{bob.pk}"]
    assert [p.key for p in dict(pairs)[stored[7]]] == both


def test_time_actor_filters_and_bad_input(stream, feed, source):
    ann, bob, red, stored = stream
    subscribe(feed, source, ann, only_following=False)
    page = entity_events(
        feed,
        ann,
        start_time=stored[2].time,
        end_time=stored[6].time,
        actor=bob,
    )
    assert ids(page) == ["6", "4", "2"]
    with pytest.raises(BadCursor):
        entity_events(feed, ann, cursor="bm9wZQ")
    with pytest.raises(ValueError):
        entity_events(feed, ann, limit=0)


@pytest.mark.django_db(transaction=True)
def test_the_json_view(stream, feed, source):
    ann, bob, red, stored = stream
    subscribe(feed, source, red, sub_entity_type=ann, only_following=False)
    url = "/cloudevents/feed/feed/"
    client = Client(enforce_csrf_checks=True)

    assert client.get(url).status_code == 401
    client.force_login(ann)
    response = client.get(url, {"limit": 3})
    assert response.status_code == 200
    body = response.json()
    assert [e["event_id"] for e in body["events"]] == ["9", "8", "7"]
    assert body["events"][0]["actors"] == [f"auth.group/{red.pk}"]
    assert body["events"][0]["seen"] is False
    following = client.get(url, {"limit": 3, "cursor": body["cursor"]}).json()
    assert [e["event_id"] for e in following["events"]] == ["6", "5", "4"]
    assert EventSeen.objects.count() == 0  # GET changes nothing

    assert client.get(url, {"cursor": "!!"}).status_code == 400
    assert client.get(url, {"limit": "x"}).status_code == 400
    assert client.get(url, {"seen": "maybe"}).status_code == 400
    assert client.get("/cloudevents/feed/nope/").status_code == 404
    assert client.get(url, {"entity": f"auth.user/{bob.pk}"}).status_code == 403
    assert client.get(url, {"entity": f"auth.user/{ann.pk}"}).status_code == 200

    seen_url = url + "seen/"
    ids_ = [stored[9].pk, stored[8].pk]
    assert client.post(seen_url, {"events": ids_}).status_code == 403  # no CSRF
    client.get(url)  # the CSRF cookie
    token = client.cookies["csrftoken"].value if "csrftoken" in client.cookies else None
    if token is None:  # the view sets no cookie: take Django's own
        from django.middleware.csrf import _get_new_csrf_string

        token = _get_new_csrf_string()
        client.cookies["csrftoken"] = token
    headers = {"X-CSRFToken": token}
    response = client.post(
        seen_url, json.dumps({"events": ids_}), "application/json", headers=headers
    )
    assert response.status_code == 200, response.content
    assert response.json() == {"marked": 2}
    assert (
        client.post(
            seen_url, json.dumps({"events": ["x"]}), "application/json", headers=headers
        ).status_code
        == 400
    )
    seen = client.get(url, {"seen": "true"}).json()
    assert [e["event_id"] for e in seen["events"]] == ["9", "8"]
    # An event of a source ann is not subscribed to: not hers to mark.
    other = Source.objects.create(
        name="other", display_name="Other", group=source.group, event_type="x.other"
    )
    elsewhere = Event.objects.create(source=other, event_source="/x", event_id="o")
    response = client.post(
        seen_url,
        json.dumps({"events": [elsewhere.pk]}),
        "application/json",
        headers=headers,
    )
    assert response.json() == {"marked": 0}
    assert not EventSeen.objects.filter(event=elsewhere).exists()
    client.logout()
    assert client.post(seen_url, {"events": ids_}).status_code in (401, 403)
