"""Build CloudEvents: the only module that imports the SDK.

If the SDK's API changes again, only this module changes. The wire formats
(``to_http``, ``to_json``, ...) are in :mod:`django_cloudevents_bridge.bindings`.
"""

from __future__ import annotations

import base64
import calendar
import contextlib
import contextvars
import functools
import json
import logging
import os
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cloudevents.core.v1.event import CloudEvent

from . import conf, tracing

if TYPE_CHECKING:
    from .bindings.http import to_http, to_http_batch
    from .bindings.jsonformat import from_json, to_json

__all__ = ["CloudEvent", "new", "to_http", "to_http_batch", "to_json", "from_json"]

logger = logging.getLogger("django_cloudevents_bridge")

SPECVERSION = "1.0"
JSON = "application/json"
# The spec's context attributes, in the order event-display prints them.
DISPLAY_ORDER = ("specversion", "type", "source", "subject", "id", "time") + (
    "datacontenttype",
    "dataschema",
)
CORE_ATTRIBUTES = frozenset(DISPLAY_ORDER)
EXTENSION_NAME = re.compile(r"^[a-z0-9]+\Z")  # \Z: "$" would allow a final newline
OVERRIDES_VAR = "K_CE_OVERRIDES"
PARTITION_KEY = "partitionkey"
CORRELATION_ID = "correlationid"  # the conversation: the first event's id
CAUSATION_ID = "causationid"  # the event whose handling built this one
_cause: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "cloudevents_cause", default=None
)


@contextlib.contextmanager
def caused_by(event: CloudEvent) -> Iterator[None]:
    """Events built inside carry ``causationid`` (this event's id) and
    ``correlationid`` (this event's own, else its id): a reply, or an event a
    handler emits, names what it answers and the conversation it belongs to."""
    attributes = event.get_attributes()
    correlation = attributes.get(CORRELATION_ID)
    token = _cause.set(
        {
            CAUSATION_ID: str(attributes["id"]),
            CORRELATION_ID: correlation
            if isinstance(correlation, str) and correlation
            else str(attributes["id"]),
        }
    )
    try:
        yield
    finally:
        _cause.reset(token)


# Type system, String: no control characters, surrogates or noncharacters. (A NUL
# would also make PostgreSQL refuse the row: a 5xx, retried for ever.)
NOT_IN_STRING = re.compile(
    r"[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef"
    + "".join(f"\\U{plane:04x}fffe\\U{plane:04x}ffff" for plane in range(17))
    + "]"
)


def new(
    type: str,
    *,
    data: Any = None,
    subject: str | None = None,
    extensions: Mapping[str, str] | None = None,
    source: str | None = None,
    id: str | None = None,
    time: datetime | None = None,
    datacontenttype: str | None = JSON,
    trusted: bool = False,
) -> CloudEvent:
    """Build a v1.0 event with a fresh UUID ``id`` and the current UTC ``time``.

    JSON ``data`` (a dict or list) is encoded as model events are (datetimes in
    RFC 3339 with ``Z``, decimals as text, UUIDs, bytes as base64, ...); a
    value with no JSON form raises ``TypeError`` here. Object keys of ``data``
    that look like secrets are left out, at any depth,
    with a warning (``serialize.without_sensitive``): every event the bridge
    builds from data (``log()``, sources, model events, replies built here)
    comes through here. An event built with the SDK's ``CloudEvent`` class
    itself is sent as built.

    ``trusted`` is the bridge's own: its model events' data is JSON-ready and
    filtered already (``emit.sources``), and walking it twice more was a tenth
    of the bridge's own time per ``save()`` (bench/emit.py). Never pass it for
    data the bridge did not build.
    """
    if not trusted:
        # Imported here: the bindings import this module, serialize the ORM.
        from .bindings import is_json
        from .emit.serialize import json_ready, without_sensitive

        data = without_sensitive(data, origin=type)
        json_data = datacontenttype is None or is_json(datacontenttype)
        if isinstance(data, dict | list | tuple) and json_data:
            # Dates, decimals, UUIDs... as every event writes them; a value with
            # no JSON form raises here, in the caller, not at the commit.
            data = json_ready(data)
    attributes: dict[str, Any] = {
        "specversion": SPECVERSION,
        "id": id or new_id(),
        "source": source or conf.source(),
        "type": type,
        "time": time or datetime.now(UTC),
    }
    if subject:
        attributes["subject"] = subject
        # Kafka-backed brokers keep the order of one partition key: one object's
        # events stay in order (Partitioning extension); an explicit one wins.
        attributes[PARTITION_KEY] = subject
    if data is not None and datacontenttype:
        attributes["datacontenttype"] = datacontenttype
    for name, value in (extensions or {}).items():
        if not valid_extension_name(name):
            raise ValueError(f"{name!r} is not a valid CloudEvents extension name")
        attributes[name] = value
    cause = _cause.get()
    if cause is not None:  # built while a received event is handled
        for name, value in cause.items():
            attributes.setdefault(name, value)
    tracing.inject(attributes)  # the Distributed Tracing extension, when tracing
    if trusted:
        return _unchecked(attributes, data)
    return CloudEvent(attributes, data)


def _unchecked(attributes: dict[str, Any], data: Any) -> CloudEvent:
    """The SDK's event without its attribute checks, for attributes built valid
    here (a model event's: a tenth of the bridge's CPU per ``save()`` went to
    checking them). Only while the SDK's instances hold nothing but these two
    fields (:data:`_PLAIN`); else through its constructor."""
    if not _PLAIN:
        return CloudEvent(attributes, data)
    event = CloudEvent.__new__(CloudEvent)
    event._attributes = attributes
    event._data = data
    return event


