"""serialized_context(): JSON for custom front ends, never a secret."""

from __future__ import annotations

import json

import pytest
from django.utils import timezone

from django_cloudevents_bridge.subscriptions.rendering import serialized_context
from tests.testapp.models import Article, Choice, Profile, Question

from .conftest import event, renderer

pytestmark = pytest.mark.django_db


def test_instances_become_their_fields_and_secrets_are_left_out(medium, style, voted):
    profile = Profile.objects.create(
        username="ann",
        password="pbkdf2_sha256$hash",
        api_token="tok-123",
        client_secret="shh",
        nickname="Annie",
        ssn="123-45-6789",
    )
    question = Question.objects.create(question_text="Tea?", pub_date=timezone.now())
    choice = Choice.objects.create(question=question, choice_text="yes")
    article = Article.objects.create(title="On tea")
    renderer(
        style,
        source=voted,
        context_hints={
            "who": {"app_name": "testapp", "model_name": "Profile"},
            "vote.choice": {"app_name": "testapp", "model_name": "Choice"},
            "articles": {"app_name": "testapp", "model_name": "Article"},
        },
    )
    medium.additional_context = {"site": "example.com"}
    one = event(
        voted,
        {
            "who": profile.pk,
            "vote": {"choice": choice.pk, "access_token": "abc"},
            "articles": [str(article.pk), "not-a-uuid"],
            "password": "in the data",
        },
        subject="poll/1",
    )
    found = serialized_context(medium, [one])[one]
    text = json.dumps(found)  # JSON-safe as it is
    for secret in ("pbkdf2", "tok-123", "shh", "123-45-6789", "abc", "in the data"):
        assert secret not in text
    assert found["who"] == {"id": profile.pk, "username": "ann", "nickname": "Annie"}
    assert found["vote"] == {
        "choice": {
            "id": choice.pk,
            "question": question.pk,
            "choice_text": "yes",
            "votes": 0,
        }
    }
    assert found["articles"] == [
        {"id": str(article.pk), "title": "On tea"},
        "not-a-uuid",
    ]
    assert found["site"] == "example.com"
    assert found["event"] == {
        "source": "/tests",
        "id": one.event_id,
        "subject": "poll/1",
        "time": found["event"]["time"],
        "expires_at": None,
    }
    assert found["event"]["time"].endswith("Z")
    assert found["source"] == {"name": "voted", "display_name": "Vote cast"}


def test_without_a_renderer_the_data_as_it_is(medium, closed):
    one = event(closed, {"n": 1, "at": "2024-01-01"})
    found = serialized_context(medium, [one])[one]
    assert {k: found[k] for k in ("n", "at")} == {"n": 1, "at": "2024-01-01"}
