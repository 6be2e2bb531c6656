"""Model instance -> JSON-safe dict: the row as the database stores it, no extra
queries on the common path; and the one JSON encoding of every event's data.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import decimal
import fnmatch
import functools
import ipaddress
import json
import logging
import math
import re
import uuid
from collections.abc import Callable, Collection, Iterable
from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from django.db import connections, models, router
from django.db.models.fields.files import FieldFile
from django.utils.duration import duration_iso_string
from django.utils.functional import Promise

from .. import conf
from ._stored import UNCONVERTED, Converter, converter, stored

logger = logging.getLogger("django_cloudevents_bridge")


def to_dict(
    instance: models.Model,
    *,
    fields: Collection[str] | None = None,
    exclude: Collection[str] = (),
    using: str | None = None,
) -> dict[str, Any]:
    """The instance's concrete fields as the database on ``using`` stores them.

    Each value is what reloading the row would give (see :func:`stored`), made
    JSON-safe; FKs are their raw pk. Deferred fields are skipped rather than
    loaded, so this never queries, except for a field still holding an
    expression (``F("votes") + 1``) after a save, or a ``GeneratedField``: those
    are read back in one query, and left out when the row is gone. Fields that
    look like secrets (see ``conf.sensitive_fields``) are never included.
    """
    deferred = instance.get_deferred_fields()
    plan = _plan(
        type(instance),
        None if fields is None else tuple(fields),
        tuple(exclude),
        conf.sensitive_fields(),
    )
    using = using or instance._state.db or router.db_for_write(type(instance))
    connection = connections[using]
    data: dict[str, Any] = {}
    expressions = []
    for name, field, convert in plan:
        if field.generated:
            # The database computes it on every save; the instance holds the value
            # it was loaded with (stale after an update), if any.
            expressions.append((name, field))
            continue
        if field.attname in deferred:
            continue
        # value_from_object() reads the attname: a FK gives its raw id, no query.
        value = field.value_from_object(instance)
        if value is None:
            data[name] = None
        elif hasattr(value, "resolve_expression") and _is_expression(value):
            expressions.append((name, field))
        else:
            with contextlib.suppress(*UNCONVERTED):  # then sent as it is
                value = convert(value, connection)
            data[name] = to_json_safe(value)
    if expressions:
        data.update(_read_back(instance, expressions, using))
        data = {name: data[name] for name, *_ in plan if name in data}
    return data


def _is_expression(value: Any) -> bool:
    """True for F(), Value combinations, functions, DatabaseDefault..."""
    return hasattr(value, "resolve_expression") and not isinstance(value, type)


def _read_back(
    instance: models.Model, expressions: list[tuple[str, Any]], using: str
) -> dict[str, Any]:
    """The stored values of fields the database computed: one query.

    After ``save()`` the instance still holds the expression, not its result
    (and a generated field the value it was loaded with). The row is read on the
    connection that wrote it (in its transaction), and the instance is left as
    it was. A deleted row (``post_delete``) leaves them out.
    """
    model = type(instance)
    attnames = [field.attname for _, field in expressions]
    try:
        row = (
            model._base_manager.db_manager(using)
            .filter(pk=instance.pk)
            .values(*attnames)
            .get()
        )
    except ObjectDoesNotExist:
        return {}
    connection = connections[using]
    return {
        name: to_json_safe(stored(field, row[field.attname], connection))
        for name, field in expressions
    }


@functools.lru_cache(maxsize=1024)
def _plan(
    model: type[models.Model],
    fields: tuple[str, ...] | None,
    exclude: tuple[str, ...],
    patterns: tuple[str, ...],
) -> tuple[tuple[str, Any, Converter], ...]:
    """Which fields of a model to send, and how: worked out once, not per save()."""
    sensitive = _matcher(patterns)
    return tuple(
        (field.name, field, converter(field))
        for field in model._meta.concrete_fields
        if (fields is None or field.name in fields)
        and field.name not in exclude
        and not sensitive(field.name.lower())
    )


@functools.lru_cache(maxsize=16)
def _matcher(patterns: tuple[str, ...]) -> Callable[[str], Any]:
    """One compiled regex for all (lower-cased) fnmatch patterns."""
    joined = "|".join(fnmatch.translate(pattern.lower()) for pattern in patterns)
    return re.compile(joined or "(?!)").match


def without_sensitive(value: Any, origin: str = "") -> Any:
    """A JSON-safe value with every password-like object key left out, at any depth.

    For data a project's own function built from an instance: the field filter
    never sees it, and a secret must not go out through it either. A key left
    out is logged once per ``origin`` (say the model), so it is never silent.
    """
    sensitive = _matcher(conf.sensitive_fields())

    def clean(item: Any) -> Any:
        if isinstance(item, dict):
            kept = {}
            for key, child in item.items():
                if sensitive(str(key).lower()):
                    _dropped(origin, str(key))
                else:
                    kept[key] = clean(child)
            return kept
        if isinstance(item, list):
            return [clean(child) for child in item]
        return item

    return clean(value)


_reported: set[tuple[str, str]] = set()


def _dropped(origin: str, key: str) -> None:
    if (origin, key) not in _reported:
        _reported.add((origin, key))
        logger.warning(
            "%s: the key %r looks like a secret and is not sent (see "
            "CLOUDEVENTS_SENSITIVE_FIELDS)",
            origin or "data",
            key,
        )


def is_sensitive(name: str, patterns: Iterable[str] | None = None) -> bool:
    """True if a field name matches a password-like pattern."""
    patterns = conf.sensitive_fields() if patterns is None else tuple(patterns)
    return bool(_matcher(tuple(patterns))(name.lower()))


def to_json_safe(value: Any) -> Any:
    """Turn a value into something ``json.dumps`` writes as valid JSON.

    Encoded as :class:`JSONEncoder` does; an expression (never sent as its
    repr) is left out of a mapping and ``None`` elsewhere; anything else
    unknown becomes its ``str()``.
    """
    kind = type(value)
    if kind in _JSON_SCALARS:
        return value
    if kind in _TO_TEXT:  # the common field types, without the isinstance chain
        return _TO_TEXT[kind](value)
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        # NaN and infinities are not JSON; keep them readable rather than crash.
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {
            str(key): to_json_safe(item)
            for key, item in value.items()
            if not _is_expression(item)
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [to_json_safe(item) for item in value]
    if _is_expression(value):
        return None
    try:
        return to_json_safe(encode(value))
    except TypeError:
        return str(value)


def rfc3339(value: datetime.datetime | datetime.time) -> str:
    """ISO 8601 / RFC 3339 with every stored digit, and ``Z`` for UTC."""
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def encode(value: Any) -> Any:
    """The JSON form of one non-JSON value; TypeError if it has none.

    The single encoding of event data: model events, named events, sources.
    """
    if isinstance(value, datetime.datetime | datetime.time):
        return rfc3339(value)
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return duration_iso_string(value)
    if isinstance(value, decimal.Decimal):
        return _decimal_text(value)
    if isinstance(value, uuid.UUID | ipaddress.IPv4Address | ipaddress.IPv6Address):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, FieldFile):
        return value.name or None
    if isinstance(value, Promise):  # a lazy translation
        return str(value)
    if hasattr(value, "isempty"):  # PostgreSQL range fields (psycopg Range)
        return {
            "lower": value.lower,
            "upper": value.upper,
            "bounds": getattr(value, "bounds", None),
        }
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _isoformat(value: datetime.date) -> str:
    return value.isoformat()


def _decimal_text(value: decimal.Decimal) -> str:
    return format(value, "f")  # a string: a float would lose digits


_JSON_SCALARS = frozenset((type(None), bool, int, str))
# Exact types encode() turns into text, looked up first by to_json_safe().
_TO_TEXT: dict[type, Callable[[Any], str]] = {
    datetime.datetime: rfc3339,
    datetime.time: rfc3339,
    datetime.date: _isoformat,
    datetime.timedelta: duration_iso_string,
    decimal.Decimal: _decimal_text,
    uuid.UUID: str,
}


class JSONEncoder(json.JSONEncoder):
    """``json.dumps(data, cls=JSONEncoder)``: event data as :func:`encode` writes it."""

    def default(self, o: Any) -> Any:
        return encode(o)
