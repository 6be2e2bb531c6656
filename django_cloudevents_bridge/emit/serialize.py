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

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db import connections, models, router
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.expressions import Col
from django.db.models.fields.files import FieldFile
from django.utils import timezone
from django.utils.duration import duration_iso_string
from django.utils.functional import Promise

from .. import conf

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


def stored(field: Any, value: Any, connection: BaseDatabaseWrapper) -> Any:
    """``value`` as reloading it from ``field`` on ``connection`` would give it.

    What Django's own ``save()`` does to a value (``to_python()``, time zones,
    ``get_prep_value()``), then what the database does to it (rounding a
    decimal to its ``decimal_places``; SQLite keeps a decimal as a number with
    15 significant digits). A value Django could not convert is returned as it is.
    """
    if value is None:
        return None
    try:
        return _converter(field)(value, connection)
    except UNCONVERTED:
        return value


Converter = Callable[[Any, BaseDatabaseWrapper], Any]
# What a value Django cannot convert raises (save() would have raised it too).
UNCONVERTED = (ValidationError, TypeError, ValueError, ArithmeticError)


@functools.lru_cache(maxsize=4096)
def _converter(field: Any) -> Converter:
    """How a field's values become their stored form: chosen once per field."""
    if getattr(field, "generated", False):
        return _converter(field.output_field)
    kind = field.get_internal_type()
    if kind == "ArrayField":  # contrib.postgres
        item = field.base_field
        return lambda value, connection: (
            [stored(item, each, connection) for each in value]
            if isinstance(value, list | tuple)
            else value
        )
    if kind.endswith("RangeField"):
        return functools.partial(_range, field)
    if field.is_relation and field.concrete:
        return _converter(field.target_field)  # a FK: as its target stores it
    if isinstance(field, models.BinaryField):
        return lambda value, connection: value  # to_python() takes str for base64
    if isinstance(field, models.JSONField):  # through the field's encoder
        encoder, decoder = field.encoder, field.decoder
        return lambda value, connection: json.loads(
            json.dumps(value, cls=encoder), cls=decoder
        )
    to_python = field.to_python
    if isinstance(field, models.DecimalField):
        return lambda value, connection: _decimal(
            field, field.get_db_prep_save(value, connection), connection
        )
    if isinstance(field, models.DateTimeField):
        return lambda value, connection: _datetime(
            # A date is midnight, as to_python() makes it (without a 2nd warning).
            datetime.datetime.combine(value, datetime.time())
            if type(value) is datetime.date
            else to_python(value)
        )
    if isinstance(field, models.TimeField):  # a time column keeps no offset
        return lambda value, connection: to_python(value).replace(tzinfo=None)
    if isinstance(field, models.GenericIPAddressField):  # IPv6 in its short form
        # None for "", as adapt_ipaddressfield_value() binds it.
        return lambda value, connection: field.get_prep_value(to_python(value)) or None
    if isinstance(field, models.FileField | models.FilePathField):
        return lambda value, connection: field.get_prep_value(value)  # "" for none
    if isinstance(field, models.FloatField):
        return _float(to_python)
    return lambda value, connection: to_python(value)


def _float(to_python: Callable[[Any], Any]) -> Converter:
    def convert(value: Any, connection: BaseDatabaseWrapper) -> Any:
        value = to_python(value)
        if math.isnan(value) and connection.vendor == "sqlite":
            return None  # SQLite stores a NaN as NULL
        return value

    return convert


_ANY_PRECISION = decimal.Context(prec=decimal.MAX_PREC, rounding=decimal.ROUND_HALF_UP)
_INT64 = 2**63


def _decimal(
    field: models.DecimalField, value: decimal.Decimal, connection: BaseDatabaseWrapper
) -> decimal.Decimal:
    """A decimal as its column stores it: rounded to the field's decimal_places."""
    if field.decimal_places is None:  # a range's bound: numrange has no scale
        return value
    places = decimal.Decimal(1).scaleb(-field.decimal_places)
    if connection.vendor != "sqlite":
        # numeric/DECIMAL/NUMBER round half away from zero and have no -0.
        rounded = value.quantize(places, context=_ANY_PRECISION)
        return rounded.copy_abs() if rounded.is_zero() else rounded
    # SQLite: the text Django binds gets NUMERIC affinity (an integer, else a
    # 64-bit float), and Django's converter reads it back quantized.
    text = str(value)
    number: int | float
    try:
        number = int(text)
        if not -_INT64 <= number < _INT64:
            number = float(number)
    except ValueError:
        number = float(text)
        if number.is_integer() and -(2**51) <= number < 2**51:
            number = int(number)
    column, converters = _read_converters(field, connection.alias)
    result: Any = number
    for converter in converters:
        result = converter(result, column, connection)
    return result


@functools.lru_cache(maxsize=1024)
def _read_converters(field: Any, alias: str) -> tuple[Col, list[Any]]:
    """What a query reading the field's column runs on each value (built once)."""
    connection = connections[alias]
    column = Col("", field)
    converters = connection.ops.get_db_converters(column)
    return column, converters + column.get_db_converters(connection)


# Discrete ranges: PostgreSQL stores them as [lower, upper), a bound moved by a step.
_STEPS: dict[str, Any] = {
    "IntegerRangeField": 1,
    "BigIntegerRangeField": 1,
    "DateRangeField": datetime.timedelta(days=1),
}


def _range(field: Any, value: Any, connection: BaseDatabaseWrapper) -> Any:
    """A contrib.postgres range as PostgreSQL stores it (canonical, or empty)."""
    try:
        if isinstance(value, list | tuple):
            value = field.get_prep_value(value)  # with the field's default_bounds
        else:
            value = field.to_python(value)
        if value.isempty:
            return value
        lower = stored(field.base_field, value.lower, connection)
        upper = stored(field.base_field, value.upper, connection)
    except (*UNCONVERTED, AttributeError):
        return value
    lower_inc, upper_inc = value.lower_inc, value.upper_inc
    step = _STEPS.get(field.get_internal_type())
    if step is not None:
        if lower is not None and not lower_inc:
            lower, lower_inc = lower + step, True
        if upper is not None and upper_inc:
            upper, upper_inc = upper + step, False
    if (
        lower is not None
        and upper is not None
        and (lower > upper or (lower == upper and not (lower_inc and upper_inc)))
    ):
        return type(value)(empty=True)
    bounds = ("[" if lower_inc else "(") + ("]" if upper_inc else ")")
    return type(value)(lower, upper, bounds)


def _datetime(value: datetime.datetime) -> datetime.datetime:
    """As reloaded: in UTC with USE_TZ (a naive value read in TIME_ZONE), else naive."""
    if not settings.USE_TZ:
        return timezone.make_naive(value) if timezone.is_aware(value) else value
    if timezone.is_naive(value):
        value = timezone.make_aware(value, timezone.get_default_timezone())
    return value.astimezone(datetime.UTC)


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
        (field.name, field, _converter(field))
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
