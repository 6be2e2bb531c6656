"""Subscriptions API filter dialects (spec 3.2.4.1), with Knative's semantics."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from django_cloudevents_bridge import filters
from django_cloudevents_bridge.events import new

# The event of the CloudEvents conformance vectors (conformance/v1.yaml).
EVENT: dict[str, Any] = {
    "specversion": "1.0",
    "type": "com.example.someevent",
    "time": "2018-04-05T03:56:24Z",
    "id": "4321-4321-4321",
    "source": "/mycontext/subcontext",
    "comexampleextension1": "value",
    "comexampleextension2": '{"othervalue": 5}',
}


def passes(spec: Any, event: dict[str, Any] = EVENT) -> bool:
    return filters.compile(spec).matches(event)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"exact": {"type": "com.example.someevent"}}, True),
        ({"exact": {"type": "com.example.someEvent"}}, False),  # case-sensitive
        ({"exact": {"type": "com.example.someevent", "id": "4321-4321-4321"}}, True),
        ({"exact": {"type": "com.example.someevent", "id": "other"}}, False),
        ({"exact": {"comexampleextension1": "value"}}, True),
        ({"exact": {"subject": "x"}}, False),  # missing: fails
        ({"prefix": {"type": "com.example."}}, True),
        ({"prefix": {"source": "/mycontext/", "type": "com."}}, True),
        ({"prefix": {"type": "org."}}, False),
        ({"prefix": {"missing": "x"}}, False),
        ({"suffix": {"type": ".someevent"}}, True),
        ({"suffix": {"source": "/subcontext"}}, True),
        ({"suffix": {"source": "/context"}}, False),
        ({"suffix": {"time": "Z"}}, True),
        ({"all": [{"prefix": {"type": "com."}}, {"suffix": {"type": "event"}}]}, True),
        ({"all": [{"prefix": {"type": "com."}}, {"suffix": {"type": "nope"}}]}, False),
        (
            {"any": [{"exact": {"type": "nope"}}, {"exact": {"id": "4321-4321-4321"}}]},
            True,
        ),
        ({"any": [{"exact": {"type": "nope"}}, {"exact": {"id": "nope"}}]}, False),
        ({"not": {"exact": {"type": "com.example.someevent"}}}, False),
        ({"not": {"exact": {"subject": "x"}}}, True),  # missing: exact false, not true
        ({"cesql": "comexampleextension1 = 'value' AND EXISTS time"}, True),
        ({"cesql": "comexampleextension1 = 'other'"}, False),
        ({"cesql": "missing = 'x'"}, False),  # an error never passes
        ({"cesql": "NOT (missing = 'x')"}, False),
        ({"cesql": "1"}, False),  # not a Boolean
        ({"sql": "source LIKE '%context%'"}, True),  # the spec's optional name
        ([], True),  # no filters: everything passes
        ([{"prefix": {"type": "com."}}, {"not": {"suffix": {"type": "x"}}}], True),
        ([{"prefix": {"type": "com."}}, {"suffix": {"type": "x"}}], False),
        (
            {
                "all": [
                    {"any": [{"exact": {"id": "1"}}, {"prefix": {"id": "4321"}}]},
                    {"not": {"cesql": "comexampleextension1 LIKE 'x%'"}},
                ]
            },
            True,
        ),
    ],
)
def test_dialects(spec: Any, expected: bool) -> None:
    assert passes(spec) is expected


def test_values_are_compared_as_strings() -> None:
    event = {**EVENT, "count": 5, "flag": True, "at": datetime(2026, 1, 2, tzinfo=UTC)}
    assert passes({"exact": {"count": "5"}}, event)
    assert passes({"exact": {"flag": "true"}}, event)
    assert passes({"prefix": {"at": "2026-01-02T00:00:00"}}, event)
    assert passes({"suffix": {"at": "Z"}}, event)
    assert not passes({"exact": {"flag": "True"}}, event)


def test_matches_an_sdk_event() -> None:
    event = new("com.example.order.paid", source="/shop", subject="shop.order/7")
    spec = {
        "all": [{"prefix": {"type": "com.example."}}, {"suffix": {"subject": "/7"}}]
    }
    assert filters.compile(spec).matches(event)
    assert not filters.compile({"exact": {"subject": "shop.order/8"}}).matches(event)


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"exact": {"type": "a"}, "prefix": {"type": "b"}},  # two dialects in one
        {"exact": {}},
        {"exact": {"type": ""}},  # "MUST NOT be empty strings"
        {"exact": {"": "x"}},
        {"exact": {"Type": "x"}},  # not an attribute name
        {"exact": {"type": 5}},
        {"prefix": "com."},
        {"all": []},  # "at least one filter expression"
        {"any": []},
        {"all": {"exact": {"type": "a"}}},
        {"not": [{"exact": {"type": "a"}}]},
        {"cesql": "type ="},
        {"cesql": 5},
        {"regex": "^a"},  # unsupported dialect: rejected
        "type = 'a'",
        [{"exact": {"type": "a"}}, {"nope": {}}],
    ],
)
def test_invalid_filters_are_rejected_when_compiled(spec: Any) -> None:
    with pytest.raises(filters.InvalidFilter):
        filters.compile(spec)


def test_invalid_filter_says_where() -> None:
    with pytest.raises(filters.InvalidFilter, match=r"filters\.all\[1\]\.exact"):
        filters.compile({"all": [{"exact": {"type": "a"}}, {"exact": {"type": ""}}]})
    with pytest.raises(filters.InvalidFilter, match="at character"):
        filters.compile({"cesql": "a = = 1"})
    assert issubclass(filters.InvalidFilter, ValueError)


@pytest.mark.parametrize(
    ("spec", "types"),
    [
        ({"exact": {"type": "a"}}, {"a"}),
        ({"exact": {"source": "a"}}, None),
        ({"prefix": {"type": "a"}}, None),
        ([{"exact": {"type": "a"}}, {"prefix": {"id": "1"}}], {"a"}),
        ({"all": [{"exact": {"type": "a"}}, {"exact": {"type": "b"}}]}, set()),
        ({"any": [{"exact": {"type": "a"}}, {"exact": {"type": "b"}}]}, {"a", "b"}),
        ({"any": [{"exact": {"type": "a"}}, {"prefix": {"type": "b"}}]}, None),
        ({"not": {"exact": {"type": "a"}}}, None),
        ({"cesql": "type = 'a'"}, None),
    ],
)
def test_types_pinned_by_a_filter(spec: Any, types: set[str] | None) -> None:
    """The exact types a filter can pass: the index dispatch looks handlers up by."""
    compiled = filters.compile(spec)
    assert compiled.types == (None if types is None else frozenset(types))
    if compiled.types is not None:  # the index never hides a passing event
        for type_ in ("a", "b", "c"):
            event = {**EVENT, "type": type_, "id": "1"}
            if compiled.matches(event):
                assert type_ in compiled.types
