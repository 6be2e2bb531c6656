"""Every field type Django ships becomes JSON-safe; nothing is looked up twice."""

from __future__ import annotations

import base64
import datetime
import decimal
import json
import uuid

import pytest
from django.core.files.base import ContentFile

# Range, not NumericRange: without django.contrib.postgres installed, psycopg
# would send a NumericRange as a numrange, which int4range cannot be cast from.
from psycopg.types.range import DateRange, NumericRange, Range, TimestamptzRange

from django_cloudevents_bridge.emit import serialize
from tests.testapp.models import (
    Article,
    Everything,
    PostgresStoredForm,
    Question,
    Tag,
    every_value,
)

pytestmark = pytest.mark.django_db(transaction=True)


def test_every_field_type_round_trips_through_json(sent_events, tmp_path, settings):
    settings.MEDIA_ROOT = str(tmp_path)
    question = Question.objects.create(
        question_text="q", pub_date=datetime.datetime(2026, 1, 2, tzinfo=datetime.UTC)
    )
    article = Article.objects.create(title="a")
    tag = Tag.objects.create(name="t")
    values = every_value()
    row = Everything(**values, question=question, article=article, tag=tag)
    row.file.save("hello.txt", ContentFile(b"hi"), save=False)
    sent_events.clear()
    row.save()

    [event] = sent_events
    data = event.get_data()["data"]
    assert json.loads(json.dumps(data, allow_nan=False)) == data
    assert data == {
        "id": row.pk,
        "char": "ü",
        "text": "line\nbreak",
        "slug": "a-slug",
        "email": "a@example.com",
        "url": "https://example.com/",
        "integer": -5,
        "big": 2**62,
        "small": 7,
        "positive": 8,
        "positive_big": 2**40,
        "positive_small": 9,
        "floating": 1.5,
        "decimal": "12345678.1234",
        "boolean": True,
        "nullable_boolean": None,
        "date": "2026-02-03",
        "datetime": "2026-02-03T04:05:06.789000Z",
        "time": "04:05:06",
        "duration": "P1DT00H00M02.000003S",
        "uuid": str(values["uuid"]),
        "json": {"nested": [1, "two", None], "n": 1.5},
        "binary": base64.b64encode(b"\x00\xffbytes").decode(),
        "file": row.file.name,
        "image": "",  # what the column holds for no file
        "file_path": "",
        "ip": "2001:db8::1",
        "question": question.pk,
        "article": str(article.pk),
        "tag": "t",
    }
    assert row.file.name.startswith("hello")


def test_empty_row_is_all_nulls_and_defaults(sent_events):
    row = Everything.objects.create()
    [event] = sent_events
    data = event.get_data()["data"]
    assert data["id"] == row.pk
    assert data["integer"] is None and data["question"] is None
    assert data["file"] == ""  # a FileField stores "" for no file, never NULL
    assert data["boolean"] is False


@pytest.mark.parametrize(
    "value, expected",
    [
        (float("nan"), "nan"),
        (float("inf"), "inf"),
        ({"when": datetime.date(2026, 1, 1)}, {"when": "2026-01-01"}),
        ({1: decimal.Decimal("1.10")}, {"1": "1.10"}),
        ((1, 2), [1, 2]),
        (memoryview(b"ab"), "YWI="),
        (datetime.timedelta(minutes=-1), "-P0DT00H01M00S"),
        (object, str(object)),
    ],
)
def test_to_json_safe_edge_values(value, expected):
    assert serialize.to_json_safe(value) == expected


def test_fields_and_exclude():
    question = Question(pk=3, question_text="x", pub_date=None)
    assert serialize.to_dict(question, fields=["question_text"]) == {
        "question_text": "x"
    }
    assert serialize.to_dict(question, exclude=["pub_date"]) == {
        "id": 3,
        "question_text": "x",
    }


