"""Values as the database stores them: what ``save()`` and the column do to a value.

Model events carry the committed row, not what was assigned before ``save()``
(a ``Decimal("1E+1")`` is stored as ``10.00``; a ``"5"`` in an ``IntegerField`` as
``5``). Django's own field conversions do most of it; the database's rounding
and storage forms (SQLite's numbers, PostgreSQL's discrete ranges) the rest.
"""

from __future__ import annotations

import datetime
import decimal
import functools
import json
import math
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connections, models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.expressions import Col
from django.utils import timezone


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
        return converter(field)(value, connection)
    except UNCONVERTED:
        return value


Converter = Callable[[Any, BaseDatabaseWrapper], Any]
# What a value Django cannot convert raises (save() would have raised it too).
UNCONVERTED = (ValidationError, TypeError, ValueError, ArithmeticError)


@functools.lru_cache(maxsize=4096)
def converter(field: Any) -> Converter:
    """How a field's values become their stored form: chosen once per field."""
    if getattr(field, "generated", False):
        return converter(field.output_field)
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
        return converter(field.target_field)  # a FK: as its target stores it
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
