"""Every field type Django ships becomes JSON-safe; nothing is looked up twice."""

from __future__ import annotations

import base64
import datetime
import decimal
import json
import uuid

import pytest
from django.core.files.base import ContentFile

from django_cloudevents_bridge.emit import serialize
from tests.testapp.models import Article, Everything, Question, Tag

pytestmark = pytest.mark.django_db(transaction=True)


def test_every_field_type_round_trips_through_json(sent_events, tmp_path, settings):
    settings.MEDIA_ROOT = str(tmp_path)
    question = Question.objects.create(
        question_text="q", pub_date=datetime.datetime(2026, 1, 2, tzinfo=datetime.UTC)
    )
    article = Article.objects.create(title="a")
    tag = Tag.objects.create(name="t")
    token = uuid.uuid4()
    row = Everything(
        char="ü",
        text="line\nbreak",
        slug="a-slug",
        email="a@example.com",
        url="https://example.com/",
        integer=-5,
        big=2**62,
        small=7,
        positive=8,
        positive_big=2**40,
        positive_small=9,
        floating=1.5,
        decimal=decimal.Decimal("12345678.1234"),
        boolean=True,
        nullable_boolean=None,
        date=datetime.date(2026, 2, 3),
        datetime=datetime.datetime(2026, 2, 3, 4, 5, 6, 789000, tzinfo=datetime.UTC),
        time=datetime.time(4, 5, 6),
        duration=datetime.timedelta(days=1, seconds=2, microseconds=3),
        uuid=token,
        json={"nested": [1, "two", None], "n": 1.5},
        binary=b"\x00\xffbytes",
        ip="2001:db8::1",
        question=question,
        article=article,
        tag=tag,
    )
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
        "datetime": "2026-02-03T04:05:06.789000+00:00",
        "time": "04:05:06",
        "duration": "P1DT00H00M02.000003S",
        "uuid": str(token),
        "json": {"nested": [1, "two", None], "n": 1.5},
        "binary": base64.b64encode(b"\x00\xffbytes").decode(),
        "file": row.file.name,
        "image": None,
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
    assert data["integer"] is None and data["file"] is None and data["question"] is None
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
