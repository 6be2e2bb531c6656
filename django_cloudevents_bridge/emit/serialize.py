"""Model instance -> JSON-safe dict: the row as the database stores it, no extra
queries on the common path; and the one JSON encoding of every event's data.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import fnmatch
import functools
import ipaddress
import itertools
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
            # Not contextlib.suppress: that is a context manager per field per save().
            try:  # noqa: SIM105
                value = convert(value, connection)
            except UNCONVERTED:
                pass  # then sent as it is
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


def plan_for(
    model: type[models.Model], options: dict[str, Any]
) -> tuple[tuple[str, Any, Converter], ...]:
    """The fields a ``CLOUDEVENTS_MODELS`` entry sends, as ``(name, field,
    converter)``: its ``fields`` and ``exclude``, and never what looks secret."""
    fields = options.get("fields")
    return _plan(
        model,
        None if fields is None else tuple(fields),
        tuple(options.get("exclude", ())),
        conf.sensitive_fields(),
    )


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
        and not _left_out(sensitive, model._meta.label, field.name)
    )


# A key's words: runs of lower-case letters (one capital may lead), of capitals
# (an acronym: "HTTPAuth" is HTTP, Auth) and of digits; anything else separates.
_WORD = re.compile(r"[A-Z]+(?![^\W\d_A-Z])|[A-Z]?[^\W\d_A-Z]+|\d+")
_GLOB = re.compile(r"[*?[]")
_CACHED_KEY = 64  # longer keys are matched every time, not remembered


def words(key: str) -> list[str]:
    """A key's words, lower-cased: ``"X-Api-Key"`` and ``"apiKey2"`` give
    ``["x", "api", "key"]`` and ``["api", "key", "2"]``."""
    return [word.lower() for word in _WORD.findall(key)]


class _Remembered(dict[str, bool]):
    """``test(key)``, remembered: the same few keys come with every ``save()``.

    Call it, or index it (a plain dict lookup once a key was seen).
    """

    def __init__(self, test: Callable[[str], bool]) -> None:
        super().__init__()
        self.test = test

    def __missing__(self, key: str) -> bool:
        found = self.test(key)
        if len(key) <= _CACHED_KEY:  # long keys, as a hostile form sends, are not kept
            if len(self) >= 4096:
                self.clear()
            self[key] = found
        return found

    __call__ = dict.__getitem__


@functools.lru_cache(maxsize=16)
def _matcher(patterns: tuple[str, ...]) -> _Remembered:
    """A key -> sensitive? test for one set of patterns (see ``is_sensitive``)."""
    globs = [pattern for pattern in patterns if _GLOB.search(pattern)]
    glob = re.compile(
        "|".join(fnmatch.translate(pattern.lower()) for pattern in globs) or "(?!)"
    ).match
    # Each word entry as its words run together: "api_key", "apiKey" -> "apikey".
    entries = frozenset(
        "".join(words(pattern)) for pattern in patterns if not _GLOB.search(pattern)
    ) - {""}

    def sensitive(key: str) -> bool:
        found = words(key)
        if glob(key.lower()) or any(glob(word) for word in found):
            return True
        joined = "".join(found)  # "X-Api-Key" -> "xapikey", words end at 1, 4, 7
        ends = set(itertools.accumulate(map(len, found), initial=0))
        for entry in entries:  # an entry starting and ending at word boundaries
            at = joined.find(entry)
            while at != -1:
                if at in ends and at + len(entry) in ends:
                    return True
                at = joined.find(entry, at + 1)
        return False

    return _Remembered(sensitive)


def without_sensitive(value: Any, origin: str = "") -> Any:
    """The value with every secret-like object key left out, at any depth.

    Object keys are matched by ``is_sensitive``; lists and tuples are walked
    (a tuple becomes a list, as JSON has it); other values are kept as they are.
    A key left out is logged once per ``origin`` (the model, the event type), so
    it is never silent.
    """
    sensitive = _matcher(conf.sensitive_fields())

    def clean(item: Any) -> Any:  # a dict, list or tuple
        if isinstance(item, dict):
            kept = {}
            for key, child in item.items():
                if sensitive[str(key)]:
                    _dropped(origin, str(key))
                else:
                    kept[key] = clean(child) if isinstance(child, _WALKED) else child
            return kept
        return [clean(child) if isinstance(child, _WALKED) else child for child in item]

    return clean(value) if isinstance(value, _WALKED) else value


_WALKED = (dict, list, tuple)


def without_sensitive_below(data: Any, origin: str = "") -> Any:
    """:func:`without_sensitive` for a dict whose own keys are known to be clean
    (a model's fields, which :func:`to_dict` leaves out): only its dict, list
    and tuple values are walked. The same result, without a walk per ``save()``
    over data that is mostly scalars. Anything but a dict is walked whole.
    """
    if not isinstance(data, dict):
        return without_sensitive(data, origin)
    if not any(isinstance(value, _WALKED) for value in data.values()):
        return data
    return {
        key: without_sensitive(value, origin) if isinstance(value, _WALKED) else value
        for key, value in data.items()
    }


def any_sensitive(keys: tuple[str, ...]) -> bool:
    """True if one of ``keys`` looks like a secret (see :func:`is_sensitive`)."""
    return _any_sensitive(keys, conf.sensitive_fields())


@functools.lru_cache(maxsize=16)
def _any_sensitive(keys: tuple[str, ...], patterns: tuple[str, ...]) -> bool:
    sensitive = _matcher(patterns)
    return any(sensitive(key) for key in keys)


def _left_out(sensitive: Callable[[str], bool], origin: str, name: str) -> bool:
    """True (and logged once) if a model field looks like a secret."""
    if not sensitive(name):
        return False
    _dropped(origin, name)
    return True


_reported: set[tuple[str, str]] = set()
_REPORTED_MAX = 1024  # keys come from hostile input too (the log view)


def _dropped(origin: str, key: str) -> None:
    if (origin, key) in _reported:
        return
    if len(_reported) >= _REPORTED_MAX:
        _reported.clear()  # bounded memory; a key may then be reported again
    _reported.add((origin, key))
    logger.warning(
        "%s: the key %r looks like a secret and is not sent (see "
        "CLOUDEVENTS_SENSITIVE_FIELDS)",
        origin or "data",
        key if len(key) <= 100 else key[:100] + "...",
    )


def is_sensitive(name: str, patterns: Iterable[str] | None = None) -> bool:
    """True if a key (a field name, an object key) looks like a secret.

    The key is split into words (on anything but letters and digits, at a
    lower-to-upper case change and between letters and digits) and is sensitive
    when one word, or several adjacent words run together, equals a word entry
    of the patterns: ``auth`` takes ``basic_auth`` and ``HTTPAuth`` but not
    ``author``; ``apikey`` takes ``api_key``, ``apiKey`` and ``X-Api-Key``. An
    entry holding ``*``, ``?`` or ``[`` is an fnmatch glob, matched against the
    whole key and against each word: ``*token`` takes ``accessToken`` and
    ``usertoken`` but not ``tokens_used``. Case never matters. Patterns default
    to ``conf.sensitive_fields()``.
    """
    patterns = conf.sensitive_fields() if patterns is None else tuple(patterns)
    return _matcher(tuple(patterns))(name)


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


def json_ready(value: Any) -> Any:
    """``value`` with every non-JSON value in its JSON form (:func:`encode`).

    Strict, unlike :func:`to_json_safe`: a value with no JSON form raises
    TypeError and a NaN or infinity ValueError, so an event that could never be
    written fails where it is built, not after the commit.
    """
    kind = type(value)
    if kind in _JSON_SCALARS:
        return value
    if isinstance(value, dict):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(item) for item in value]
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} is not a JSON number")
        return value
    return json_ready(encode(value))


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
