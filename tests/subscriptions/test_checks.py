"""System checks for subscriptions: E014-E016, W010, W013."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from django_cloudevents_bridge.checks import (
    check_subscription_resolvers,
    check_subscriptions,
)
from django_cloudevents_bridge.subscriptions import Medium, resolvers, subscribe
from tests.testapp.models import Member, Team

pytestmark = pytest.mark.django_db


def ids(errors) -> list[str]:
    return sorted(error.id for error in errors)


def test_a_sound_setup_passes(source, email, feed):
    subscribe(email, source, Group.objects.create(name="g"), sub_entity_type=Group)
    assert ids(check_subscriptions(databases=["default"])) == [
        "cloudevents_bridge.W010"  # groups are no people
    ]
    assert check_subscription_resolvers() == []
    assert check_subscriptions() == []  # without --database: no table read


def test_misconfigurations_are_reported(source, email, registry):
    Medium.objects.create(name="sms", display_name="SMS", channel="sms")
    source.filter = {"nope": {}}
    source.save()
    subscribe(email, source, Team.objects.create(slug="core"), sub_entity_type=Member)
    resolvers.register_people(Member, email="no_such_field")

    assert ids(check_subscriptions(databases=["default"])) == [
        "cloudevents_bridge.E014",
        "cloudevents_bridge.E015",
    ]
    assert ids(check_subscription_resolvers()) == ["cloudevents_bridge.E016"]


def test_two_mediums_on_one_channel_are_reported_once_each_after_the_first(email):
    daily = Medium.objects.create(name="daily", display_name="D", channel="email")
    Medium.objects.create(name="feed2", display_name="F", channel="feed")

    [warning] = check_subscriptions(databases=["default"])

    assert warning.id == "cloudevents_bridge.W013"
    assert warning.obj == f"Medium {daily.name}"
    assert "'email'" in warning.msg and "rendered for 'email'" in warning.msg
