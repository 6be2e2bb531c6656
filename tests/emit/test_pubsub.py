"""The Pub/Sub handler against the real emulator, read back per the binding."""

from __future__ import annotations

import datetime
import json
import re
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from django_cloudevents_bridge import events
from django_cloudevents_bridge.emit.handlers import get_handler
from django_cloudevents_bridge.emit.handlers import pubsub as pubsub_handler
from django_cloudevents_bridge.exceptions import DeliveryError, ImproperlyInstalled
from tests.testapp.models import Question

pytestmark = [pytest.mark.pubsub, pytest.mark.django_db(transaction=True)]

STRUCTURED = "application/cloudevents+json; charset=utf-8"
RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"
)
UUID = re.compile(
    r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
)
EURO = "Euro € 😀"


def read(message) -> tuple[str, dict]:
    """A Pub/Sub binding reader written from the spec, not from the package.

    Binary mode unless ``content-type`` starts with ``application/cloudevents``;
    ``ce-<name>`` attributes; ``content-type`` is the ``datacontenttype``.
    """
    attributes = dict(message.attributes)
    content_type = attributes.get("content-type")
    if content_type and content_type.lower().startswith("application/cloudevents"):
        return "structured", json.loads(message.data)
    event = {k[3:]: v for k, v in attributes.items() if k.startswith("ce-")}
    if content_type is not None:
        event["datacontenttype"] = content_type
    event["data"] = message.data
    return "binary", event


def make_question(text: str = "What's up?") -> Question:
    return Question.objects.create(
        question_text=text,
        pub_date=datetime.datetime(2026, 11, 1, 9, 30, tzinfo=datetime.UTC),
    )


def question_data(question: Question, *, created: bool = True) -> dict:
    return {
        "data": {
            "id": question.pk,
            "question_text": question.question_text,
            "pub_date": "2026-11-01T09:30:00Z",
        },
        "signal_kwargs": {
            "created": created,
            "update_fields": None,
            "raw": False,
            "using": "default",
        },
        "db_table": "testapp_question",
    }


def use_pubsub(settings, **options) -> None:
    settings.CLOUDEVENTS_HANDLER = "pubsub"
    settings.CLOUDEVENTS_HANDLER_OPTIONS = {"timeout": 30.0, **options}


def overrides(monkeypatch, **extensions: str) -> None:
    monkeypatch.setenv("K_CE_OVERRIDES", json.dumps({"extensions": extensions}))


def sample(count: int, **kwargs) -> list[events.CloudEvent]:
    return [
        events.new("com.example.sample", data={"n": n}, subject=f"s{n}", **kwargs)
        for n in range(count)
    ]


def test_save_publishes_one_binary_mode_message(pubsub, settings, monkeypatch):
    use_pubsub(settings, topic=pubsub.topic)
    overrides(monkeypatch, greeting=EURO)
    question = make_question(f"Price? {EURO}")

    [message] = pubsub.pull(1)
    mode, event = read(message)
    assert mode == "binary"
    assert set(message.attributes) == {
        "ce-specversion",
        "ce-id",
        "ce-source",
        "ce-type",
        "ce-subject",
        "ce-time",
        "ce-djangoapp",
        "ce-djangomodel",
        "ce-partitionkey",
        "ce-greeting",
        "content-type",
    }  # so no ce-extensions blob and no ce-datacontenttype
    assert event["specversion"] == "1.0"
    assert UUID.match(event["id"])
    assert event["source"] == "/tests"
    assert event["type"] == "django.orm.post_save"
    assert event["subject"] == f"DCE:testapp.question/{question.pk}"
    assert RFC3339.match(event["time"])
    assert event["time"].endswith("Z")
    assert event["djangoapp"] == "testapp"
    assert event["djangomodel"] == "question"
    assert event["greeting"] == EURO  # UTF-8 as it is: no percent-encoding
    assert event["datacontenttype"] == "application/json"
    assert json.loads(event["data"]) == question_data(question)
    assert message.ordering_key == ""


