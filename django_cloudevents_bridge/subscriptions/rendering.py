"""Rendering stored subscription events: django-entity-event's ``Medium.render``.

Which templates render an event (the first found):

1. the medium's style (its ``rendering_style``; with none, the style named by
   ``CLOUDEVENTS_SUBSCRIPTIONS["DEFAULT_RENDERING_STYLE"]``): its
   ``ContextRenderer`` for the event's source, else for the source's group;
2. the default style (that setting: the *fallback style*): its renderer for the
   source, else for the group;
3. the built-in text: the source's display name and a short summary (the
   event's subject, else the start of its data without secret-like keys).

A renderer's templates are template paths (found by the project's template
loaders) or inline text (the Django template language). With only one of text
and HTML, the other is derived: the text is the HTML without its tags, the HTML
the text escaped, in paragraphs. A template that cannot be loaded or compiled
is logged and treated as missing, so an event is always rendered.

The context of an event: its data (a dict's keys at the top level; any other
data as ``data``) with the renderer's ``context_hints`` applied, then the
medium's ``additional_context`` (it wins over the data, so that a sender cannot
replace a value the site configured, such as a link's base URL), then ``event``,
``source`` and ``medium`` themselves. A hint ``{"name": {"app_name": "app",
"model_name": "Model", "select_related": [...], "prefetch_related": [...]}}``
turns the primary key, or list of keys, at ``name`` (a dotted path such as
``order.customer``; lists on the way are walked) into model instances. The keys
of the whole batch are loaded in one query per model (the hints naming a model
merged), so rendering 1,000 events costs as many queries as rendering one. A key
with no row stays as it was; a hint naming no model is skipped and logged (the
system checks and the admin report it before that).
"""

from __future__ import annotations

import functools
import html
import json
import logging
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.core.exceptions import ValidationError
from django.db import connections, models
from django.db.models import Q, prefetch_related_objects
from django.db.models.constants import LOOKUP_SEP
from django.db.models.fields.reverse_related import ForeignObjectRel
from django.template import TemplateDoesNotExist, TemplateSyntaxError, engines
from django.template.backends.django import DjangoTemplates
from django.template.loader import get_template
from django.utils.html import format_html, linebreaks, strip_tags
from django.utils.text import Truncator

from .. import conf
from ..emit.serialize import (
    JSONEncoder,
    is_sensitive,
    rfc3339,
    to_dict,
    to_json_safe,
    without_sensitive,
)

if TYPE_CHECKING:
    from ..models import ContextRenderer, Event, Medium

__all__ = ["hint_problems", "render", "renderer_problems", "serialized_context"]

logger = logging.getLogger("django_cloudevents_bridge")

HINT_KEYS = ("app_name", "model_name", "select_related", "prefetch_related")
SUMMARY_LENGTH = 200  # characters of the built-in summary
RESERVED = ("event", "source", "medium")  # context keys set by rendering itself


def render(medium: Medium, events: Iterable[Event]) -> dict[Event, tuple[str, str]]:
    """``{event: (text, html)}``: each event rendered in the medium's style."""
    rendered = {}
    compiled: dict[int, tuple[Any, Any]] = {}
    for event, renderer, context in _prepare(medium, events):
        if renderer is not None and renderer.pk not in compiled:
            compiled[renderer.pk] = _templates(renderer)
        text, body = compiled[renderer.pk] if renderer is not None else (None, None)
        if text is None and body is None:
            rendered[event] = _builtin(event)
            continue
        text_out = str(text.render(context)) if text is not None else None
        html_out = str(body.render(context)) if body is not None else None
        if text_out is None:
            text_out = html.unescape(strip_tags(html_out or "")).strip()
        if html_out is None:
            html_out = linebreaks(text_out, autoescape=True)
        rendered[event] = (text_out, html_out)
    return rendered


def serialized_context(
    medium: Medium, events: Iterable[Event]
) -> dict[Event, dict[str, Any]]:
    """``{event: context}``, JSON-safe, for custom front ends (entity-event's
    ``get_serialized_context``).

    The context templates get, with model instances as dicts of their fields
    (foreign keys as their primary key) and ``event`` and ``source`` as their
    identifying attributes. Secret-like keys (``conf.sensitive_fields``: a
    password hash, a token) are left out at every depth, the instances' fields
    included.
    """
    serialized = {}
    for event, _, context in _prepare(medium, events):
        source = event.source
        data = {key: value for key, value in context.items() if key not in RESERVED}
        result = without_sensitive(_jsonable(data), f"subscription source {source}")
        result["event"] = {
            "source": event.event_source,
            "id": event.event_id,
            "subject": event.subject,
            "time": rfc3339(event.time),
            "expires_at": rfc3339(event.expires_at) if event.expires_at else None,
        }
        result["source"] = {"name": source.name, "display_name": source.display_name}
        serialized[event] = result
    return serialized


