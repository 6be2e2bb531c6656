"""Tracing and metrics with the real OpenTelemetry SDK and in-memory exporters."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

from django_cloudevents_bridge import tracing

_exporter = InMemorySpanExporter()
_reader = InMemoryMetricReader()


@pytest.fixture(scope="session")
def providers() -> tuple[InMemorySpanExporter, InMemoryMetricReader]:
    """The SDK, installed once per process (OpenTelemetry allows one provider)."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(_exporter))
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[_reader]))
    return _exporter, _reader


@pytest.fixture
def spans(providers) -> Iterator[InMemorySpanExporter]:
    exporter, _ = providers
    exporter.clear()
    yield exporter
    exporter.clear()


def counts(reader: InMemoryMetricReader) -> dict[tuple[str, str], int]:
    found: dict[tuple[str, str], int] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name != "event_count":
                    continue
                for point in metric.data.data_points:
                    key = (point.attributes["direction"], point.attributes["outcome"])
                    found[key] = found.get(key, 0) + point.value
    return found


def event(**more: Any) -> dict[str, Any]:
    return {"specversion": "1.0", "id": "e-1", "source": "/s", "type": "com.x", **more}


def test_outside_a_trace_nothing_is_added(spans) -> None:
    attributes = event()
    tracing.inject(attributes)
    assert "traceparent" not in attributes
    assert spans.get_finished_spans() == ()


def test_a_created_event_carries_its_create_span(spans) -> None:
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("request") as request:
        attributes = event(subject="DCE:shop.order/1")
        tracing.inject(attributes)
    create = next(s for s in spans.get_finished_spans() if s.name == "create com.x")
    assert create.kind == trace.SpanKind.PRODUCER
    assert create.parent.span_id == request.get_span_context().span_id
    assert create.attributes["cloudevents.event_subject"] == "DCE:shop.order/1"
    version, trace_id, span_id, flags = attributes["traceparent"].split("-")
    assert version == "00" and int(flags, 16) & 1  # sampled
    assert int(trace_id, 16) == create.context.trace_id
    assert int(span_id, 16) == create.context.span_id


def test_an_existing_traceparent_is_kept(spans) -> None:
    given = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with trace.get_tracer("test").start_as_current_span("request"):
        attributes = event(traceparent=given)
        tracing.inject(attributes)
    assert attributes["traceparent"] == given


def test_send_and_process_link_to_the_create_span(spans, providers) -> None:
    _, reader = providers
    before = counts(reader)
    with trace.get_tracer("test").start_as_current_span("request"):
        first, second = event(id="a"), event(id="b")
        tracing.inject(first)
        tracing.inject(second)
    with tracing.sending([first, second, event(id="untraced")], "http://sink"):
        pass
    with trace.get_tracer("test").start_as_current_span("receiver") as receiver:
        with tracing.processing(first, "group:shop.on_order"):
            pass
        with (
            pytest.raises(RuntimeError),
            tracing.processing(second, "group:shop.on_order"),
        ):
            raise RuntimeError("boom")
    finished = {s.name: s for s in spans.get_finished_spans()}
    creates = [s for s in spans.get_finished_spans() if s.name == "create com.x"]
    send = finished["send http://sink"]
    assert send.attributes["messaging.batch.message_count"] == 3
    assert {link.context.span_id for link in send.links} == {
        c.context.span_id for c in creates
    }
    processes = [s for s in spans.get_finished_spans() if s.name == "process com.x"]
    assert len(processes) == 2
    for span in processes:
        assert span.kind == trace.SpanKind.CONSUMER
        assert span.parent.span_id == receiver.get_span_context().span_id
        assert len(span.links) == 1
    assert processes[1].status.status_code == trace.StatusCode.ERROR
    after = counts(reader)
    assert after.get(("in", "processed"), 0) - before.get(("in", "processed"), 0) == 1
    assert after.get(("in", "failed"), 0) - before.get(("in", "failed"), 0) == 1


def test_counts(providers) -> None:
    _, reader = providers
    before = counts(reader)
    tracing.count("emitted", "out", 3)
    tracing.count("delivered", "out", 0)  # nothing to add
    after = counts(reader)
    assert after[("out", "emitted")] - before.get(("out", "emitted"), 0) == 3


@pytest.mark.django_db(transaction=True)
def test_trace_context_goes_from_emit_through_the_relay_to_the_receiver(
    spans, providers, settings, monkeypatch, live_server
) -> None:
    """A real relay POSTs to the real receiver (a live server on loopback)."""
    from django_cloudevents_bridge import emit, events
    from django_cloudevents_bridge.emit import handlers
    from django_cloudevents_bridge.emit import outbox as outbox_module
    from django_cloudevents_bridge.emit.relay import Relay
    from django_cloudevents_bridge.targets.groups import (
        register_group_handler,
        unregister_group_handler,
    )

    seen: list[str | None] = []

    def traced_handler(event: Any) -> None:
        seen.append(event.get_extension("traceparent"))

    monkeypatch.setenv("K_SINK", f"{live_server.url}/cloudevents/")
    settings.CLOUDEVENTS_HANDLER = "http"
    settings.CLOUDEVENTS_HANDLER_OPTIONS = {"timeout": (10.0, 10.0)}
    settings.CLOUDEVENTS_DELIVERY = "outbox"
    settings.CLOUDEVENTS_OUTBOX = {"BACKGROUND": False}
    register_group_handler(traced_handler, r"^com\.example\.traced$")
    _, reader = providers
    before = counts(reader)
    try:
        with trace.get_tracer("test").start_as_current_span("checkout") as checkout:
            emit([events.new("com.example.traced", source="/shop", data={"n": 1})])
        handler = handlers.get_handler(**settings.CLOUDEVENTS_HANDLER_OPTIONS)
        result = Relay(handler, options=outbox_module.conf.outbox()).drain()
    finally:
        unregister_group_handler(traced_handler)
    assert result.delivered == 1
    finished = spans.get_finished_spans()
    [create] = [s for s in finished if s.name == "create com.example.traced"]
    [send] = [s for s in finished if s.name == f"send {live_server.url}/cloudevents/"]
    [process] = [s for s in finished if s.name == "process com.example.traced"]
    trace_id = checkout.get_span_context().trace_id
    assert create.context.trace_id == trace_id
    assert create.parent.span_id == checkout.get_span_context().span_id
    assert [link.context.span_id for link in send.links] == [create.context.span_id]
    assert [link.context.span_id for link in process.links] == [create.context.span_id]
    assert process.attributes["messaging.consumer.group.name"].endswith(
        "traced_handler"
    )
    [traceparent] = seen  # the handler sees the extension itself
    assert traceparent is not None and f"{create.context.span_id:016x}" in traceparent
    after = counts(reader)
    for outcome, direction in [
        ("emitted", "out"),
        ("delivered", "out"),
        ("received", "in"),
        ("processed", "in"),
    ]:
        key = (direction, outcome)
        assert after.get(key, 0) - before.get(key, 0) == 1, key