def test_structured_mode_carries_the_whole_event(pubsub, settings, monkeypatch):
    use_pubsub(settings, topic=pubsub.topic, mode="structured")
    overrides(monkeypatch, greeting=EURO)
    question = make_question()

    [message] = pubsub.pull(1)
    assert dict(message.attributes) == {"content-type": STRUCTURED}
    mode, event = read(message)
    assert mode == "structured"
    assert set(event) == {
        "specversion",
        "id",
        "source",
        "type",
        "subject",
        "time",
        "datacontenttype",
        "djangoapp",
        "djangomodel",
        "partitionkey",
        "greeting",
        "data",
    }
    assert event["specversion"] == "1.0"
    assert event["type"] == "django.orm.post_save"
    assert event["subject"] == f"DCE:testapp.question/{question.pk}"
    assert RFC3339.match(event["time"])
    assert event["datacontenttype"] == "application/json"
    assert event["greeting"] == EURO
    assert event["data"] == question_data(question)


@pytest.mark.parametrize(
    ("value", "mode"),
    [
        ("€" * 341 + "x", "binary"),  # 1024 bytes: the most Pub/Sub accepts
        ("€" * 342, "structured"),  # 1026 bytes, though only 342 characters
    ],
)
def test_too_long_attribute_falls_back_to_structured_mode(
    pubsub, settings, monkeypatch, value, mode
):
    use_pubsub(settings, topic=pubsub.topic)
    overrides(monkeypatch, long=value)
    question = make_question()

    [message] = pubsub.pull(1)
    read_mode, event = read(message)
    assert read_mode == mode
    assert event["long"] == value
    assert event["subject"] == f"DCE:testapp.question/{question.pk}"


def test_topic_from_project_id_and_topic_id(pubsub, settings, monkeypatch):
    project, _, topic_id = pubsub.topic.split("/")[1:]
    monkeypatch.setenv("PROJECT_ID", project)
    monkeypatch.setenv("TOPIC_ID", topic_id)
    use_pubsub(settings)
    make_question()

    [message] = pubsub.pull(1)
    assert read(message)[1]["type"] == "django.orm.post_save"


def test_no_topic_is_a_delivery_error_and_save_still_works(pubsub, settings, caplog):
    handler = pubsub_handler.Handler()
    with pytest.raises(DeliveryError, match="PROJECT_ID and TOPIC_ID"):
        handler.send_events(sample(1))

    use_pubsub(settings)
    question = make_question()
    assert Question.objects.filter(pk=question.pk).exists()
    assert "not delivered: no Pub/Sub topic" in caplog.text


def test_ordering_key_is_the_subject(ordered_pubsub, settings):
    use_pubsub(settings, topic=ordered_pubsub.topic, ordering=True)
    question = make_question("first")
    question.question_text = "second"
    question.save()

    messages = ordered_pubsub.pull(2)
    subject = f"DCE:testapp.question/{question.pk}"
    assert [m.ordering_key for m in messages] == [subject, subject]
    assert [json.loads(m.data)["data"]["question_text"] for m in messages] == [
        "first",
        "second",
    ]


def test_unknown_topic_is_a_delivery_error(pubsub):
    missing = pubsub.new_topic(create=False)
    batch = sample(2)
    handler = pubsub_handler.Handler(topic=missing, timeout=5)
    with handler, pytest.raises(DeliveryError) as caught:
        handler.send_events(batch)
    assert caught.value.delivered == 0
    assert caught.value.event_id == batch[0].get_id()
    assert "NotFound" in caught.value.reason
    assert "Topic not found" in caught.value.reason


def test_save_never_raises_when_publishing_fails(pubsub, settings, caplog):
    use_pubsub(settings, topic=pubsub.new_topic(create=False))
    question = make_question()
    assert Question.objects.filter(pk=question.pk).exists()
    assert "not delivered: Pub/Sub publish failed: NotFound" in caplog.text