# Keys matched as whole words: (key, sensitive?). Every row is a reason.
SENSITIVE_KEYS = [
    ("password", True),
    ("PASSWORD", True),
    ("old_password", True),
    ("user_password_hash", True),
    ("newpassword", True),  # "*password*" is a glob: any key holding it
    ("passwords", True),
    ("passwd", True),
    ("passphrase", True),
    ("token", True),
    ("accessToken", True),  # camelCase splits
    ("refresh_token", True),
    ("id-token", True),
    ("api_token", True),
    ("accesstoken", True),  # a word ending in "token"
    ("usertoken_value", True),
    ("csrfmiddlewaretoken", True),
    ("api_key", True),  # adjacent words run together: api + key
    ("apiKey", True),
    ("X-Api-Key", True),  # a header name
    ("APIKey", True),  # an acronym, then a word
    ("apikey", True),
    ("my_api_key_v2", True),
    ("api_keys", True),
    ("private_key", True),
    ("privateKey", True),
    ("secret", True),
    ("client_secret", True),
    ("clientSecret", True),
    ("secretKey", True),
    ("mysecret", True),  # a word ending in "secret"
    ("stripeapikey", True),  # "*apikey*": anywhere
    ("credentials", True),
    ("aws.credential", True),
    ("auth", True),
    ("basic_auth", True),
    ("HTTPAuth", True),
    ("Authorization", True),
    ("bearer", True),
    ("Cookie", True),
    ("set_cookies", True),
    ("csrf", True),
    ("sessionid", True),  # Django's session cookie
    ("session_key", True),
    ("ssn", True),
    ("ssnLast4", True),  # digits split too
    ("password2", True),
    ("refresh_tokens", True),  # "tokens" after a credential's word
    ("access_tokens", True),
    ("api_tokens", True),
    ("idTokens", True),
    ("user_access_tokens", True),
    ("db_pwd", True),
    ("smtp_pass", True),  # "pass" as a whole word
    ("pass_word", True),  # words run together
    ("passWord", True),
    ("passwd", True),
    # Not secrets, though a substring match took (or would take) some of them:
    ("tokens_used", False),
    ("max_tokens", False),
    ("tokenizer", False),
    ("tokens", False),  # a count as often as not: add it if yours are tokens
    ("author", False),
    ("authored_by", False),
    ("oauth_provider", False),
    ("is_authenticated", False),
    ("secretary", False),
    ("passage", False),
    ("passenger_count", False),
    ("bypass", False),
    ("compass_heading", False),
    ("tokens_per_second", False),
    ("username", False),
    ("public_key", False),
    ("keyboard", False),
    ("monkey", False),
    ("session", False),  # a conference session, a session count
    ("session_count", False),
    ("signature", False),  # add it with CLOUDEVENTS_SENSITIVE_FIELDS if yours is
    ("id", False),
    ("", False),
]


@pytest.mark.parametrize(("key", "sensitive"), SENSITIVE_KEYS)
def test_keys_are_matched_by_whole_words(key, sensitive):
    assert serialize.is_sensitive(key) is sensitive


@pytest.mark.parametrize(
    ("key", "words"),
    [
        ("X-Api-Key", ["x", "api", "key"]),
        ("apiKey2", ["api", "key", "2"]),
        ("HTTPAuthHeader", ["http", "auth", "header"]),
        ("user.password_hash", ["user", "password", "hash"]),
        ("__weird--key__", ["weird", "key"]),
        ("Größe", ["größe"]),
    ],
)
def test_words_of_a_key(key, words):
    assert serialize.words(key) == words


def test_ordinary_names_are_not_sensitive():
    assert not serialize.is_sensitive("username")
    assert not serialize.is_sensitive("passage")


# -- event data equals the committed row ---------------------------------------

UTC = datetime.UTC
PLUS_2 = datetime.timezone(datetime.timedelta(hours=2))
MINUS_5 = datetime.timezone(datetime.timedelta(hours=-5))
NAIVE = pytest.mark.filterwarnings("ignore:DateTimeField .* received a naive")


def sqlite_or_pg(sqlite, postgresql):
    """What the test database returns: SQLite reads a decimal back from a float."""
    from django.db import connection

    return sqlite if connection.vendor == "sqlite" else postgresql