@dataclass(frozen=True)
class Hint:
    """One checked context hint: where the keys are, and how to load them."""

    path: tuple[str, ...]
    model: type[models.Model]
    select_related: tuple[str, ...]
    prefetch_related: tuple[str, ...]


def hint_problems(hints: object) -> list[str]:
    """What is wrong with a ``context_hints`` value (nothing: an empty list)."""
    if not isinstance(hints, dict):
        return [
            "context hints must be an object: "
            '{"name": {"app_name": ..., "model_name": ...}}'
        ]
    return [
        f"hint {name!r}: {problem}"
        for name, hint in hints.items()
        for problem in _problems(name, hint)
    ]


def renderer_problems(renderer: ContextRenderer) -> dict[str, list[str]]:
    """``{field name: problems}`` of a renderer: templates that cannot be loaded
    or compiled, and bad context hints. Used by the admin and the checks."""
    found: dict[str, list[str]] = {}
    for field in ("text_template_path", "html_template_path"):
        path = getattr(renderer, field)
        if path:
            problem = _template_problem(get_template, path, repr(path))
            if problem:
                found[field] = [problem]
    for field in ("text_template", "html_template"):
        text = getattr(renderer, field)
        if text:
            problem = _template_problem(_engine().from_string, text, "inline")
            if problem:
                found[field] = [problem]
    hints = hint_problems(renderer.context_hints)
    if hints:
        found["context_hints"] = hints
    return found


def _template_problem(load: Callable[[str], Any], text: str, name: str) -> str | None:
    try:
        load(text)
    except TemplateDoesNotExist:
        return f"template {name} not found by the template loaders"
    except TemplateSyntaxError as err:
        return f"template {name}: {err}"
    return None


# Preparing a batch: renderers, hints, contexts.


def _prepare(
    medium: Medium, events: Iterable[Event]
) -> list[tuple[Event, ContextRenderer | None, dict[str, Any]]]:
    """Each event with its renderer and its context, hints loaded for the batch."""
    events = list(events)
    if not events:
        return []
    prefetch_related_objects(events, "source")  # one query, none if cached
    chosen = _choose(medium, events)
    hints: dict[int, list[Hint]] = {}
    for renderer in chosen:
        if renderer is not None and renderer.pk not in hints:
            hints[renderer.pk] = _checked_hints(renderer)
    per_event = [hints[r.pk] if r is not None else [] for r in chosen]
    loaded = _load(events, per_event)
    additional = medium.additional_context
    additional = additional if isinstance(additional, dict) else {}
    prepared = []
    for event, renderer, event_hints in zip(events, chosen, per_event, strict=True):
        data = event.context
        for hint in event_hints:
            data = _replaced(data, hint.path, _lookup(hint.model, loaded[hint.model]))
        context = dict(data) if isinstance(data, dict) else {"data": data}
        context.update(additional)
        context.update(event=event, source=event.source, medium=medium)
        prepared.append((event, renderer, context))
    return prepared


def _choose(medium: Medium, events: Sequence[Event]) -> list[ContextRenderer | None]:
    """Each event's renderer (or None: the built-in text), in one query."""
    from ..models import ContextRenderer

    default = conf.default_rendering_style()
    styles = Q()
    if medium.rendering_style_id is not None:
        styles |= Q(rendering_style_id=medium.rendering_style_id)
    if default:
        styles |= Q(rendering_style__name=default)
    if not styles:
        return [None] * len(events)
    renderers = list(
        ContextRenderer.objects.filter(styles)
        .filter(
            Q(source_id__in={event.source_id for event in events})
            | Q(source_group_id__in={event.source.group_id for event in events})
        )
        .select_related("rendering_style")
    )
    by_key = {
        (r.rendering_style_id, r.source_id, r.source_group_id): r for r in renderers
    }
    default_id = next(
        (r.rendering_style_id for r in renderers if r.rendering_style.name == default),
        None,
    )
    order = [
        style
        for style in dict.fromkeys((medium.rendering_style_id, default_id))
        if style is not None
    ]
    chosen = []
    for event in events:
        found = None
        for style in order:
            found = by_key.get((style, event.source_id, None)) or by_key.get(
                (style, None, event.source.group_id)
            )
            if found is not None:
                break
        chosen.append(found)
    return chosen


