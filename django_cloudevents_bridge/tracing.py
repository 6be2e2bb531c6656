"""Tracing and metrics with OpenTelemetry, when ``opentelemetry-api`` is installed.

Without it every function here is a no-op costing one test. With it (and an SDK
the project configures), the bridge follows OpenTelemetry's messaging and
CloudEvents conventions:

- **create**: each event the project emits gets a ``create <type>`` span
  (PRODUCER), a child of the current span, whose context travels in the event's
  ``traceparent``/``tracestate`` attributes (the Distributed Tracing extension);
- **send**: the relay's delivery of a batch is a ``send <destination>`` span
  (PRODUCER) linked to each event's ``create`` span;
- **process**: each dispatch target's run is a ``process <type>`` span
  (CONSUMER) in the current context (the request's, or the worker's), linked to
  the event's ``create`` span when it carries a ``traceparent``.

Metrics, named like Knative's: ``event_count`` (attributes ``direction``:
``out``/``in``, and ``outcome``: ``emitted``, ``delivered``, ``failed``,
``parked``, ``received``, ``processed``), ``event_dispatch_latencies`` and
``event_processing_latencies`` (milliseconds).

Events written by a database trigger (``"capture": "trigger"``) cannot carry
the writer's trace context: the trigger runs outside Python.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from typing import Any

try:
    from opentelemetry import metrics, trace
    from opentelemetry.trace.propagation.tracecontext import (
        TraceContextTextMapPropagator,
    )
except ImportError:  # the optional dependency is absent: everything is a no-op
    trace = None  # type: ignore[assignment]

NAME = "django_cloudevents_bridge"
SYSTEM = "cloudevents"  # messaging.system

_propagator = TraceContextTextMapPropagator() if trace is not None else None
_instruments: dict[str, Any] = {}


def enabled() -> bool:
    """True if ``opentelemetry-api`` is installed."""
    return trace is not None


def tracing() -> bool:
    """True if the project set a tracer provider (an SDK): spans are recorded."""
    if trace is None:
        return False
    provider = trace.get_tracer_provider()
    return not isinstance(
        provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider
    )


def metering() -> bool:
    """True if the project set a meter provider: measurements are kept."""
    if trace is None:
        return False
    return type(metrics.get_meter_provider()).__name__ not in _NO_METER


# The API's own providers before an SDK is set (the proxy is private API).
_NO_METER = frozenset({"_ProxyMeterProvider", "NoOpMeterProvider"})


def _tracer() -> Any:
    return trace.get_tracer(NAME)


def _instrument(kind: str, name: str, unit: str, description: str) -> Any:
    """One instrument of the global meter (made once; the meter provider the
    project sets later still receives it, as OpenTelemetry proxies it)."""
    if name not in _instruments:
        meter = metrics.get_meter(NAME)
        make = meter.create_counter if kind == "counter" else meter.create_histogram
        _instruments[name] = make(name, unit=unit, description=description)
    return _instruments[name]


def count(outcome: str, direction: str, n: int = 1, **attributes: str) -> None:
    """Add ``n`` to ``event_count`` for this outcome."""
    if not n or not metering():
        return
    counter = _instrument("counter", "event_count", "{event}", "CloudEvents by outcome")
    counter.add(n, {"direction": direction, "outcome": outcome, **attributes})


def latency(name: str, seconds: float, **attributes: str) -> None:
    """Record a duration in ``event_dispatch_latencies`` or
    ``event_processing_latencies``, in milliseconds."""
    if not metering():
        return
    histogram = _instrument("histogram", name, "ms", name.replace("_", " "))
    histogram.record(seconds * 1000.0, attributes)


def _event_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    found = {
        "messaging.system": SYSTEM,
        "messaging.message.id": str(attributes.get("id", "")),
        "cloudevents.event_id": str(attributes.get("id", "")),
        "cloudevents.event_source": str(attributes.get("source", "")),
        "cloudevents.event_type": str(attributes.get("type", "")),
        "cloudevents.event_spec_version": str(attributes.get("specversion", "1.0")),
    }
    if attributes.get("subject") is not None:
        found["cloudevents.event_subject"] = str(attributes["subject"])
    return found


def inject(attributes: MutableMapping[str, Any]) -> None:
    """Record a ``create`` span for an event being built from ``attributes`` and
    put its context in ``traceparent``/``tracestate`` (left alone if set).

    Only inside a recording span: no trace, no attributes added.
    """
    if not tracing() or "traceparent" in attributes:
        return
    if not trace.get_current_span().get_span_context().is_valid:
        return
    with _tracer().start_as_current_span(
        f"create {attributes.get('type', '')}",
        kind=trace.SpanKind.PRODUCER,
        attributes={
            **_event_attributes(attributes),
            "messaging.operation.type": "create",
            "messaging.operation.name": "create",
        },
    ):
        carrier: dict[str, str] = {}
        _propagator.inject(carrier)
    attributes.update(carrier)


def _links(events: Iterable[Mapping[str, Any]]) -> list[Any]:
    links = []
    for attributes in events:
        parent = attributes.get("traceparent")
        if not isinstance(parent, str):
            continue
        carrier = {"traceparent": parent}
        state = attributes.get("tracestate")
        if isinstance(state, str):
            carrier["tracestate"] = state
        context = trace.get_current_span(_propagator.extract(carrier))
        span_context = context.get_span_context()
        if span_context.is_valid:
            links.append(trace.Link(span_context))
    return links


@contextlib.contextmanager
def sending(events: Iterable[Mapping[str, Any]], destination: str) -> Iterator[None]:
    """A ``send <destination>`` span around one delivery of ``events``' attributes."""
    if not tracing():
        yield
        return
    batch = list(events)
    attributes: dict[str, Any] = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.destination.name": destination,
        "messaging.batch.message_count": len(batch),
    }
    if len(batch) == 1:
        attributes.update(_event_attributes(batch[0]))
    start = time.perf_counter()
    with _tracer().start_as_current_span(
        f"send {destination}",
        kind=trace.SpanKind.PRODUCER,
        attributes=attributes,
        links=_links(batch),
    ):
        yield
    latency("event_dispatch_latencies", time.perf_counter() - start)