# (attribute, assigned value, what the event must say). The expected value is
# also checked against the row reloaded from the database, so both agree.
DRIFT = [
    ("decimal", decimal.Decimal("1E+1"), "10.0000"),
    ("decimal", decimal.Decimal("0.001"), "0.0010"),
    ("decimal", decimal.Decimal("0.00001"), "0.0000"),
    # SQLite keeps -0.00001 as a float, which Django reads back as -0.0000.
    ("decimal", decimal.Decimal("-0.00001"), lambda: sqlite_or_pg("-0.0000", "0.0000")),
    ("decimal", decimal.Decimal("0.00005"), lambda: sqlite_or_pg("0.0000", "0.0001")),
    (
        "decimal",
        decimal.Decimal("-2.00015"),
        lambda: sqlite_or_pg("-2.0002", "-2.0002"),
    ),
    (
        "decimal",
        decimal.Decimal("12345678.12345"),
        lambda: sqlite_or_pg("12345678.1234", "12345678.1235"),
    ),
    ("decimal", "12.5", "12.5000"),
    ("decimal", 1.1, "1.1000"),
    ("decimal", 7, "7.0000"),
    ("integer", "5", 5),
    ("integer", 5.7, 5),
    ("integer", True, 1),
    ("big", "9007199254740993", 9007199254740993),
    ("floating", "1.5", 1.5),
    ("floating", decimal.Decimal("0.1"), 0.1),
    ("floating", 3, 3.0),
    ("floating", float("nan"), lambda: sqlite_or_pg(None, "nan")),
    ("boolean", 1, True),
    ("boolean", "f", False),
    ("nullable_boolean", 0, False),
    ("char", 42, "42"),
    ("text", 1.5, "1.5"),
    ("date", datetime.datetime(2026, 2, 3, 23, 30, tzinfo=MINUS_5), "2026-02-04"),
    ("date", "2026-02-03", "2026-02-03"),
    (
        "datetime",
        datetime.datetime(2026, 2, 3, 6, 5, 6, 7, tzinfo=PLUS_2),
        "2026-02-03T04:05:06.000007Z",
    ),
    ("datetime", "2026-02-03T04:05:06+02:00", "2026-02-03T02:05:06Z"),
    pytest.param(
        "datetime",
        datetime.datetime(2026, 2, 3, 4, 5, 6),
        "2026-02-03T04:05:06Z",
        marks=NAIVE,
    ),
    pytest.param(
        "datetime", datetime.date(2026, 2, 3), "2026-02-03T00:00:00Z", marks=NAIVE
    ),
    ("time", datetime.datetime(2026, 2, 3, 4, 5, 6, 123456), "04:05:06.123456"),
    ("time", "04:05", "04:05:00"),
    ("duration", datetime.timedelta(seconds=90000), "P1DT01H00M00S"),
    (
        "uuid",
        "12345678123456781234567812345678",
        "12345678-1234-5678-1234-567812345678",
    ),
    (
        "uuid",
        "{12345678-1234-5678-1234-56781234567A}",
        "12345678-1234-5678-1234-56781234567a",
    ),
    ("json", {"k": (1, 2), 3: "x", "d": None}, {"k": [1, 2], "3": "x", "d": None}),
    ("json", "text", "text"),
    ("binary", bytearray(b"ab"), "YWI="),
    ("binary", memoryview(b"\x00"), "AA=="),
    ("ip", "2001:0DB8:0000::0001", "2001:db8::1"),
    ("ip", "", None),
    ("file", "", ""),
    ("file", "docs/a.txt", "docs/a.txt"),
    ("file_path", __import__("pathlib").Path("/tmp/x"), "/tmp/x"),
    (
        "question_id",
        lambda: str(Question.objects.get().pk),
        lambda: Question.objects.get().pk,
    ),
    ("question", lambda: Question.objects.get(), lambda: Question.objects.get().pk),
    ("tag", lambda: Tag.objects.get(), "t"),
    (
        "article_id",
        lambda: str(Article.objects.get().pk).upper(),
        lambda: str(Article.objects.get().pk),
    ),
]


def reloaded(row):
    """The row as the database now holds it, serialized value by value."""
    names = [field.name for field in Everything._meta.concrete_fields]
    values = Everything.objects.filter(pk=row.pk).values(*names).get()
    return {name: serialize.to_json_safe(value) for name, value in values.items()}


