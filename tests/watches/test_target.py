"""Watches as a dispatch target: received (inline or deferred), run on the worker."""

from __future__ import annotations

from collections import Counter

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from django_cloudevents_bridge import EventUnion, events, work
from django_cloudevents_bridge.bindings.http import to_http
from django_cloudevents_bridge.models import TargetRun, Watch
from django_cloudevents_bridge.targets import targets_for
from django_cloudevents_bridge.watches import InstanceWatchEvent, keys
from django_cloudevents_bridge.watches.base import unregister
from tests.testapp.models import Article, Question
from tests.watches.watchers import EDITED, EditInLanguage, EditQuestion

pytestmark = pytest.mark.django_db(transaction=True)


def receive(event: events.CloudEvent) -> int:
    """POST the event to the receiver in binary mode; the status code."""
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
def question():
    return Question.objects.create(question_text="q", pub_date=timezone.now())


@pytest.fixture
def watchers(question):
    model = get_user_model()
    ann = model.objects.create_user("ann", "ann@example.org", "x")
    bob = model.objects.create_user("bob", "Bob@Example.org", "x")
    EditInLanguage.notify(ann, language="de")
    EditQuestion.notify(ann, question)
    EditQuestion.notify(bob, question)
    anonymous = EditInLanguage.notify("BOB@example.org", language="de")
    Watch.objects.filter(pk=anonymous.pk).update(active=True)
    return ann, bob


def recipients(ledger) -> dict[str, list[str]]:
    return {key: message.to for (_, _, key, channel), (_, message) in ledger.items()}


def test_only_watched_types_get_the_watch_target(question):
    assert [t.name for t in targets_for(events.new(EDITED))] == ["watches"]
    assert all(t.deferred for t in targets_for(events.new(EDITED)))
    assert targets_for(events.new("tests.unwatched")) == []


@pytest.mark.parametrize("mode", ["inline", "deferred"])
def test_a_received_event_notifies_each_watcher_once_on_the_worker(
    mode, settings, ledger, watchers, question
):
    settings.CLOUDEVENTS_RECEIVER = {"MODE": mode, "TASK_BACKEND": False}
    ann, bob = watchers
    event = events.new(
        EDITED,
        source="/wiki",
        subject=keys.subject(question),
        extensions={"language": "de"},
    )

    assert receive(event) == 202
    assert ledger == {}  # never in the request
    assert TargetRun.objects.get().status == TargetRun.Status.PENDING
    assert work.process() == Counter(done=1)

    assert recipients(ledger) == {
        f"user:{ann.pk}": ["ann@example.org"],
        f"user:{bob.pk}": ["Bob@example.org"],  # one message, to the user
    }
    recipient, _ = ledger[("/wiki", event.get_id(), f"user:{bob.pk}", "email")]
    assert [r["class"].rsplit(".", 1)[1] for r in recipient.reasons] == [
        "EditQuestion",
        "EditInLanguage",
    ]

    # A redelivered event and a rerun worker notify nobody again.
    assert receive(event) == 202
    assert work.process() == Counter()
    assert len(ledger) == 2


def test_a_retried_fan_out_records_nobody_twice(settings, ledger, watchers, question):
    settings.CLOUDEVENTS_RECEIVER = {"MODE": "deferred", "TASK_BACKEND": False}
    event = events.new(EDITED, subject=keys.subject(question))
    assert receive(event) == 202
    assert work.process() == Counter(done=1)
    # A task run twice (a crash after the ledger was written, before "done").
    TargetRun.objects.update(
        status=TargetRun.Status.PENDING, next_attempt_at=timezone.now()
    )
    assert work.process() == Counter(done=1)
    assert len(ledger) == 2