def test_delivered_counts_the_events_before_the_failure(pubsub):
    batch = sample(3)
    batch[1] = events.new("com.example.huge", data="x" * 11_000_000)  # > 10 MB
    handler = pubsub_handler.Handler(topic=pubsub.topic, timeout=5)
    with handler, pytest.raises(DeliveryError) as caught:
        handler.send_events(batch)
    assert caught.value.delivered == 1
    assert caught.value.event_id == batch[1].get_id()
    assert "MessageTooLargeError" in caught.value.reason
    # The one before was published; the one after was not even tried.
    [message] = pubsub.pull(1)
    assert read(message)[1]["id"] == batch[0].get_id()


@pytest.mark.parametrize("ordering", [False, True])
def test_publish_timeout(ordered_pubsub, ordering):
    first, second = sample(2)
    with pubsub_handler.Handler(
        topic=ordered_pubsub.topic, ordering=ordering, timeout=0.3
    ) as handler:
        frozen = ordered_pubsub.emulator.frozen()
        with frozen, pytest.raises(DeliveryError, match="not confirmed within 0.3 s"):
            handler.send_events([first])
        # The emulator is back: the same handler publishes again (with time for
        # the emulator to catch up on a loaded machine).
        handler.timeout = 30.0
        assert handler.send_events([second]) == 1
    # The timed-out publish may still arrive: at least once, not exactly once.
    ids = {read(m)[1]["id"] for m in ordered_pubsub.pull(2)}
    assert ids == {first.get_id(), second.get_id()}


def test_failed_ordered_publish_resumes_its_keys(ordered_pubsub):
    missing = ordered_pubsub.new_topic(create=False)
    batch = sample(2)  # two subjects, so two ordering keys
    with pubsub_handler.Handler(topic=missing, ordering=True, timeout=5) as handler:
        with pytest.raises(DeliveryError, match="NotFound"):
            handler.send_events(batch)
        ordered_pubsub.create(missing)
        # Both keys were paused by the client after the failure; neither is stuck.
        assert handler.send_events(batch) == 2
    messages = ordered_pubsub.pull(2)
    assert sorted(m.ordering_key for m in messages) == ["s0", "s1"]


class FakePublisher:
    """Only for what the emulator cannot show: a client the handler doesn't own."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes, dict]] = []
        self.stopped = False

    def publish(self, topic, data, ordering_key="", **attributes):
        from concurrent.futures import Future

        self.published.append((topic, data, attributes))
        future: Future = Future()
        future.set_result(str(len(self.published)))
        return future

    def stop(self) -> None:
        self.stopped = True


def test_an_injected_publisher_is_used_and_never_stopped():
    fake = FakePublisher()
    handler = pubsub_handler.Handler(topic="projects/p/topics/fake", publisher=fake)
    with handler:
        assert handler.send_events(sample(1)) == 1
        assert handler.send_events([]) == 0
    with handler:  # reopened after close(): still the injected client
        assert handler.send_events(sample(1)) == 1
    assert len(fake.published) == 2
    assert fake.stopped is False


def test_installed_is_false_when_the_client_cannot_be_imported(monkeypatch):
    assert pubsub_handler.installed()
    # As if google-cloud-pubsub had never been installed: its parent won't import.
    monkeypatch.delitem(sys.modules, "google.cloud.pubsub_v1", raising=False)
    monkeypatch.setitem(sys.modules, "google.cloud", None)
    assert not pubsub_handler.installed()


def test_missing_extra_names_it(monkeypatch):
    monkeypatch.setattr(pubsub_handler, "installed", lambda: False)
    with pytest.raises(ImproperlyInstalled, match=r"\[pubsub\]") as caught:
        get_handler("pubsub", topic="projects/p/topics/t")
    assert caught.value.extra == "pubsub"
    assert isinstance(caught.value, ImproperlyConfigured)


@pytest.mark.parametrize(
    "options",
    [{"mode": "batch"}, {"topic": "just-a-name"}, {"topc": "projects/p/topics/t"}],
)
def test_bad_options_fail_at_start_up(options):
    with pytest.raises(ImproperlyConfigured):
        pubsub_handler.Handler(**options)
