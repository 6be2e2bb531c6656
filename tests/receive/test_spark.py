"""Model event sources (django-spark's API): save -> events -> each key once."""

from __future__ import annotations

import datetime
import types
from collections.abc import Iterator

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.db.models.signals import post_save
from django.test import Client

from django_cloudevents_bridge import events, register_group_handler
from django_cloudevents_bridge import register_model_event_source as register
from django_cloudevents_bridge.bindings import http
from django_cloudevents_bridge.models import ReceivedEvent
from django_cloudevents_bridge.targets import groups
from django_cloudevents_bridge.targets.groups import unregister_group_handler
from tests.testapp.models import Question, Tag

pytestmark = pytest.mark.django_db

PUB_DATE = datetime.datetime(2026, 11, 1, 9, 30, tzinfo=datetime.UTC)


def tag_events(tag: Tag) -> Iterator[dict]:
    """A source as in django-spark's README: events depend on the state."""
    yield {"group": "tag.created", "key": f"tag.created:{tag.pk}", "context": {}}
    if tag.name.startswith("hot"):
        yield {
            "group": "tag.hot",
            "key": f"tag.hot:{tag.pk}",
            "context": {"name": tag.name, "at": PUB_DATE},
        }


def question_events(question: Question) -> Iterator[types.SimpleNamespace]:
    """django-spark's own Event objects: extra attributes are the context."""
    yield types.SimpleNamespace(
        group="question.asked", key=f"question.asked:{question.pk}", question=question
    )


@pytest.fixture(autouse=True)
def sources() -> Iterator[dict]:
    """Registrations made by a test are undone after it."""
    before = {model: list(found) for model, found in groups.MODEL_SOURCES.items()}
    yield groups.MODEL_SOURCES
    for model in set(groups.MODEL_SOURCES) - set(before):
        post_save.disconnect(sender=model, dispatch_uid=groups.DISPATCH_UID)
    groups.MODEL_SOURCES.clear()
    groups.MODEL_SOURCES.update(before)


@pytest.fixture
def handled() -> Iterator[list[events.CloudEvent]]:
    """Events the group handler for ``tag.*`` ran for, in order."""
    got: list[events.CloudEvent] = []

    def on_tag(event: events.CloudEvent) -> None:
        got.append(event)

    register_group_handler(on_tag, group=r"^tag\.")
    yield got
    unregister_group_handler(on_tag)


@pytest.fixture
def emitted(sent_events):
    """The events the (locmem) handler was given."""
    return sent_events