@contextlib.contextmanager
def processing(attributes: Mapping[str, Any], target: str) -> Iterator[None]:
    """A ``process <type>`` span around one target's run for one event."""
    if not tracing():
        if not metering():
            yield
            return
        start, outcome = time.perf_counter(), "failed"
        try:
            yield
            outcome = "processed"
        finally:
            count(outcome, "in", target=target)
            latency("event_processing_latencies", time.perf_counter() - start)
        return
    start = time.perf_counter()
    outcome = "failed"
    try:
        with _tracer().start_as_current_span(
            f"process {attributes.get('type', '')}",
            kind=trace.SpanKind.CONSUMER,
            attributes={
                **_event_attributes(attributes),
                "messaging.operation.type": "process",
                "messaging.operation.name": "process",
                "messaging.consumer.group.name": target,
            },
            links=_links([attributes]),
        ):
            yield
        outcome = "processed"
    finally:
        count(outcome, "in", target=target)
        latency("event_processing_latencies", time.perf_counter() - start)


_TRACEPARENT = re.compile(r'"traceparent"\s*:\s*"([0-9a-f-]{55})"')
_FIELD = re.compile(r'"(id|type|source|tracestate)"\s*:\s*"((?:[^"\\]|\\.)*)"')


def stored_attributes(documents: Iterable[str]) -> list[dict[str, Any]]:
    """The attributes a send span needs from stored JSON events (only when
    tracing: a regex, not a parse, so a relay without an SDK pays nothing)."""
    if not tracing():
        return []
    found = []
    for document in documents:
        attributes: dict[str, Any] = {}
        for name, value in _FIELD.findall(document[:4096]):
            attributes.setdefault(name, value)  # the attributes come before data
        parent = _TRACEPARENT.search(document[:4096])
        if parent:
            attributes["traceparent"] = parent.group(1)
        found.append(attributes)
    return found