def test_a_failing_mails_is_recorded_and_retried(settings, ledger, watchers, question):
    settings.CLOUDEVENTS_RECEIVER = {"MODE": "deferred", "TASK_BACKEND": False}
    calls = []
    original = EditQuestion.mails

    def failing_once(self, users_and_watches):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("template broke")
        return original(self, users_and_watches)

    EditQuestion.mails = failing_once  # type: ignore[method-assign]
    try:
        assert receive(events.new(EDITED, subject=keys.subject(question))) == 202
        assert work.process() == Counter(failed=1)
        assert ledger == {}
        TargetRun.objects.update(next_attempt_at=timezone.now())
        assert work.process() == Counter(done=1)
    finally:
        EditQuestion.mails = original  # type: ignore[method-assign]
    assert len(ledger) == 2


def test_fire_emits_what_a_receiver_matches(sent_events, ledger, watchers, question):
    """With a task backend (here the immediate one), the worker's task runs it."""
    ann, bob = watchers
    built = EditInLanguage(data={"title": "q"}, language="de").fire()
    # emitted once the (auto)commit is done
    [work_event] = [e for e in sent_events if e.get_type() == EDITED]
    assert work_event.get_id() == built.get_id()
    assert work_event.get_type() == EDITED
    assert work_event.get_extension("language") == "de"
    assert receive(work_event) == 202
    work.process()
    # Bob's own watch is on the question, which this event is not about: his
    # anonymous watch matched alone, so the mail goes to that address.
    assert set(recipients(ledger)) == {f"user:{ann.pk}", "email:bob@example.org"}


def test_event_union_merges_one_type_into_one_event(question):
    union = EventUnion(
        EditQuestion(question, data={"n": 1}), EditInLanguage(language="de")
    )
    [event] = union.to_cloudevents()
    assert event.get_type() == EDITED
    assert event.get_subject() == keys.subject(question)
    assert event.get_extension("language") == "de"
    assert event.get_data() == {"n": 1}


def test_model_events_match_instance_watches_on_uuid_keys(
    sent_events, ledger, settings
):
    class ArticleSaved(InstanceWatchEvent):
        event_type = "django.orm.post_save"
        content_type = Article

    settings.CLOUDEVENTS_RECEIVER = {"MODE": "inline", "TASK_BACKEND": False}
    try:
        ann = get_user_model().objects.create_user("ann", "ann@example.org", "x")
        article = Article.objects.create(title="one")
        other = Article.objects.create(title="two")
        ArticleSaved.notify(ann, article)
        sent_events.clear()
        article.title = "changed"
        article.save()
        other.save()
        assert [e.get_subject() for e in sent_events] == [
            keys.subject(article),
            keys.subject(other),
        ]
        for event in sent_events:
            assert receive(event) == 202
        assert work.process() == Counter(done=2)
    finally:
        unregister(ArticleSaved)
    assert list(recipients(ledger)) == [f"user:{ann.pk}"]


def test_an_event_about_a_child_reaches_the_watchers_of_its_parent(
    sent_events, ledger, settings, question
):
    """tidings' container pattern: a choice saved, its question's watchers told
    (the question's key is the model field ``question`` of the choice's data)."""

    class QuestionActivity(InstanceWatchEvent):
        event_type = "django.orm.post_save"
        content_type = Question

    settings.CLOUDEVENTS_RECEIVER = {"MODE": "inline", "TASK_BACKEND": False}
    try:
        ann = get_user_model().objects.create_user("ann", "ann@example.org", "x")
        QuestionActivity.notify(ann, question)
        other = Question.objects.create(question_text="other", pub_date=timezone.now())
        sent_events.clear()
        question.choice_set.create(choice_text="yes")
        other.choice_set.create(choice_text="no")
        [mine, theirs] = sent_events
        assert mine.get_data()["data"]["question"] == question.pk
        assert receive(mine) == 202 and receive(theirs) == 202
        assert work.process() == Counter(done=2)
    finally:
        unregister(QuestionActivity)
    [(_, event_id, key, _)] = ledger
    assert (event_id, key) == (mine.get_id(), f"user:{ann.pk}")