@pytest.mark.parametrize("attribute, value, expected", DRIFT)
def test_event_data_is_the_committed_row(sent_events, attribute, value, expected):
    Question.objects.create(question_text="q", pub_date=datetime.datetime.now(UTC))
    Article.objects.create(title="a")
    Tag.objects.create(name="t")
    row = Everything()
    setattr(row, attribute, value() if callable(value) else value)
    sent_events.clear()
    row.save()

    [event] = sent_events
    data = event.get_data()["data"]
    name = Everything._meta.get_field(attribute.removesuffix("_id")).name
    expected = expected() if callable(expected) else expected
    # As JSON text: True == 1 and 3 == 3.0 in Python, not on the wire.
    assert json.dumps(data[name]) == json.dumps(expected)
    assert as_json(data) == as_json(reloaded(row))


def as_json(data):
    return json.dumps(data, sort_keys=True, allow_nan=False)


def test_an_updated_row_is_sent_as_stored_too(sent_events):
    row = Everything.objects.create(decimal=decimal.Decimal("1"))
    row.decimal = decimal.Decimal("2.00004")
    row.integer = "12"
    row.save(update_fields=["decimal", "integer"])

    data = sent_events[-1].get_data()["data"]
    assert (data["decimal"], data["integer"]) == ("2.0000", 12)
    assert as_json(data) == as_json(reloaded(row))


def ranged(lower, upper, bounds="[)"):
    return {"lower": lower, "upper": upper, "bounds": bounds}


EMPTY = {"lower": None, "upper": None, "bounds": ""}
POSTGRES_DRIFT = [
    ("decimals", [decimal.Decimal("1E+1"), "0.005", None], ["10.00", "0.01", None]),
    ("integers", (1, 5), ranged(1, 5)),
    ("integers", lambda: Range(1, 5, "[]"), ranged(1, 6)),
    ("integers", lambda: Range(1, 5, "()"), ranged(2, 5)),
    ("integers", lambda: Range(None, 5, "[]"), ranged(None, 6, "()")),
    ("integers", lambda: Range(3, 4, "()"), EMPTY),
    ("integers", lambda: Range(empty=True), EMPTY),
    (
        "days",
        lambda: DateRange(datetime.date(2026, 1, 1), datetime.date(2026, 1, 31), "[]"),
        ranged("2026-01-01", "2026-02-01"),
    ),
    ("amounts", (decimal.Decimal("1.50"), 2), ranged("1.50", "2", "[]")),
    ("amounts", lambda: NumericRange(2, 2, "[)"), EMPTY),
    (
        "moments",
        lambda: TimestamptzRange(datetime.datetime(2026, 1, 1, 2, tzinfo=PLUS_2), None),
        ranged("2026-01-01T00:00:00Z", None, "[)"),
    ),
    ("clock", datetime.time(4, 5, 6, tzinfo=PLUS_2), "04:05:06"),
]


@pytest.mark.postgres
@pytest.mark.parametrize("attribute, value, expected", POSTGRES_DRIFT)
def test_postgres_fields_are_sent_as_stored(sent_events, attribute, value, expected):
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's own field types")
    row = PostgresStoredForm(**{attribute: value() if callable(value) else value})
    row.save()

    [event] = sent_events
    data = event.get_data()["data"]
    assert json.dumps(data[attribute]) == json.dumps(expected)
    names = [field.name for field in PostgresStoredForm._meta.concrete_fields]
    values = PostgresStoredForm.objects.filter(pk=row.pk).values(*names).get()
    assert as_json(data) == as_json(serialize.to_json_safe(values))


# -- one JSON encoding ----------------------------------------------------------


def test_named_events_model_events_and_time_share_one_datetime_encoding(sent_events):
    from django_cloudevents_bridge import log
    from django_cloudevents_bridge.bindings.jsonformat import to_json

    when = datetime.datetime(2026, 2, 3, 4, 5, 6, 789, tzinfo=UTC)
    log("testapp.Signup", {"email": "a@b.c", "at": when})
    Question.objects.create(question_text="q", pub_date=when)

    named, model = sent_events
    assert named.get_data()["at"] == "2026-02-03T04:05:06.000789Z"
    assert model.get_data()["data"]["pub_date"] == "2026-02-03T04:05:06.000789Z"
    time = json.loads(to_json(model))["time"]
    assert time == serialize.rfc3339(model.get_time()) and time.endswith("Z")