def _checked_hints(renderer: ContextRenderer) -> list[Hint]:
    """The renderer's usable hints; a bad one is logged and skipped."""
    hints = renderer.context_hints
    if not isinstance(hints, dict):
        if hints:
            logger.warning(
                "Context renderer %r: context_hints ignored: %s",
                renderer.name,
                hint_problems(hints)[0],
            )
        return []
    checked = []
    for name, hint in hints.items():
        problems = _problems(name, hint)
        if problems:
            logger.warning(
                "Context renderer %r: hint %r skipped: %s",
                renderer.name,
                name,
                "; ".join(problems),
            )
            continue
        checked.append(
            Hint(
                path=tuple(name.split(".")),
                model=apps.get_model(hint["app_name"], hint["model_name"]),
                select_related=tuple(hint.get("select_related", ())),
                prefetch_related=tuple(hint.get("prefetch_related", ())),
            )
        )
    return checked


def _problems(name: object, hint: object) -> list[str]:
    if not isinstance(name, str) or not all(name.split(".")):
        return ["the name must be a key, or a dotted path of keys"]
    if not isinstance(hint, dict):
        return ["must be an object with app_name and model_name"]
    found = [f"unknown key {key!r}" for key in hint if key not in HINT_KEYS]
    app, model_name = hint.get("app_name"), hint.get("model_name")
    if not (isinstance(app, str) and isinstance(model_name, str)):
        return [*found, "app_name and model_name must be strings"]
    try:
        model = apps.get_model(app, model_name)
    except (LookupError, ValueError):
        return [*found, f"no installed model {app}.{model_name}"]
    for key in ("select_related", "prefetch_related"):
        paths = hint.get(key, [])
        if not (
            isinstance(paths, list) and all(isinstance(p, str) and p for p in paths)
        ):
            found.append(f"{key} must be a list of relation names")
            continue
        for path in paths:
            problem = _relation_problem(model, path, single=key == "select_related")
            if problem:
                found.append(f"{key} {path!r}: {problem}")
    return found


def _relation_problem(
    model: type[models.Model] | None, path: str, *, single: bool
) -> str | None:
    """Why ``path`` is no chain of relations of ``model`` (``single``: each one
    to a single row, as ``select_related`` needs), or None."""
    for part in path.split(LOOKUP_SEP):
        if model is None:  # after a generic foreign key
            return f"cannot follow {part!r} (the model is not known)"
        field = _relation(model, part)
        if field is None:
            return f"{model._meta.label} has no relation {part!r}"
        if single and not (field.many_to_one or field.one_to_one):
            return f"{model._meta.label}.{part} is not a single related object"
        model = field.related_model
    return None


def _relation(model: type[models.Model], name: str) -> Any:
    """The relation ``name`` reaches on an instance (a reverse one by its
    accessor, as ``prefetch_related`` names it: ``choice_set``), or None."""
    for field in model._meta.get_fields():
        if not field.is_relation:
            continue
        accessor = (
            field.get_accessor_name()
            if isinstance(field, ForeignObjectRel)
            else field.name
        )
        if accessor == name:
            return field
    return None


def _load(
    events: Sequence[Event], per_event: Sequence[list[Hint]]
) -> dict[type[models.Model], dict[Any, models.Model]]:
    """The rows every hint of the batch names: one query per model (plus one
    per ``prefetch_related`` lookup), the hints naming a model merged."""
    keys: dict[type[models.Model], set[Any]] = defaultdict(set)
    select: dict[type[models.Model], set[str]] = defaultdict(set)
    prefetch: dict[type[models.Model], set[str]] = defaultdict(set)
    for event, hints in zip(events, per_event, strict=True):
        for hint in hints:
            select[hint.model].update(hint.select_related)
            prefetch[hint.model].update(hint.prefetch_related)
            for value in _at(event.context, hint.path):
                key = _key(hint.model, value)
                if key is not None:
                    keys[hint.model].add(key)
    loaded: dict[type[models.Model], dict[Any, models.Model]] = {}
    for model in select:
        queryset = model._default_manager.all()
        if select[model]:
            queryset = queryset.select_related(*sorted(select[model]))
        if prefetch[model]:
            queryset = queryset.prefetch_related(*sorted(prefetch[model]))
        loaded[model] = _rows(queryset, list(keys[model]))
    return loaded


