"""Building events: attributes, overrides, canonical strings, times."""

from __future__ import annotations

import datetime
import logging

import pytest

from django_cloudevents_bridge import events


@pytest.fixture(autouse=True)
def _no_overrides(monkeypatch):
    monkeypatch.delenv("K_CE_OVERRIDES", raising=False)
    monkeypatch.delenv("K_SOURCE", raising=False)
    events.parse_overrides.cache_clear()


def test_new_fills_required_attributes():
    event = events.new("com.example.thing", data={"a": 1})
    attributes = event.get_attributes()
    assert attributes["specversion"] == "1.0"
    assert attributes["source"] == "/tests"
    assert attributes["time"].utcoffset() == datetime.timedelta(0)
    assert attributes["datacontenttype"] == "application/json"
    assert events.new("t").get_id() != events.new("t").get_id()


def test_no_data_means_no_datacontenttype():
    assert events.new("t").get_datacontenttype() is None


def test_source_order_env_then_setting_then_default(monkeypatch, settings):
    monkeypatch.setenv("K_SOURCE", "https://example.com/from-env")
    assert events.new("t").get_source() == "https://example.com/from-env"
    settings.CLOUDEVENTS_ENV = {"SINK_VAR": "K_SINK", "SOURCE_VAR": "MY_SOURCE"}
    assert events.new("t").get_source() == "/tests"
    del settings.CLOUDEVENTS_SOURCE
    assert events.new("t").get_source() == "urn:django:tests"


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("", {}),
        ("   ", {}),
        ('{"extensions": {}}', {}),
        ("{}", {}),
        (
            '{"extensions": {"extra": "x", "Answer": "42"}}',
            {"extra": "x", "answer": "42"},
        ),
        ('{"extensions": {"n": 42, "ok": "1"}}', {"ok": "1"}),
    ],
)
def test_overrides_parsing(monkeypatch, raw, expected):
    monkeypatch.setenv("K_CE_OVERRIDES", raw)
    assert events.overrides() == expected


@pytest.mark.parametrize(
    "raw, problem",
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "no 'extensions' object"),
        ('{"extensions": "x"}', "no 'extensions' object"),
        ('{"extensions": {"type": "evil"}}', "cannot override the attribute 'type'"),
        ('{"extensions": {"data": "x"}}', "cannot override the attribute 'data'"),
        ('{"extensions": {"bad_name": "x"}}', "invalid extension name 'bad_name'"),
        ('{"extensions": {"flag": true}}', "the value of 'flag' is not a string"),
    ],
)
def test_bad_overrides_are_ignored_and_logged_once(monkeypatch, caplog, raw, problem):
    monkeypatch.setenv("K_CE_OVERRIDES", raw)
    with caplog.at_level(logging.WARNING, "django_cloudevents_bridge"):
        first = events.with_overrides(
            events.new("com.example.t", extensions={"djangoapp": "a"})
        )
        events.with_overrides(events.new("com.example.t"))
    assert first.get_type() == "com.example.t"
    assert first.get_extension("djangoapp") == "a"
    assert caplog.text.count(problem) == 1


def test_overrides_replace_extensions_but_never_core(monkeypatch):
    monkeypatch.setenv(
        "K_CE_OVERRIDES", '{"extensions": {"djangoapp": "over", "ID": "x", "ok": "1"}}'
    )
    built = events.new("t", extensions={"djangoapp": "mine"}, id="keep")
    assert built.get_extension("djangoapp") == "mine"  # not applied when building
    event = events.with_overrides(built)
    assert event.get_extension("djangoapp") == "over"
    assert event.get_extension("ok") == "1"
    assert event.get_id() == "keep"


@pytest.mark.parametrize(
    "value, text",
    [
        (
            datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
            "2026-01-02T03:04:05Z",
        ),
        (
            datetime.datetime(
                2026,
                1,
                2,
                3,
                4,
                5,
                tzinfo=datetime.timezone(datetime.timedelta(hours=2)),
            ),
            "2026-01-02T03:04:05+02:00",
        ),
        (True, "true"),
        (False, "false"),
        (42, "42"),
        (b"\x00\x01", "AAE="),
        ("text", "text"),
    ],
)
def test_canonical_strings(value, text):
    assert events.canonical(value) == text


LAST_MICROSECOND = datetime.datetime(2016, 12, 31, 23, 59, 59, 999999, datetime.UTC)


@pytest.mark.parametrize(
    "text",
    ["2016-12-31T23:59:60Z", "2016-12-31T23:59:60.5Z", "2016-12-31T15:59:60-08:00"],
)
def test_a_leap_second_is_a_valid_time(text):
    assert events.parse_time(text) == LAST_MICROSECOND


@pytest.mark.parametrize(
    "text",
    [
        "2016-12-31T12:00:60Z",  # a leap second ends a UTC minute...
        "2016-12-15T23:59:60Z",  # ... and a month
        "2016-12-31T23:59:61Z",
        "2016-12-31T23:59:59Z\n",
        "9999-12-31T23:59:60-01:00",  # past year 9999 once in UTC
        "0001-01-01T00:00:60+01:00",
    ],
)
def test_times_that_are_not_rfc3339(text):
    with pytest.raises(ValueError):
        events.parse_time(text)


def test_long_override_names_are_kept_with_a_warning(monkeypatch, caplog):
    monkeypatch.setenv(
        "K_CE_OVERRIDES", '{"extensions": {"averyveryverylongname1": "x"}}'
    )
    assert events.overrides() == {"averyveryverylongname1": "x"}
    assert "at most 20 characters" in caplog.text


@pytest.mark.parametrize("name", ["type", "id", "data", "Bad", "snake_case", ""])
def test_new_rejects_invalid_extension_names(name):
    with pytest.raises(ValueError, match="not a valid CloudEvents extension name"):
        events.new("t", extensions={name: "x"})
