"""The event catalogue: every event type this project emits that is known statically.

Model events come from ``CLOUDEVENTS_MODELS`` (one entry per model and signal,
with the JSON Schema of its ``data`` derived from the model's fields, as the
serializer writes them); named events from their ``BaseEvent`` classes (a class
may declare ``data_schema``, a JSON Schema, or ``data_keys``, the keys it
requires); reply types from the caller. ``manage.py cloudevents_eventtypes``
writes them as Knative ``EventType`` resources, so ``kubectl get eventtypes``
and Backstage's event-mesh plugin see them (Knative's own auto-creation is alpha
and off by default).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.db import models

from . import conf
from .emit.serialize import is_sensitive
from .emit.sources import DEFAULT_SIGNALS

JSON_SCHEMA = "https://json-schema.org/draft/2020-12/schema"
EVENTING = "eventing.knative.dev"
VERSIONS = ("v1beta3", "v1beta2")


@dataclass(frozen=True)
class EventKind:
    """One kind of event: its type, fixed attributes and the schema of its data."""

    type: str
    description: str
    schema: dict[str, Any] | None = None
    #: Attributes every event of this kind carries with this value ("{...}":
    #: a variable part, as EventType v1beta3 writes templates).
    attributes: dict[str, str] = field(default_factory=dict)
    name: str = ""  # the resource's name stem; the type's by default


def collect(reply_types: Iterable[str] = ()) -> list[EventKind]:
    """Model events, then named events, then the given reply types."""
    kinds = [*model_kinds(), *named_kinds()]
    kinds += [
        EventKind(t, "A reply type declared by the project.") for t in reply_types
    ]
    return kinds


def model_kinds() -> list[EventKind]:
    kinds = []
    for label, options in conf.models().items():
        model = apps.get_model(label)
        meta = model._meta
        schema = model_data_schema(model, options)
        subject = f"DCE:{meta.app_label}.{meta.model_name}/{{pk}}"
        extensions = options.get("extensions") or {}
        if not isinstance(extensions, dict):
            extensions = {name: name for name in extensions}
        declared = {name: f"{{{field}}}" for name, field in extensions.items()}
        for signal in options.get("signals", DEFAULT_SIGNALS):
            kinds.append(
                EventKind(
                    type=f"django.orm.{signal}",
                    description=f"{signal} of {meta.label}",
                    schema=schema,
                    attributes={
                        "subject": subject,
                        "partitionkey": subject,
                        "djangoapp": meta.app_label,
                        "djangomodel": meta.model_name or "",
                        "datacontenttype": "application/json",
                        **declared,
                    },
                    name=f"{meta.app_label}-{meta.model_name}-{signal}",
                )
            )
    return kinds


def named_kinds() -> list[EventKind]:
    from .targets import named

    named.autodiscover()
    kinds = []
    for name, event_class in sorted(named._events.items()):
        schema = getattr(event_class, "data_schema", None)
        if schema is None:
            keys = list(getattr(event_class, "data_keys", ()) or ())
            schema = {"$schema": JSON_SCHEMA, "type": "object"}
            if keys:
                schema["required"] = keys
                schema["properties"] = {key: {} for key in keys}
        description = (event_class.__doc__ or "").strip().split("\n\n")[0]
        kinds.append(
            EventKind(
                type=name,
                description=" ".join(description.split()) or f"Named event {name}",
                schema=schema,
                attributes={"datacontenttype": "application/json"},
            )
        )
    return kinds


def model_data_schema(
    model: type[models.Model], options: dict[str, Any]
) -> dict[str, Any]:
    """The JSON Schema of a model event's ``data``, field by field."""
    fields = options.get("fields")
    exclude = options.get("exclude", ())
    patterns = conf.sensitive_fields()
    properties = {
        f.name: field_schema(f)
        for f in model._meta.concrete_fields
        if (fields is None or f.name in fields)
        and f.name not in exclude
        and not is_sensitive(f.name, patterns)
    }
    # A data function's result has no schema we can know; deferred and
    # read-back fields may be absent: no field is required.
    row = (
        {}
        if options.get("data")
        else {"type": "object", "properties": properties, "additionalProperties": False}
    )
    return {
        "$schema": JSON_SCHEMA,
        "title": f"{model._meta.label} model event data",
        "type": "object",
        "required": ["data", "signal_kwargs", "db_table"],
        "properties": {
            "data": row,
            "signal_kwargs": {"type": "object"},
            "db_table": {"const": model._meta.db_table},
        },
    }