def _rows(queryset: models.QuerySet[Any], keys: list[Any]) -> dict[Any, Any]:
    """``queryset.in_bulk(keys)``, in one query up to the database's own limit
    of parameters: Django splits SQLite's at 999 (``max_query_params``), a limit
    SQLite left behind in 3.32 (32,766 by default); its real one is asked."""
    limit = _parameter_limit(queryset.db) or len(keys) or 1
    rows = {}
    for start in range(0, len(keys), limit):
        for row in queryset.filter(pk__in=keys[start : start + limit]):
            rows[row.pk] = row
    return rows


def _parameter_limit(using: str) -> int | None:
    connection = connections[using]
    if connection.vendor == "sqlite":
        connection.ensure_connection()
        return int(connection.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
    return connection.features.max_query_params


def _key(model: type[models.Model], value: Any) -> Any:
    """A primary key as the model's field holds it, or None if it cannot be one."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    try:
        return model._meta.pk.to_python(value)
    except (ValidationError, ValueError, TypeError):
        return None


def _lookup(
    model: type[models.Model], rows: dict[Any, models.Model]
) -> Callable[[Any], Any]:
    def found(value: Any) -> Any:
        key = _key(model, value)
        return rows.get(key, value) if key is not None else value

    return found


def _at(value: Any, path: tuple[str, ...]) -> Iterator[Any]:
    """The values at ``path`` (lists, on the way and at the end, walked)."""
    if isinstance(value, list):
        for item in value:
            yield from _at(item, path)
    elif not path:
        yield value
    elif isinstance(value, dict) and path[0] in value:
        yield from _at(value[path[0]], path[1:])


def _replaced(value: Any, path: tuple[str, ...], found: Callable[[Any], Any]) -> Any:
    """``value`` with the keys at ``path`` replaced by ``found(key)``: new
    containers along the path, the stored data itself never changed."""
    if isinstance(value, list):
        return [_replaced(item, path, found) for item in value]
    if not path:
        return found(value)
    if isinstance(value, dict) and path[0] in value:
        return {**value, path[0]: _replaced(value[path[0]], path[1:], found)}
    return value


# Templates.


def _templates(renderer: ContextRenderer) -> tuple[Any, Any]:
    """The renderer's (text, html) templates, None for a missing or broken one."""
    return (
        _template(renderer, renderer.text_template_path, renderer.text_template),
        _template(renderer, renderer.html_template_path, renderer.html_template),
    )


def _template(renderer: ContextRenderer, path: str, inline: str) -> Any:
    try:
        if path:
            return get_template(path)
        if inline:
            return _engine().from_string(inline)
    except (TemplateDoesNotExist, TemplateSyntaxError) as err:
        logger.warning(
            "Context renderer %r: template %r unusable (%s: %s); rendered without it",
            renderer.name,
            path or "inline",
            type(err).__name__,
            err,
        )
    return None


def _engine() -> DjangoTemplates:
    """The project's first Django template engine (its libraries and builtins),
    or a plain one when the project configures none."""
    for engine in engines.all():
        if isinstance(engine, DjangoTemplates):
            return engine
    return _plain_engine()


@functools.cache
def _plain_engine() -> DjangoTemplates:
    return DjangoTemplates(
        {"NAME": "cloudevents_rendering", "DIRS": [], "APP_DIRS": False, "OPTIONS": {}}
    )


def _builtin(event: Event) -> tuple[str, str]:
    """The built-in rendering: the source's display name and a short summary."""
    summary = event.subject
    if not summary and event.context not in (None, {}, [], ""):
        data = without_sensitive(event.context, f"subscription source {event.source}")
        summary = Truncator(
            json.dumps(data, cls=JSONEncoder, ensure_ascii=False)
        ).chars(SUMMARY_LENGTH)
    name = str(event.source)
    if not summary:
        return name, format_html("<p>{}</p>", name)
    return f"{name}: {summary}", format_html(
        "<p><strong>{}</strong>: {}</p>", name, summary
    )


def _jsonable(value: Any) -> Any:
    """A context value as JSON: a model instance as its fields (no secrets)."""
    if isinstance(value, models.Model):
        return to_dict(value, fields=_fields(type(value), conf.sensitive_fields()))
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return to_json_safe(value)


@functools.lru_cache(maxsize=256)
def _fields(model: type[models.Model], patterns: tuple[str, ...]) -> tuple[str, ...]:
    """A model's fields but the secret-like ones, left out without the warning
    ``to_dict`` logs (meant for a project sending a model with a password)."""
    return tuple(
        field.name
        for field in model._meta.concrete_fields
        if not is_sensitive(field.name, patterns)
    )
