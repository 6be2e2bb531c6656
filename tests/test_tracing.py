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
