"""Matching events: the CloudEvents Subscriptions API filter dialects, and CESQL.

A filter is what a Knative Trigger's ``filters:`` holds, as Python data:

    >>> from django_cloudevents_bridge import filters
    >>> paid = filters.compile([
    ...     {"prefix": {"type": "com.example.order."}},
    ...     {"not": {"suffix": {"type": ".test"}}},
    ...     {"cesql": "INT(amount) > 100"},
    ... ])
    >>> paid.matches({"type": "com.example.order.paid", "amount": "250"})
    True

Dialects (Subscriptions API 3.2.4.1, as Knative implements them): ``exact``,
``prefix`` and ``suffix`` compare attributes' string forms, case-sensitively,
and fail on a missing attribute (core attributes are always present); ``all``,
``any`` (each a non-empty list) and ``not`` (one filter) combine; ``cesql``
(Knative's name; the spec's optional ``sql`` too) holds a CESQL expression,
true only for a Boolean ``true`` without error. A list means "all of these".
Invalid filters raise :class:`InvalidFilter` when compiled, never when matching.

``from django_cloudevents_bridge.filters import cesql`` gives the CESQL engine on
its own (``cesql.compile(text)``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..events import CloudEvent
from . import cesql

__all__ = ["Filter", "InvalidFilter", "cesql", "compile"]

Attributes = Mapping[str, Any]
# What users write: one filter, or a list of filters that must all pass.
Spec = Mapping[str, Any] | Sequence[Mapping[str, Any]]
NAME = re.compile(r"[a-z0-9]+")  # the spec's attribute naming rule


class InvalidFilter(ValueError):
    """Not a Subscriptions API filter (a bad dialect, name, value or expression)."""


class Filter:
    """A compiled filter: ``matches(event)`` takes an SDK event or attributes."""

    def __init__(
        self,
        spec: Any,
        test: Callable[[Attributes], bool],
        types: frozenset[str] | None,
    ) -> None:
        self.spec = spec
        self._test = test
        #: The only ``type`` values that can pass, when the filter pins them with
        #: ``exact`` (an index for dispatch); None when any type may pass.
        self.types = types

    def __repr__(self) -> str:
        return f"<Filter {self.spec!r}>"

    def matches(self, event: Attributes | CloudEvent) -> bool:
        """True if the event passes."""
        attributes = event.get_attributes() if isinstance(event, CloudEvent) else event
        return self._test(attributes)


def compile(spec: Spec) -> Filter:
    """Check and compile a filter, or a list of filters that must all pass."""
    test, types = _compile(spec, "filters")
    return Filter(spec, test, types)


def _string(value: Any) -> str:
    """An attribute's string form, as brokers compare it."""
    value = cesql._primitive(value)
    if value.__class__ is bool:
        return "true" if value else "false"
    return str(value)


def _compile(
    spec: Any, where: str
) -> tuple[Callable[[Attributes], bool], frozenset[str] | None]:
    if isinstance(spec, list | tuple):
        return _all(spec, where, allow_empty=True)
    if not isinstance(spec, Mapping) or len(spec) != 1:
        raise InvalidFilter(
            f"{where}: a filter is an object with one dialect key "
            f"(exact, prefix, suffix, all, any, not, cesql), not {spec!r}"
        )
    ((dialect, body),) = spec.items()
    where = f"{where}.{dialect}"
    if dialect in ("exact", "prefix", "suffix"):
        return _attributes_test(dialect, body, where)
    if dialect == "all":
        return _all(body, where)
    if dialect == "any":
        return _any(body, where)
    if dialect == "not":
        if not isinstance(body, Mapping):
            raise InvalidFilter(f"{where}: one nested filter")
        test, _ = _compile(body, where)
        return (lambda attributes: not test(attributes)), None
    if dialect in ("cesql", "sql"):
        if not isinstance(body, str):
            raise InvalidFilter(f"{where}: a CESQL expression is a string")
        try:
            return cesql.compile(body).matches, None
        except cesql.ParseError as err:
            raise InvalidFilter(f"{where}: {err}") from err
    raise InvalidFilter(f"{where}: unknown filter dialect {dialect!r}")


_COMPARE: dict[str, Callable[[str, str], bool]] = {
    "exact": str.__eq__,
    "prefix": str.startswith,
    "suffix": str.endswith,
}


def _attributes_test(
    dialect: str, body: Any, where: str
) -> tuple[Callable[[Attributes], bool], frozenset[str] | None]:
    if not isinstance(body, Mapping) or not body:
        raise InvalidFilter(f"{where}: an object of attribute names and strings")
    for name, value in body.items():
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise InvalidFilter(f"{where}: {name!r} is not an attribute name")
        if not isinstance(value, str) or not value:
            raise InvalidFilter(f"{where}.{name}: the value must be a non-empty string")
    pairs = tuple(body.items())
    compare: Callable[[str, str], bool] = _COMPARE[dialect]

    def test(attributes: Attributes) -> bool:
        for name, expected in pairs:
            value = attributes.get(name)
            if value is None:  # a missing attribute fails the filter
                return False
            if value.__class__ is not str:
                value = _string(value)
            if not compare(value, expected):
                return False
        return True

    pinned = body.get("type") if dialect == "exact" else None
    return test, (frozenset({pinned}) if pinned else None)


def _tests(
    body: Any, where: str, allow_empty: bool = False
) -> list[tuple[Callable[[Attributes], bool], frozenset[str] | None]]:
    if not isinstance(body, list | tuple) or (not body and not allow_empty):
        raise InvalidFilter(f"{where}: a non-empty list of filters")
    return [_compile(item, f"{where}[{index}]") for index, item in enumerate(body)]


def _all(
    body: Any, where: str, allow_empty: bool = False
) -> tuple[Callable[[Attributes], bool], frozenset[str] | None]:
    compiled = _tests(body, where, allow_empty)
    tests = tuple(test for test, _ in compiled)
    types: frozenset[str] | None = None
    for _, pinned in compiled:  # every pin must hold: their intersection
        if pinned is not None:
            types = pinned if types is None else types & pinned
    if len(tests) == 1:
        return tests[0], types
    return (lambda attributes: all(test(attributes) for test in tests)), types


def _any(
    body: Any, where: str
) -> tuple[Callable[[Attributes], bool], frozenset[str] | None]:
    compiled = _tests(body, where)
    tests = tuple(test for test, _ in compiled)
    pins = [pinned for _, pinned in compiled]
    # Pinned only if every branch pins: then the union.
    types = None if None in pins else frozenset().union(*pins)  # type: ignore[arg-type]
    return (lambda attributes: any(test(attributes) for test in tests)), types
