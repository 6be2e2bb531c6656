"""Model instance -> JSON-safe dict: concrete fields only, no extra queries."""

from __future__ import annotations

import base64
import datetime
import decimal
import fnmatch
import functools
import ipaddress
import itertools
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