@pytest.fixture
def commit(django_capture_on_commit_callbacks):
    """``with commit():`` runs the on-commit work (the emit) at the block's end."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


def spark_events(sent: list[events.CloudEvent]) -> list[events.CloudEvent]:
    return [e for e in sent if e.get_extension(groups.KEY_EXTENSION) is not None]


def test_saving_emits_the_sources_events(emitted, commit):
    register(sender=Tag, source=tag_events)

    with commit():
        Tag.objects.create(name="hot-news")

    created, hot = spark_events(emitted)
    assert created.get_type() == "tag.created"
    assert created.get_id() == groups.event_id("tag.created:hot-news")
    assert created.get_source() == "/tests"
    assert created.get_subject() == "DCE:testapp.tag/hot-news"
    assert created.get_extension("sparkkey") == "tag.created:hot-news"
    assert created.get_data() == {}
    assert hot.get_type() == "tag.hot"
    assert hot.get_data() == {"name": "hot-news", "at": "2026-11-01T09:30:00Z"}


def test_ids_are_derived_from_the_key_alone():
    assert groups.event_id("k") == groups.event_id("k")
    assert groups.event_id("k") != groups.event_id("k2")
    assert groups.event_id(5) == groups.event_id("5")
    # A fixed namespace: stored ids stay valid across releases.
    assert groups.event_id("k") == "349c1c49-7f3c-5043-8b9b-c04abcb0108c"


def test_every_save_emits_the_same_ids(emitted, commit):
    register(sender=Tag, source=tag_events)

    with commit():
        tag = Tag.objects.create(name="hot-news")
        tag.save()

    ids = [e.get_id() for e in spark_events(emitted)]
    assert ids[:2] == ids[2:]
    assert len(set(ids)) == 2


def test_registering_twice_emits_once(emitted, commit):
    register(sender=Tag, source=tag_events)
    register(sender=Tag, source=tag_events)

    with commit():
        Tag.objects.create(name="cold")

    assert [e.get_type() for e in spark_events(emitted)] == ["tag.created"]


def test_several_sources_and_models(emitted, commit):
    register(sender=Tag, source=tag_events)
    register(sender=Question, source=question_events)

    with commit():
        question = Question.objects.create(question_text="Why?", pub_date=PUB_DATE)
        Tag.objects.create(name="cold")

    asked, created = spark_events(emitted)
    assert asked.get_type() == "question.asked"
    assert asked.get_data() == {"question": question.pk}  # an instance: its pk
    assert created.get_type() == "tag.created"


def test_a_broken_source_never_breaks_save(emitted, commit, caplog):
    def broken(tag: Tag) -> Iterator[dict]:
        yield {"group": "tag.created"}  # no key

    register(sender=Tag, source=broken)

    with commit():
        Tag.objects.create(name="still-saved")

    assert Tag.objects.filter(name="still-saved").exists()
    assert spark_events(emitted) == []
    assert "Could not emit the spark events" in caplog.text


def deliver(event: events.CloudEvent):
    """POST the event to the receiver in binary mode, as a broker would."""
    headers, body = http.to_http(event)
    return Client(enforce_csrf_checks=True).post(
        "/cloudevents/",
        body,
        content_type=headers.pop("Content-Type", None),
        headers=headers,
    )


def test_emitted_events_received_twice_run_the_handler_once(emitted, commit, handled):
    register(sender=Tag, source=tag_events)
    with commit():
        tag = Tag.objects.create(name="hot-news")
        tag.save()
    sent = spark_events(emitted)
    assert len(sent) == 4

    for event in sent:  # what a broker would deliver: each key twice
        assert deliver(event).status_code == 202

    assert [e.get_type() for e in handled] == ["tag.created", "tag.hot"]
    assert ReceivedEvent.objects.get(type="tag.hot").deliveries == 2


def test_sources_events_run_their_handlers_on_the_worker_in_deferred_mode(
    emitted, commit, handled, settings
):
    from collections import Counter

    from django_cloudevents_bridge import work

    settings.CLOUDEVENTS_RECEIVER = {"MODE": "deferred", "TASK_BACKEND": False}
    register(sender=Tag, source=tag_events)
    with commit():
        Tag.objects.create(name="hot-news")
    for event in spark_events(emitted) * 2:  # each delivered twice
        assert deliver(event).status_code == 202
    assert handled == []  # stored only

    assert work.process() == Counter(done=2)
    assert [e.get_type() for e in handled] == ["tag.created", "tag.hot"]
    assert work.process() == Counter()


# In-process use: process_events / only_new_events.


def test_process_events_runs_a_key_once(handled):
    first = groups.process_events([{"group": "tag.x", "key": "k1", "context": 1}])
    again = groups.process_events(
        [
            {"group": "tag.x", "key": "k1", "context": 2},
            {"group": "tag.other", "key": "k1"},  # keys are global, as in spark
        ]
    )

    assert [e.get_data() for e in handled] == [1]
    assert first[0].ran and first[0].ok
    assert [report.ran for report in again] == [[], []]


def test_process_events_takes_cloudevents_and_spark_objects(handled):
    groups.process_events(
        [
            events.new("tag.cloud", source="/elsewhere", id="c-1"),
            types.SimpleNamespace(group="tag.ns", key="n-1", size=3, tags=("a", 1)),
        ]
    )

    cloud, namespace = handled
    assert (cloud.get_source(), cloud.get_id()) == ("/elsewhere", "c-1")
    assert namespace.get_data() == {"size": 3, "tags": ["a", 1]}
    assert namespace.get_id() == groups.event_id("n-1")


def test_only_new_events_filters_keys_already_processed(handled):
    groups.process_events([{"group": "tag.x", "key": "old"}])

    new = list(
        groups.only_new_events(
            [{"group": "tag.x", "key": "old"}, {"group": "tag.x", "key": "new"}]
        )
    )

    assert [e.get_extension("sparkkey") for e in new] == ["new"]


def test_only_new_events_keeps_what_still_owes_work(handled):
    calls = []

    def flaky(event: events.CloudEvent) -> None:
        calls.append(event)
        if len(calls) == 1:
            raise RuntimeError("first time fails")

    register_group_handler(flaky, group=r"^tag\.")
    try:
        [report] = groups.process_events([{"group": "tag.x", "key": "k"}])
        assert report.failed
        owed = list(groups.only_new_events([{"group": "tag.x", "key": "k"}]))
        groups.process_events(owed)
        done = list(groups.only_new_events([{"group": "tag.x", "key": "k"}]))
    finally:
        unregister_group_handler(flaky)

    assert len(owed) == 1  # the failed target still owes work
    assert len(calls) == 2 and len(handled) == 1  # the other target ran once
    assert done == []


def test_only_new_events_counts_a_newly_registered_handler(handled):
    groups.process_events([{"group": "tag.x", "key": "k"}])

    def late(event: events.CloudEvent) -> None:
        pass

    register_group_handler(late, group=r"^tag\.x$")
    try:
        owed = list(groups.only_new_events([{"group": "tag.x", "key": "k"}]))
    finally:
        unregister_group_handler(late)

    assert len(owed) == 1


@pytest.mark.parametrize(
    "item",
    [
        {"key": "k"},
        {"group": "", "key": "k"},
        {"group": "g"},
        {"group": "g", "key": ""},
    ],
)
def test_a_spark_event_needs_group_and_key(item):
    with pytest.raises(ValueError, match="needs a group and a key"):
        groups.to_event(item)


# manage.py cloudevents_process_sources


def make_tags(count: int) -> None:
    Tag.objects.bulk_create(Tag(name=f"hot-{n:02}") for n in range(count))


def test_command_emits_every_instance_in_batches(
    sent_events, django_capture_on_commit_callbacks, capsys
):
    register(sender=Tag, source=tag_events)
    make_tags(5)  # bulk_create sends no post_save: nothing emitted yet

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        call_command("cloudevents_process_sources", "--batch-size", "2")

    batches = [len(callback.args[0]) for callback in callbacks]
    assert batches == [4, 4, 2]  # two events per instance, two instances a batch
    assert {e.get_extension("sparkkey") for e in sent_events} == {
        f"tag.{kind}:hot-{n:02}" for kind in ("created", "hot") for n in range(5)
    }
    assert "1 model(s), 5 instance(s), 10 event(s) emitted" in capsys.readouterr().out


def test_command_process_runs_handlers_in_process_once(handled, capsys):
    register(sender=Tag, source=tag_events)
    make_tags(3)

    call_command("cloudevents_process_sources", "--process", "--batch-size", "2")
    call_command("cloudevents_process_sources", "--process")

    assert len(handled) == 6
    out = capsys.readouterr().out
    assert "3 instance(s), 6 event(s) processed" in out
    assert "3 instance(s), 0 event(s) processed" in out


def test_command_emits_nothing_for_instances_without_events(
    sent_events, django_capture_on_commit_callbacks, capsys
):
    register(sender=Tag, source=lambda tag: [])
    make_tags(3)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        call_command("cloudevents_process_sources")

    assert callbacks == [] and sent_events == []
    assert "3 instance(s), 0 event(s) emitted" in capsys.readouterr().out


def test_command_restricted_to_one_model(sent_events, capsys):
    register(sender=Tag, source=tag_events)
    register(sender=Question, source=question_events)
    make_tags(1)

    call_command("cloudevents_process_sources", "--model", "testapp.Tag")

    assert "1 model(s), 1 instance(s), 2 event(s) emitted" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--model", "testapp.Nope"], "unknown model 'testapp.Nope'"),
        (["--model", "testapp.Choice"], "has no registered event source"),
    ],
)
def test_command_errors(args, message):
    register(sender=Tag, source=tag_events)

    with pytest.raises(CommandError, match=message):
        call_command("cloudevents_process_sources", *args)


@pytest.mark.django_db(transaction=True)
def test_a_failed_outbox_write_that_aborted_the_transaction_is_raised(
    settings, failing_outbox_insert
):
    # PostgreSQL aborts the transaction on the failed INSERT, and its COMMIT
    # would then roll back without a word: the save must not look done.
    # Elsewhere the save stands, and the failure is logged.
    settings.CLOUDEVENTS_DELIVERY = "outbox"
    settings.CLOUDEVENTS_OUTBOX = {"BACKGROUND": False}
    register(sender=Tag, source=tag_events)
    if connection.vendor == "postgresql":
        with pytest.raises(DatabaseError), transaction.atomic():
            Tag.objects.create(name="hot")
        assert not Tag.objects.exists()
    else:
        with transaction.atomic():
            Tag.objects.create(name="hot")
        assert Tag.objects.filter(name="hot").exists()