# Field classes in the order they are tested (subclasses first), and their JSON
# Schema as the serializer writes the value (emit/serialize.py, README "Events").
_FIELD_SCHEMAS: Sequence[tuple[type[models.Field], dict[str, Any]]] = (
    (models.BooleanField, {"type": "boolean"}),
    (models.DecimalField, {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?$"}),
    (models.FloatField, {"type": "number"}),
    (models.DateTimeField, {"type": "string", "format": "date-time"}),
    (models.DateField, {"type": "string", "format": "date"}),
    # ISO 8601 without an offset: JSON Schema's "time" format requires one.
    (models.TimeField, {"type": "string", "pattern": r"^[0-9]{2}:[0-9]{2}:[0-9]{2}"}),
    (models.DurationField, {"type": "string", "format": "duration"}),
    (models.UUIDField, {"type": "string", "format": "uuid"}),
    (models.BinaryField, {"type": "string", "contentEncoding": "base64"}),
    (models.FileField, {"type": "string"}),
    (models.JSONField, {}),
    (models.GenericIPAddressField, {"type": "string"}),
    (models.IntegerField, {"type": "integer"}),  # Auto, Big, Small, Positive...
    (models.AutoField, {"type": "integer"}),
    (models.CharField, {"type": "string"}),  # Email, Slug, URL...
    (models.TextField, {"type": "string"}),
)


def field_schema(model_field: models.Field) -> dict[str, Any]:
    """One field's value as the event carries it (a foreign key: its target's pk)."""
    if model_field.many_to_one or model_field.one_to_one:
        target = model_field.target_field  # type: ignore[attr-defined]
        schema = dict(field_schema(target))
    else:
        schema = {}
        for kind, known in _FIELD_SCHEMAS:
            if isinstance(model_field, kind):
                schema = dict(known)
                break
        max_length = getattr(model_field, "max_length", None)
        if isinstance(model_field, models.CharField) and max_length:
            schema["maxLength"] = max_length
    if model_field.null and "type" in schema:
        schema["type"] = [schema["type"], "null"]
    return schema


_NOT_IN_NAME = re.compile(r"[^a-z0-9]+")


def resource_name(stem: str) -> str:
    """A DNS-1123 label for a resource (63 characters at most, stable)."""
    name = _NOT_IN_NAME.sub("-", stem.lower()).strip("-") or "event"
    if len(name) > 63:
        digest = hashlib.sha256(stem.encode()).hexdigest()[:8]
        name = f"{name[:54].rstrip('-')}-{digest}"
    return name


def event_types(
    kinds: Iterable[EventKind],
    *,
    version: str = "v1beta3",
    broker: str = "default",
    namespace: str | None = None,
    source: str | None = None,
    schema_url: str | None = None,
) -> list[dict[str, Any]]:
    """Knative ``EventType`` resources for ``kinds`` (``v1beta3`` or ``v1beta2``).

    With ``schema_url``, each kind with a schema names ``<schema_url>/<name>.json``
    as its ``dataschema`` (serve the files :func:`schema_files` gives there).
    """
    if version not in VERSIONS:
        raise ValueError(f"EventType version must be one of {', '.join(VERSIONS)}")
    source = source or conf.source()
    reference = {"apiVersion": f"{EVENTING}/v1", "kind": "Broker", "name": broker}
    if namespace:
        reference["namespace"] = namespace
    resources = []
    for kind in kinds:
        name = resource_name(kind.name or kind.type)
        metadata: dict[str, Any] = {"name": name}
        url = f"{schema_url.rstrip('/')}/{name}.json" if schema_url else None
        if kind.schema is None:
            url = None
        if namespace:
            metadata["namespace"] = namespace
        spec: dict[str, Any] = {"reference": reference, "description": kind.description}
        if version == "v1beta3":
            fixed = {"type": kind.type, "source": source, **kind.attributes}
            if url:
                fixed["dataschema"] = url
            spec["attributes"] = [
                {"name": "specversion", "required": True, "value": "1.0"},
                {"name": "id", "required": True},
                *({"name": n, "required": True, "value": v} for n, v in fixed.items()),
                {"name": "time", "required": True},
            ]
        else:
            spec.update(type=kind.type, source=source)
            if kind.schema is not None:
                spec["schemaData"] = json.dumps(kind.schema, sort_keys=True)
            if url:
                spec["schema"] = url
        resources.append(
            {
                "apiVersion": f"{EVENTING}/{version}",
                "kind": "EventType",
                "metadata": metadata,
                "spec": spec,
            }
        )
    return resources


def schema_files(kinds: Iterable[EventKind]) -> dict[str, dict[str, Any]]:
    """``<resource name>.json`` -> the JSON Schema of that kind's data."""
    return {
        f"{resource_name(kind.name or kind.type)}.json": kind.schema
        for kind in kinds
        if kind.schema is not None
    }


# -- routes: Knative Triggers for the handlers this project registers --------------

_REGEX_SPECIAL = set(".^$*+?{}[]|()\\")


def regex_filter(pattern: str) -> dict[str, Any] | None:
    """A group regex over ``type`` as a filter, when it is a plain literal with
    anchors (``^a\\.b`` a prefix, ``a$`` a suffix, ``^a$`` exact, ``a`` a CESQL
    LIKE); None when a filter cannot say it, or it matches every type."""
    start = pattern.startswith("^")
    body = pattern[1:] if start else pattern
    end = body.endswith("$") and not body.endswith("\\$")
    body = body[:-1] if end else body
    literal, escaped = [], False
    for char in body:
        if escaped:
            if char.isalnum():
                return None  # \d, \w, \b...: a class, not a character
            literal.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in _REGEX_SPECIAL:
            return None
        else:
            literal.append(char)
    if escaped:
        return None
    text = "".join(literal)
    if not text:
        return None if not (start and end) else {"cesql": "type = ''"}
    if start and end:
        return {"exact": {"type": text}}
    if start:
        return {"prefix": {"type": text}}
    if end:
        return {"suffix": {"type": text}}
    like = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return {"cesql": "type LIKE '%" + like.replace("'", "\\'") + "%'"}


def _as_list(spec: Any) -> list[dict[str, Any]]:
    """A filter spec as the list a Trigger's ``filters`` holds (all must pass)."""
    return [dict(f) for f in spec] if isinstance(spec, list | tuple) else [dict(spec)]


@dataclass(frozen=True)
class Route:
    """What one Trigger should deliver, and why (for a comment)."""

    name: str
    filters: list[dict[str, Any]]
    note: str = ""


def routes() -> list[Route]:
    """One route per group handler, per named event that has handlers (per
    filter, when every handler has one), per watch class and per subscription
    source."""
    from .targets import name_of, named
    from .targets.groups import _groups
    from .watches.base import registered

    found: list[Route] = []
    for group in _groups:
        spec: list[dict[str, Any]] = []
        note = ""
        if group.pattern is not None:
            translated = regex_filter(group.pattern.pattern)
            if translated is None:
                note = (
                    f"the group regex {group.pattern.pattern!r} cannot be expressed "
                    "as a filter: this Trigger delivers more, and the receiver "
                    "drops what does not match"
                )
            else:
                spec.append(translated)
        if group.filter is not None:
            spec += _as_list(group.filter.spec)
        found.append(Route(f"group-{name_of(group.function)}", spec, note))
    named.autodiscover()
    for name in sorted(named._events):
        tests = named.handler_filters(name)
        exact: list[dict[str, Any]] = [{"exact": {"type": name}}]
        if not tests:
            continue
        if any(test is None for test in tests):  # a handler takes every one
            found.append(Route(f"named-{name}", exact))
            continue
        specs = {json.dumps(t.spec, sort_keys=True): t.spec for t in tests if t}
        for n, given in enumerate(specs.values()):
            suffix = f"-{n}" if n else ""
            found.append(Route(f"named-{name}{suffix}", exact + _as_list(given)))
    for cls in registered():
        spec = [{"exact": {"type": cls.event_type}}]
        if cls.event_filter is not None:
            spec += _as_list(cls.event_filter)
        found.append(Route(f"watch-{cls.label()}", spec))
    found += _source_routes()
    return found


def _source_routes() -> list[Route]:
    """One route per subscription source (rows: none while unmigrated)."""
    from django.db import DatabaseError

    from .models import Source

    try:
        sources = list(Source.objects.order_by("name"))
    except DatabaseError:
        return []
    routes = []
    for source in sources:
        spec = [{"exact": {"type": source.event_type}}]
        if source.filter is not None:
            spec += _as_list(source.filter)
        routes.append(Route(f"source-{source.name}", spec))
    return routes


def triggers(
    *,
    broker: str = "default",
    service: str,
    path: str = "/cloudevents/",
    namespace: str | None = None,
) -> list[tuple[dict[str, Any], str]]:
    """Knative Triggers (``eventing.knative.dev/v1``) for :func:`routes`, to the
    Knative Service ``service`` at ``path``; each with its note ("" if none).

    Identical filters share one Trigger.
    """
    by_filters: dict[str, tuple[Route, list[str]]] = {}
    for route in routes():
        key = json.dumps(route.filters, sort_keys=True)
        if key in by_filters:
            by_filters[key][1].append(route.name)
        else:
            by_filters[key] = (route, [route.name])
    resources = []
    for route, names in by_filters.values():
        metadata: dict[str, Any] = {"name": resource_name(f"{service}-{route.name}")}
        if namespace:
            metadata["namespace"] = namespace
        spec: dict[str, Any] = {
            "broker": broker,
            "subscriber": {
                "ref": {
                    "apiVersion": "serving.knative.dev/v1",
                    "kind": "Service",
                    "name": service,
                },
                "uri": path,
            },
        }
        if route.filters:
            spec["filters"] = route.filters
        note = "; ".join(filter(None, [f"for {', '.join(names)}", route.note]))
        resources.append(
            (
                {
                    "apiVersion": f"{EVENTING}/v1",
                    "kind": "Trigger",
                    "metadata": metadata,
                    "spec": spec,
                },
                note,
            )
        )
    return resources
