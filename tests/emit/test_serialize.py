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


@pytest.mark.parametrize(
    "name", ["password", "PASSWORD", "old_password", "api_token", "client_secret"]
)
def test_sensitive_names(name):
    assert serialize.is_sensitive(name)


def test_ordinary_names_are_not_sensitive():
    assert not serialize.is_sensitive("username")
    assert not serialize.is_sensitive("passage")
