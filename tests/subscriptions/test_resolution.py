"""Who an event reaches: one statement, each person once, whatever the routes."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext

from django_cloudevents_bridge.subscriptions import (
    Subscription,
    queries,
    resolvers,
    subscribe,
    unsubscribe,
)
from django_cloudevents_bridge.targets.subscriptions import store
from tests.testapp.models import Member, Team

from .conftest import cloudevent, user

pytestmark = pytest.mark.django_db


def reached(event, *mediums) -> dict[str, list]:
    """{recipient key: reasons' subscription ids} of the stored event."""
    found = {}
    for _, _, person in queries.resolve([event.pk], [m.pk for m in mediums]):
        assert person.key not in found, f"{person.key} twice"
        found[person.key] = sorted(r["id"] for r in person.reasons)
    return found


def test_group_members_and_individuals_are_reached_once(source, email):
    red, blue = Group.objects.create(name="red"), Group.objects.create(name="blue")
    ann, bob, cy = user("ann", red, blue), user("bob", red), user("cy")
    both = [
        subscribe(email, source, g, sub_entity_type=ann, only_following=False)
        for g in (red, blue)
    ]
    own = subscribe(email, source, ann, only_following=False)
    subscribe(email, source, cy, only_following=True)  # cy acts in no event

    event = store(cloudevent(bob), source)

    assert reached(event, email) == {
        f"user:{ann.pk}": sorted([both[0].pk, both[1].pk, own.pk]),
        f"user:{bob.pk}": [both[0].pk],
    }


def test_an_unsubscribed_member_of_a_subscribed_group_is_left_out(source, email):
    red = Group.objects.create(name="red")
    ann, bob = user("ann", red), user("bob", red)
    subscribe(email, source, red, sub_entity_type=ann, only_following=False)
    unsubscribe(email, source, bob)
    unsubscribe(email, source, bob)  # idempotent

    event = store(cloudevent(), source)

    assert list(reached(event, email)) == [f"user:{ann.pk}"]


def test_only_following_with_group_actors(source, email):
    red, blue = Group.objects.create(name="red"), Group.objects.create(name="blue")
    ann, bob, cy = user("ann", red), user("bob", blue), user("cy", red, blue)
    everyone = Group.objects.create(name="everyone")
    for person in (ann, bob, cy):
        person.groups.add(everyone)
    subscribe(email, source, everyone, sub_entity_type=ann, only_following=True)

    # A member follows its groups: an event by "red" reaches red's members.
    assert set(reached(store(cloudevent(red, id="1"), source), email)) == {
        f"user:{ann.pk}",
        f"user:{cy.pk}",
    }
    # And itself: an event by bob reaches bob.
    assert set(reached(store(cloudevent(bob, id="2"), source), email)) == {
        f"user:{bob.pk}"
    }
    # No actor: nobody follows it.
    assert reached(store(cloudevent(id="3"), source), email) == {}


def test_inactive_users_and_users_without_subscription_are_not_reached(
    source, email, feed
):
    red = Group.objects.create(name="red")
    ann, bob = user("ann", red), user("bob", red)
    bob.is_active = False
    bob.save()
    subscribe(feed, source, red, sub_entity_type=ann, only_following=False)
    subscribe(email, source, red, sub_entity_type=ann, only_following=False)

    event = store(cloudevent(), source)

    assert list(reached(event, email)) == [f"user:{ann.pk}"]
    both = list(queries.resolve([event.pk], [email.pk, feed.pk]))
    assert sorted(m for _, m, _ in both) == sorted([email.pk, feed.pk])


def register_team_membership() -> None:
    """Members belong to teams (the through table of ``Member.teams``)."""
    resolvers.register_membership(
        Team,
        Member,
        Member.teams.through.objects.all(),
        group_field="team_id",
        member_field="member_id",
    )


@pytest.fixture
def teams(registry):
    """A UUID-keyed member model in string-keyed teams, with its own resolver."""
    register_team_membership()
    resolvers.register_follows(
        Member,
        Team,
        Member.follows.through.objects.all(),
        follower_field="member_id",
        followed_field="team_id",
    )
    resolvers.register_people(Member, user="user_id", email="email")


def test_uuid_members_of_string_keyed_teams(source, email, teams):
    core, docs = Team.objects.create(slug="core"), Team.objects.create(slug="docs")
    ann = user("ann")
    linked = Member.objects.create(user_id=ann.pk, email="other@example.org")
    guest = Member.objects.create(email="Guest@Example.org ")
    fan = Member.objects.create(email="fan@example.org")
    linked.teams.add(core)
    guest.teams.add(core, docs)
    fan.follows.add(docs)
    plain = subscribe(email, source, core, sub_entity_type=Member, only_following=False)
    following = subscribe(email, source, fan, only_following=True)

    # The member with a user is that user; the guest is an address.
    event = store(cloudevent(docs, id="1"), source)
    people = {p.key: p for _, _, p in queries.resolve([event.pk], [email.pk])}
    assert set(people) == {
        f"user:{ann.pk}",
        "email:guest@example.org",
        "email:fan@example.org",  # follows "docs", an actor
    }
    assert people["email:guest@example.org"].reasons == (
        {
            "kind": "subscription",
            "id": plain.pk,
            "entity": "testapp.member",
            "entity_id": resolvers.entity_id(Member, guest.pk),
        },
    )
    assert people["email:fan@example.org"].reasons[0]["id"] == following.pk
    # An event of another team: the fan does not follow it.
    event = store(cloudevent(core, id="2"), source)
    assert "email:fan@example.org" not in {
        p.key for _, _, p in queries.resolve([event.pk], [email.pk])
    }


def test_a_user_wins_over_a_member_with_the_same_address(source, email, teams):
    core = Team.objects.create(slug="core")
    ann = user("ann")
    for member in (
        Member.objects.create(user_id=ann.pk),
        Member.objects.create(email="ANN@example.org"),
    ):
        member.teams.add(core)
    subscribe(email, source, core, sub_entity_type=Member, only_following=False)
    subscribe(email, source, ann, only_following=False)

    event = store(cloudevent(), source)

    people = [p for _, _, p in queries.resolve([event.pk], [email.pk])]
    assert [p.key for p in people] == [f"user:{ann.pk}"]
    # The member row naming ann has no address: her own is the one used.
    assert people[0].email == "ann@example.org"


@pytest.mark.parametrize("count", [1, 100, 10_000])
def test_one_statement_whatever_the_number_of_subscriptions(count, source, email):
    groups = Group.objects.bulk_create(Group(name=f"g{i}") for i in range(count))
    ann = user("ann", groups[0])
    kind = resolvers.entity_of(ann)[0]
    Subscription.objects.bulk_create(
        Subscription(
            medium=email,
            source=source,
            entity_type=resolvers.entity_of(group)[0],
            entity_id=str(group.pk),
            sub_entity_type=kind,
            only_following=i % 2 == 0,
        )
        for i, group in enumerate(groups)
    )
    event = store(cloudevent(groups[0]), source)
    queries.statement([event.pk], [email.pk], "default")  # content types cached

    with CaptureQueriesContext(connection) as captured:
        people = list(queries.resolve([event.pk], [email.pk]))

    assert len(captured) == 1
    assert [p.key for _, _, p in people] == [f"user:{ann.pk}"]


def test_events_targets_lists_each_person_once_per_event(source, email):
    red, blue = Group.objects.create(name="red"), Group.objects.create(name="blue")
    ann, bob = user("ann", red, blue), user("bob", blue)
    for group in (red, blue):
        subscribe(email, source, group, sub_entity_type=ann, only_following=False)
    first = store(cloudevent(id="1"), source)
    second = store(cloudevent(id="2"), source)

    pairs = email.events_targets()

    assert [event for event, _ in pairs] == [second, first]
    for _, people in pairs:
        assert sorted(p.key for p in people) == [f"user:{ann.pk}", f"user:{bob.pk}"]


def test_a_relation_registered_later_is_used_by_the_next_resolution(
    source, email, registry
):
    """The statement is prebuilt per registry version: a registration rebuilds it."""
    core = Team.objects.create(slug="core")
    member = Member.objects.create(email="late@example.org")
    member.teams.add(core)
    event = store(cloudevent(), source)
    assert list(queries.resolve([event.pk], [email.pk])) == []  # built, cached
    resolvers.register_people(Member, user="user_id", email="email")
    register_team_membership()
    subscribe(email, source, core, sub_entity_type=Member, only_following=False)
    people = [p.key for _, _, p in queries.resolve([event.pk], [email.pk])]
    assert people == ["email:late@example.org"]
    # The same sizes again: the prebuilt statement, new ids.
    other = store(cloudevent(id="c-2"), source)
    assert [p.key for _, _, p in queries.resolve([other.pk], [email.pk])] == people


def _five_members(source, email) -> tuple[list, object]:
    red = Group.objects.create(name="red")
    members = [user(f"u{i}", red) for i in range(5)]
    subscribe(email, source, red, sub_entity_type=members[0], only_following=False)
    return members, store(cloudevent(), source)


def test_many_people_are_read_in_chunks_with_other_statements_between(
    monkeypatch, source, email
):
    """More people than a fetch holds: every one, once, while the caller runs
    its own statements between them (as the target writes the ledger)."""
    monkeypatch.setattr(queries, "CHUNK", 2)
    members, event = _five_members(source, email)

    seen, counts = [], []
    with CaptureQueriesContext(connection) as captured:
        for _, _, person in queries.resolve([event.pk], [email.pk]):
            seen.append(person.key)
            counts.append(Group.objects.filter(name="red").count())

    assert sorted(seen) == sorted(f"user:{m.pk}" for m in members)
    assert counts == [1] * 5
    if connection.vendor == "postgresql":  # declared with its first fetch
        sql = [q["sql"] for q in captured if "dce_targets_" in q["sql"]]
        assert sql[0].startswith("DECLARE") and "FETCH FORWARD 2" in sql[0]
        # Two more fetches (the last one short), then CLOSE.
        assert [q.split()[0] for q in sql] == ["DECLARE", "FETCH", "FETCH", "CLOSE"]


def test_a_resolution_left_early_leaves_the_transaction_usable(source, email):
    _, event = _five_members(source, email)

    for _ in queries.resolve([event.pk], [email.pk]):
        break  # the rest is never read
    again = list(queries.resolve([event.pk], [email.pk]))

    assert len(again) == 5


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_the_rows_come_from_a_chunked_cursor(
    monkeypatch, source, email
):
    """In autocommit no cursor can be declared without a transaction: Django's
    chunked cursor reads the same people."""
    monkeypatch.setattr(queries, "CHUNK", 2)
    members, event = _five_members(source, email)

    with CaptureQueriesContext(connection) as captured:
        people = [p.key for _, _, p in queries.resolve([event.pk], [email.pk])]

    assert sorted(people) == sorted(f"user:{m.pk}" for m in members)
    assert not any("dce_targets_" in q["sql"] for q in captured)
