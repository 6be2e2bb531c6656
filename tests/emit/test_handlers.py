"""get_handler() and the small handlers: locmem, console, a plain function."""

from __future__ import annotations

import io

import pytest
from django.core.exceptions import ImproperlyConfigured

from django_cloudevents_bridge import events
from django_cloudevents_bridge.emit import deliver, handlers, shared_handler
from django_cloudevents_bridge.emit.handlers import console, http, locmem
from django_cloudevents_bridge.exceptions import DeliveryError
from tests.testapp.models import Question

received = []


def remember(event):
    received.append(event)


def fail_on_second(event):
    received.append(event)
    if len(received) == 2:
        raise ValueError("sink said no")


@pytest.fixture(autouse=True)
def _clear():
    received.clear()
    yield
    received.clear()


@pytest.mark.parametrize(
    "name, cls",
    [("http", http.Handler), ("locmem", locmem.Handler), ("console", console.Handler)],
)
def test_short_names(name, cls):
    assert type(handlers.get_handler(name)) is cls


def test_import_string_of_a_class_or_a_function():
    assert isinstance(
        handlers.get_handler("django_cloudevents_bridge.emit.handlers.locmem.Handler"),
        locmem.Handler,
    )
    wrapped = handlers.get_handler("tests.emit.test_handlers.remember")
    assert isinstance(wrapped, handlers.FunctionHandler)


def test_unknown_options_fail_loudly():
    with pytest.raises(ImproperlyConfigured, match="unknown options"):
        handlers.get_handler("locmem", colour="blue")
    with pytest.raises(ImproperlyConfigured, match="mode"):
        handlers.get_handler("http", mode="batch")


class FileHandler(handlers.BaseHandler):
    """A project's handler whose option happens to be called ``path``."""

    def __init__(self, *, path, **options):
        super().__init__(**options)
        self.path = path

    def send_events(self, events):
        return len(events)


def test_a_handler_option_may_be_called_path(settings):
    settings.CLOUDEVENTS_HANDLER = "tests.emit.test_handlers.FileHandler"
    settings.CLOUDEVENTS_HANDLER_OPTIONS = {"path": "/tmp/events.out"}
    handler = shared_handler()
    assert (type(handler), handler.path) == (FileHandler, "/tmp/events.out")


def test_not_a_handler():
    with pytest.raises(TypeError):
        handlers.get_handler(42)


@pytest.mark.django_db(transaction=True)
def test_seed_style_callable_gets_an_sdk_event(settings):
    settings.CLOUDEVENTS_HANDLER = remember
    question = Question.objects.create(question_text="q", pub_date="2026-01-01T00:00Z")
    [event] = received
    # The official SDK's event object, with its getters.
    assert event.get_type() == "django.orm.post_save"
    assert event.get_subject() == f"DCE:testapp.question/{question.pk}"
    assert event.get_extension("djangomodel") == "question"


def test_function_handler_reports_how_many_were_sent():
    handler = handlers.get_handler(fail_on_second)
    batch = [events.new("t", data={"n": n}) for n in range(3)]
    with pytest.raises(DeliveryError) as caught:
        handler.send_events(batch)
    assert caught.value.delivered == 1
    assert caught.value.event_id == batch[1].get_id()
    assert "sink said no" in caught.value.reason
    assert len(received) == 2  # the third was not attempted


def test_deliver_logs_instead_of_raising(settings, caplog):
    settings.CLOUDEVENTS_HANDLER = fail_on_second
    batch = [events.new("t") for _ in range(3)]
    assert deliver(batch) == 0
    assert (
        f"{batch[1].get_id()} (t) not delivered: ValueError: sink said no"
        in caplog.text
    )
    assert (
        f"{batch[2].get_id()} (t) not delivered: an earlier event failed" in caplog.text
    )


def test_deliver_survives_a_broken_handler(settings, caplog):
    settings.CLOUDEVENTS_HANDLER = "no.such.Handler"
    assert deliver([events.new("t")]) == 0
    assert "not delivered" in caplog.text


def test_shared_handler_is_reused_and_reset_on_settings_change(settings):
    first = shared_handler()
    assert shared_handler() is first
    settings.CLOUDEVENTS_HANDLER = "console"
    assert isinstance(shared_handler(), console.Handler)


def test_locmem_collects(sent_events):
    event = events.new("t")
    assert locmem.Handler().send_events([event]) == 1
    assert sent_events == [event]


def test_console_prints_like_event_display():
    stream = io.StringIO()
    event = events.new(
        "django.orm.post_save",
        data={"n": "é"},
        subject="s",
        extensions={"djangoapp": "a"},
    )
    with console.Handler(stream=stream) as handler:
        handler.send_events([event])
    text = stream.getvalue()
    assert text.startswith(
        "☁️  cloudevents.Event\nContext Attributes,\n  specversion: 1.0\n"
    )
    assert "  type: django.orm.post_save\n" in text
    assert f"  id: {event.get_id()}\n" in text
    assert "Extensions,\n  djangoapp: a\n" in text
    assert 'Data,\n  {\n    "n": "é"\n  }\n' in text


def test_console_prints_text_and_bytes_data():
    stream = io.StringIO()
    console.Handler(stream=stream).send_events(
        [
            events.new("t", data="plain", datacontenttype="text/plain"),
            events.new("t", data=b"\x00"),
        ]
    )
    assert "Data,\n  plain\n" in stream.getvalue()
    assert "Data,\n  b'\\x00'\n" in stream.getvalue()
