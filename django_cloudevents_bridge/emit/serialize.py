"""Model instance -> JSON-safe dict: concrete fields only, no extra queries."""

from __future__ import annotations

import base64
import datetime
import decimal
import fnmatch
import functools
import ipaddress
import logging
import math
import re
import uuid
from collections.abc import Callable, Collection, Iterable
from typing import Any

from django.db import models
from django.db.models.fields.files import FieldFile
from django.utils.duration import duration_iso_string

from .. import conf

logger = logging.getLogger("django_cloudevents_bridge")


def to_dict(
    instance: models.Model,
    *,
    fields: Collection[str] | None = None,
    exclude: Collection[str] = (),
) -> dict[str, Any]:
    """The instance's concrete fields as JSON-safe values; FKs as their raw pk.

    Deferred fields are skipped rather than loaded, so this never queries. Fields
    that look like secrets (see ``conf.sensitive_fields``) are never included.
    """
    deferred = instance.get_deferred_fields()
    plan = _plan(
        type(instance),
        None if fields is None else tuple(fields),
        tuple(exclude),
        conf.sensitive_fields(),
    )
    return {
        # value_from_object() reads the attname: a FK gives its raw id, no query.
        name: to_json_safe(field.value_from_object(instance))
        for name, field in plan
        if field.attname not in deferred
    }


@functools.lru_cache(maxsize=1024)
def _plan(
    model: type[models.Model],
    fields: tuple[str, ...] | None,
    exclude: tuple[str, ...],
    patterns: tuple[str, ...],
) -> tuple[tuple[str, Any], ...]:
    """Which fields of a model to send: worked out once, not on every save()."""
    sensitive = _matcher(patterns)
    return tuple(
        (field.name, field)
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
    """Turn a field value into something ``json.dumps`` writes as valid JSON."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        # NaN and infinities are not JSON; keep them readable rather than crash.
        return value if math.isfinite(value) else str(value)
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return duration_iso_string(value)
    if isinstance(value, decimal.Decimal):
        return str(value)  # a float would lose digits
    if isinstance(value, uuid.UUID | ipaddress.IPv4Address | ipaddress.IPv6Address):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, FieldFile):
        return value.name or None
    if isinstance(value, dict):
        return {str(key): to_json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_json_safe(item) for item in value]
    if hasattr(value, "isempty"):  # PostgreSQL range fields (psycopg Range)
        return {
            "lower": to_json_safe(value.lower),
            "upper": to_json_safe(value.upper),
            "bounds": getattr(value, "bounds", None),
        }
    return str(value)