ENCODED = [
    (datetime.datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC), "2026-02-03T04:05:06Z"),
    (
        datetime.datetime(2026, 2, 3, 4, 5, 6, 1, tzinfo=UTC),
        "2026-02-03T04:05:06.000001Z",
    ),
    (
        datetime.datetime(2026, 2, 3, 4, 5, 6, tzinfo=PLUS_2),
        "2026-02-03T04:05:06+02:00",
    ),
    (datetime.time(4, 5, 6, 120000), "04:05:06.120000"),
    (datetime.date(2026, 2, 3), "2026-02-03"),
    (datetime.timedelta(hours=1), "P0DT01H00M00S"),
    (decimal.Decimal("1E+1"), "10"),
    (decimal.Decimal("0E-8"), "0.00000000"),
    (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
    (b"ab", "YWI="),
]


@pytest.mark.parametrize("value, expected", ENCODED)
def test_the_encoder_and_to_json_safe_agree(value, expected):
    assert serialize.to_json_safe(value) == expected
    assert json.loads(json.dumps({"v": value}, cls=serialize.JSONEncoder)) == {
        "v": expected
    }


def test_the_encoder_refuses_what_has_no_json_form():
    with pytest.raises(TypeError):
        json.dumps(object(), cls=serialize.JSONEncoder)


@pytest.mark.parametrize(
    ("extra", "key", "sensitive"),
    [
        (["ssn"], "ssn", True),
        (["signature"], "webhook_signature", True),  # a word: anywhere in the key
        (["signature"], "signatures", False),
        (["credit_card"], "creditCardNumber", True),  # words run together
        (["credit_card"], "creditcard", True),
        (["credit_card"], "card", False),
        (["tokens"], "tokens_used", True),  # the old rule, for one word
        (["*secret*"], "secretary", True),  # a glob: the whole key, as before
        (["dob"], "DOB", True),
        ("signature", "s", False),  # a string is one entry, not its letters
        ("signature", "signature_url", True),
        (["pin"], "pinned", False),
    ],
)
def test_the_setting_adds_words_and_globs(settings, extra, key, sensitive):
    settings.CLOUDEVENTS_SENSITIVE_FIELDS = extra
    assert serialize.is_sensitive(key) is sensitive
    # The built-in entries always apply, whatever the setting holds.
    assert serialize.is_sensitive("api_key")


def test_without_sensitive_walks_objects_and_arrays_and_warns_once(caplog):
    serialize._reported.clear()
    data = {
        "profile": {"token": "t", "name": "ann", "tokens_used": 3},
        "items": [{"api_key": "k", "n": 1}, ("x", {"Password": "p"})],
        "author": "ann",
        "note": "password: hunter2",  # values are data: only keys are matched
    }

    cleaned = serialize.without_sensitive(data, origin="shop.Order")
    serialize.without_sensitive(data, origin="shop.Order")

    assert cleaned == {
        "profile": {"name": "ann", "tokens_used": 3},
        "items": [{"n": 1}, ["x", {}]],
        "author": "ann",
        "note": "password: hunter2",
    }
    assert data["profile"]["token"] == "t"  # the caller's data is left alone
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        f"shop.Order: the key {key!r} looks like a secret and is not sent (see "
        "CLOUDEVENTS_SENSITIVE_FIELDS)"
        for key in ("token", "api_key", "Password")
    ]


def test_keys_from_hostile_input_cost_bounded_memory(caplog):
    serialize._reported.clear()
    check = serialize._matcher(serialize.conf.sensitive_fields())
    long_key = "x_" * 100 + "token"  # longer than any key remembered
    for n in range(5000):
        serialize.without_sensitive({f"password{n}": 1, long_key: 2}, origin="o")
    assert len(serialize._reported) <= serialize._REPORTED_MAX
    assert len(check) <= 4096 and long_key not in check
    assert all(len(r.getMessage()) < 300 for r in caplog.records)
