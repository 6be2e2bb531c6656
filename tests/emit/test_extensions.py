"""Attributes brokers can filter on: partitionkey, and model fields copied into
extension attributes (CLOUDEVENTS_MODELS "extensions")."""

from __future__ import annotations

import datetime

import pytest

from django_cloudevents_bridge import checks, events
from django_cloudevents_bridge.emit.sources import extension_value
from tests.testapp.models import Choice, Question

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def question() -> Question:
    return Question.objects.create(
        question_text="q", pub_date=datetime.datetime(2026, 1, 2, tzinfo=datetime.UTC)
    )


def test_model_events_carry_their_subject_as_partition_key(sent_events, question):
    sent_events.clear()
    choice = Choice.objects.create(question=question, choice_text="yes")
    [event] = sent_events
    assert event.get_extension("partitionkey") == f"DCE:testapp.choice/{choice.pk}"


def test_an_explicit_partition_key_wins_and_no_subject_means_none() -> None:
    event = events.new(
        "t", source="/s", subject="a/1", extensions={"partitionkey": "k"}
    )
    assert event.get_extension("partitionkey") == "k"
    assert events.new("t", source="/s").get_extension("partitionkey") is None


def test_declared_fields_become_extension_attributes(settings, sent_events, question):
    settings.CLOUDEVENTS_MODELS = {
        "testapp.Choice": {
            "signals": ["post_save"],
            "extensions": {"votes": "votes", "text": "choice_text", "q": "question"},
        }
    }
    sent_events.clear()
    Choice.objects.create(question=question, choice_text="yes", votes=3)
    [event] = sent_events
    assert event.get_extension("votes") == 3
    assert event.get_extension("text") == "yes"
    assert event.get_extension("q") == question.pk
    assert event.get_data()["data"]["votes"] == 3  # still in the data too


def test_a_list_names_fields_that_are_attribute_names(settings, sent_events, question):
    settings.CLOUDEVENTS_MODELS = {
        "testapp.Choice": {"signals": ["post_save"], "extensions": ["votes"]}
    }
    sent_events.clear()
    Choice.objects.create(question=question, choice_text="yes")
    assert sent_events[0].get_extension("votes") == 0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("x", "x"),
        (True, True),
        (5, 5),
        (2**31, "2147483648"),  # beyond an attribute's 32-bit integer
        (1.5, "1.5"),
        ({"b": 1, "a": [1]}, '{"a":[1],"b":1}'),
    ],
)
def test_extension_values(value, expected) -> None:
    assert extension_value(value) == expected


@pytest.mark.parametrize(
    ("declared", "problem"),
    [
        ("votes", "a list of field names"),
        (["choice_text"], "'choice_text' is not an attribute name"),
        ({"Votes": "votes"}, "'Votes' is not an attribute name"),
        ({"subject": "votes"}, "'subject' is an attribute the bridge sets"),
        ({"partitionkey": "votes"}, "'partitionkey' is an attribute the bridge sets"),
        ({"v": "nope"}, "no field 'nope'"),
        ({"averyveryverylongname1": "votes"}, "20 characters at most"),
    ],
)
def test_bad_extensions_are_check_errors(settings, declared, problem) -> None:
    settings.CLOUDEVENTS_MODELS = {"testapp.Choice": {"extensions": declared}}
    messages = [error.msg for error in checks.check_models()]
    assert any(problem in message for message in messages), messages


def test_an_excluded_field_cannot_be_an_extension(settings) -> None:
    settings.CLOUDEVENTS_MODELS = {
        "testapp.Choice": {"exclude": ["votes"], "extensions": ["votes"]}
    }
    messages = [error.msg for error in checks.check_models()]
    assert any("'votes' is not sent" in message for message in messages)