def _plain_instances() -> bool:
    """True if an SDK event is its attributes and data, under the names
    :func:`_unchecked` sets (checked once, against the installed SDK)."""
    sample = CloudEvent({"id": "1", "source": "/", "type": "t"}, {"d": 1})
    fields = vars(sample)
    return (
        set(fields) == {"_attributes", "_data"}
        and fields["_attributes"] is sample.get_attributes()
        and fields["_data"] == sample.get_data()
    )


_PLAIN = _plain_instances()


def new_id() -> str:
    """A random (version 4) UUID as text, as ``str(uuid.uuid4())`` writes it.

    Formatted from 16 random bytes directly: a third of the time of building a
    ``UUID`` object only to print it, on every ``save()``.
    """
    value = int.from_bytes(os.urandom(16), "big") & _UUID4_CLEAR | _UUID4_SET
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


# RFC 9562, 5.4: version 4 in the top nibble of octet 6, variant 10 in octet 8.
_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)


@functools.lru_cache(maxsize=256)
def valid_extension_name(name: str) -> bool:
    """True if ``name`` may name an extension attribute (a core one may not)."""
    return (
        name not in CORE_ATTRIBUTES
        and name != "data"
        and bool(EXTENSION_NAME.match(name))
    )


def with_overrides(event: CloudEvent) -> CloudEvent:
    """The event with ``K_CE_OVERRIDES`` applied, as the sending process sees it.

    Applied when sending, not when building: with the outbox, the relay (say a
    Knative ContainerSource) is the process Knative gave the overrides to.
    They replace same-named extensions; core attributes are never touched.
    """
    extra = overrides()
    if not extra:
        return event
    attributes = {**event.get_attributes(), **extra}
    return CloudEvent(attributes, event.get_data())


def overrides() -> dict[str, str]:
    """The extensions from ``K_CE_OVERRIDES``, cleaned; empty when unset or invalid."""
    cleaned, _problems = parse_overrides(os.environ.get(OVERRIDES_VAR, ""))
    return dict(cleaned)


@functools.lru_cache(maxsize=8)
def parse_overrides(raw: str) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    """Knative's overrides JSON -> (extensions to set, problems found).

    Cached per raw value, so a bad value is logged once, not on every save().
    """
    cleaned: list[tuple[str, str]] = []
    problems: list[str] = []
    try:
        parsed = json.loads(raw) if raw.strip() else {}
    except ValueError as err:
        parsed, problems = {}, [f"not JSON ({err})"]
    extensions = parsed.get("extensions", {}) if isinstance(parsed, dict) else None
    if not isinstance(extensions, dict):
        problems.append("no 'extensions' object")
        extensions = {}
    for key, value in extensions.items():
        name = str(key).lower()  # as sdk-go's SetExtension does
        if name in CORE_ATTRIBUTES or name == "data":
            problems.append(f"cannot override the attribute {name!r}")
        elif not EXTENSION_NAME.match(name):
            problems.append(f"invalid extension name {key!r}")
        elif not isinstance(value, str):  # Knative's type is map[string]string
            problems.append(f"the value of {name!r} is not a string")
        elif NOT_IN_STRING.search(value):  # undecodable bytes become surrogates
            problems.append(f"the value of {name!r} holds a character it cannot")
        else:
            if len(name) > 20 or name[0].isdigit():  # a SHOULD, so not rejected
                logger.warning(
                    "%s: extension name %r should be at most 20 characters and "
                    "start with a letter",
                    OVERRIDES_VAR,
                    name,
                )
            cleaned.append((name, value))
    for problem in problems:
        logger.warning("%s: %s; ignored", OVERRIDES_VAR, problem)
    return tuple(cleaned), tuple(problems)


def canonical(value: Any) -> str:
    """The spec's canonical string form of an attribute value."""
    if isinstance(value, datetime):
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    if isinstance(value, bool):  # before int: True is an int
        return "true" if value else "false"
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    return str(value)


_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:)(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})\Z"
)


def parse_time(text: str) -> datetime:
    """An RFC 3339 timestamp (offset required); ValueError if it is not one.

    A leap second (``23:59:60``, which RFC 3339 allows and Python cannot hold)
    becomes the last microsecond before the next minute.
    """
    match = _RFC3339.match(text)
    if not match:
        raise ValueError(f"not an RFC 3339 timestamp: {text[:40]!r}")
    head, seconds, fraction, offset = match.groups()
    leap = seconds == "60"
    if leap:
        seconds, fraction = "59", ".999999"
    iso = f"{head}{seconds}{fraction or ''}{offset}".upper().replace("Z", "+00:00")
    value = datetime.fromisoformat(iso)
    if leap and not _ends_a_month(value):
        raise ValueError(f"not an RFC 3339 timestamp: {text[:40]!r}")
    return value


def _ends_a_month(value: datetime) -> bool:
    """RFC 3339 5.7: a leap second is the last second of a month, in UTC."""
    try:
        utc = value.astimezone(UTC)
    except OverflowError:  # beyond year 1 or 9999 once in UTC
        return False
    last_day = calendar.monthrange(utc.year, utc.month)[1]
    return (utc.day, utc.hour, utc.minute) == (last_day, 23, 59)


def from_attributes(attributes: dict[str, Any], data: Any = None) -> CloudEvent:
    """The SDK event for attributes already checked by the caller, invented nothing.

    The SDK's constructor fills in a missing ``id`` and ``time``; a receiver must
    not invent either, so a ``time`` the sender did not set is taken out again.
    """
    had_time = "time" in attributes
    event = CloudEvent(dict(attributes), data)
    if not had_time:
        event.get_attributes().pop("time", None)
    return event
