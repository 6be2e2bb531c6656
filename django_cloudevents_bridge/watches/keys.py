"""Canonical filter values and match keys: what a watch stores and an event is
matched by.

A match key is the JSON text of ``[type, subject type or null, subject id or
null, [[name, value], ...]]`` with the pairs sorted by name: JSON is unambiguous
(no separator a value could contain), and null is "any", which no value can
spell. Values are canonical strings, so a filter value read from an extension
attribute (always a string on the wire) and one read from JSON data match:

========================  ===========================================
value                     canonical string
========================  ===========================================
``True`` / ``False``      ``"true"`` / ``"false"`` (as CloudEvents writes booleans)
integer                   decimal digits: ``"42"``, ``"-7"``
float, Decimal            an integral value as an integer (``2.0`` -> ``"2"``);
                          otherwise the shortest round-trip text (``"0.1"``)
string                    itself, unchanged (case and spaces matter)
UUID                      ``str(uuid)``: lower case, hyphenated
model instance            the canonical form of its primary key
date, datetime, ...       as model events carry them (RFC 3339, ...)
========================  ===========================================

``None``, containers and non-finite numbers have no canonical form: ``notify()``
refuses them (leave a filter out to match any value), and an event carrying one
matches only watches that leave that filter out.
"""

from __future__ import annotations

import decimal
import hashlib
import json
import math
import re
from typing import Any

from django.db import models

from ..emit.serialize import json_ready
from ..notifications import address_key, user_key

ANY = None  # a key's subject type or id that matches every event
SUBJECT_PREFIX = "DCE:"
# A filter is named like the extension attribute it is read from and fire() sets.
FILTER_NAME = re.compile(r"^[a-z0-9]{1,20}\Z")


class NoCanonicalForm(ValueError):
    """A value that cannot be a filter value."""


def canonical(value: Any) -> str:
    """The canonical string of a filter value (NoCanonicalForm if it has none)."""
    if isinstance(value, models.Model):
        value = value.pk
    if isinstance(value, bool):  # before int: True is an int
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise NoCanonicalForm(f"{value!r} has no canonical form")
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            raise NoCanonicalForm(f"{value!r} has no canonical form")
        if value == value.to_integral_value():
            return str(int(value))
        return format(value.normalize(), "f")
    if isinstance(value, str):
        if "\x00" in value:  # PostgreSQL cannot store it
            raise NoCanonicalForm("a filter value cannot contain NUL")
        return value
    if value is None or isinstance(value, dict | list | tuple | set | frozenset):
        raise NoCanonicalForm(f"{type(value).__name__} has no canonical form")
    try:
        safe = json_ready(value)  # UUID, dates, ... as events carry them
    except (TypeError, ValueError):
        safe = value
    if safe is value or not isinstance(safe, str | int | float):
        raise NoCanonicalForm(f"{type(value).__name__} has no canonical form")
    return canonical(safe)


def match_key(
    event_type: str,
    subject_type: str | None,
    subject_id: str | None,
    filters: dict[str, str],
) -> str:
    """The canonical match key (see the module's docstring)."""
    pairs = sorted(filters.items())
    return json.dumps(
        [event_type, subject_type, subject_id, [list(pair) for pair in pairs]],
        ensure_ascii=False,
        separators=(",", ":"),
    )


def digest(key: str) -> str:
    """The indexed digest of a match key."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def subject_of(instance: models.Model) -> tuple[str, str]:
    """(subject type, subject id) of a model instance, as model events name it."""
    return instance._meta.label_lower, str(instance.pk)


def parse_subject(subject: str | None) -> tuple[str, str] | None:
    """``DCE:app_label.model_name/pk`` -> (``app_label.model_name``, ``pk``).

    The primary key is the text after the first ``/``: any key (integer, UUID,
    a string holding ``/``). None for a subject of another form.
    """
    if not subject or not subject.startswith(SUBJECT_PREFIX):
        return None
    label, slash, pk = subject[len(SUBJECT_PREFIX) :].partition("/")
    if not slash or not pk or label.count(".") != 1 or "" in label.split("."):
        return None
    return label.lower(), pk


def subject(instance: models.Model) -> str:
    """The CloudEvent subject of a model instance: ``DCE:app.model/pk``."""
    return "{}{}/{}".format(SUBJECT_PREFIX, *subject_of(instance))


def owner_of(user: Any | None, email: str = "") -> str:
    """The person a watch belongs to: the ledger's recipient key."""
    if user is not None:
        return user_key(user)
    return address_key(email)
