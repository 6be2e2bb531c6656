"""What changed, on the signal path: ``changed_fields`` and ``previous_values``.

Opt-in per model; the instance keeps the values it was loaded (or last saved)
with. Runs on SQLite and PostgreSQL. Trigger capture's own are in test_capture.py.
"""

from __future__ import annotations

import datetime

import pytest
from django.db.models import F
from django.db.models.signals import post_init

from django_cloudevents_bridge import checks
from django_cloudevents_bridge.emit import changes
from tests.testapp.models import Choice, Profile, Question

pytestmark = pytest.mark.django_db(transaction=True)

NOW = datetime.datetime(2026, 11, 1, tzinfo=datetime.UTC)


@pytest.fixture
def tracked(settings):
    """Choice and Profile keep their loaded values (Choice with previous values)."""
    settings.CLOUDEVENTS_MODELS = {
        **settings.CLOUDEVENTS_MODELS,
        "testapp.Choice": {"changed_fields": True, "previous_values": True},
        "testapp.Profile": {"exclude": ["nickname"], "changed_fields": True},
    }
    changes.connect_models()
    yield
    for model in (Choice, Profile):
        uid = f"{changes.LOADED}:{model._meta.label}"
        assert post_init.disconnect(sender=model, dispatch_uid=uid)


def choice(**values) -> Choice:
    question = Question.objects.create(question_text="q", pub_date=NOW)
    return Choice.objects.create(question=question, choice_text="a", **values)


def last_data(sent_events) -> dict:
    return sent_events[-1].get_data()


def test_a_create_says_nothing_changed_an_update_says_what(tracked, sent_events):
    row = choice()
    created = last_data(sent_events)
    assert "changed_fields" not in created and "previous_values" not in created

    loaded = Choice.objects.get(pk=row.pk)
    loaded.choice_text = "b"
    loaded.save()
    data = last_data(sent_events)
    assert data["changed_fields"] == ["choice_text"]
    assert data["previous_values"] == {"choice_text": "a"}
    assert data["data"]["choice_text"] == "b"

    loaded.votes = 3  # a second save of the same instance: against the first
    loaded.save()
    data = last_data(sent_events)
    assert data["changed_fields"] == ["votes"]
    assert data["previous_values"] == {"votes": 0}

    loaded.save()
    assert last_data(sent_events)["changed_fields"] == []
    assert last_data(sent_events)["previous_values"] == {}


def test_values_are_compared_as_stored(tracked, sent_events):
    row = choice(votes=2)
    loaded = Choice.objects.get(pk=row.pk)
    loaded.votes = "2"  # stored as 2: no change
    loaded.choice_text = "a"
    loaded.save()
    assert last_data(sent_events)["changed_fields"] == []
    loaded.votes = F("votes") + 1  # read back from the row: 3
    loaded.save()
    data = last_data(sent_events)
    assert data["changed_fields"] == ["votes"]
    assert data["previous_values"] == {"votes": 2}
    assert data["data"]["votes"] == 3


def test_deferred_excluded_and_secret_fields_are_never_named(tracked, sent_events):
    profile = Profile.objects.create(username="u", password="p1", nickname="n")
    loaded = Profile.objects.get(pk=profile.pk)
    loaded.password = "p2"
    loaded.nickname = "m"
    loaded.save()
    data = last_data(sent_events)
    assert data["changed_fields"] == []
    assert "previous_values" not in data  # not asked for

    partial = Profile.objects.only("username").get(pk=profile.pk)
    partial.username = "v"
    partial.save()
    assert last_data(sent_events)["changed_fields"] == ["username"]


def test_an_untracked_model_keeps_nothing(sent_events):
    row = choice()
    loaded = Choice.objects.get(pk=row.pk)
    assert changes.LOADED not in loaded.__dict__
    loaded.choice_text = "b"
    loaded.save()
    assert set(last_data(sent_events)) == {"data", "signal_kwargs", "db_table"}


def test_the_options_are_checked(settings):
    settings.CLOUDEVENTS_MODELS = {
        "testapp.Choice": {"changed_fields": "yes", "previous_values": 1}
    }
    messages = [m.msg for m in checks.check_models()]
    assert any("changed_fields must be True or False" in m for m in messages)
    assert any("previous_values must be True or False" in m for m in messages)
