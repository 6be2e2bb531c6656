"""Model signals become CloudEvents with the seed's shape, spec-correct."""

from __future__ import annotations

import datetime
import re

import django
import pytest
from django.db import connection, transaction
from django.db.models import F, Value
from django.db.models.expressions import CombinedExpression
from django.db.models.functions import Lower
from django.db.models.signals import post_save
from django.test.utils import CaptureQueriesContext

from django_cloudevents_bridge import events, send_cloudevent
from django_cloudevents_bridge.bindings import jsonformat
from django_cloudevents_bridge.emit import serialize
from tests.testapp.models import (
    Article,
    Choice,
    Everything,
    Profile,
    Question,
    StoredForm,
    Summary,
    Tag,
)

pytestmark = pytest.mark.django_db(transaction=True)

UUID = re.compile(
    r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
)


def make_question(text: str = "What's up?") -> Question:
    return Question.objects.create(
        question_text=text,
        pub_date=datetime.datetime(2026, 11, 1, 9, 30, tzinfo=datetime.UTC),
    )


def test_post_save_event_has_the_seed_shape(sent_events):
    question = make_question()

    [event] = sent_events
    assert event.get_type() == "django.orm.post_save"
    assert event.get_specversion() == "1.0"
    assert event.get_source() == "/tests"
    assert event.get_subject() == f"DCE:testapp.question/{question.pk}"
    assert UUID.match(event.get_id())
    assert event.get_time().tzinfo is not None
    assert event.get_datacontenttype() == "application/json"
    assert event.get_extension("djangoapp") == "testapp"
    assert event.get_extension("djangomodel") == "question"
    assert event.get_data() == {
        "data": {
            "id": question.pk,
            "question_text": "What's up?",
            "pub_date": "2026-11-01T09:30:00Z",
        },
        "signal_kwargs": {
            "created": True,
            "update_fields": None,
            "raw": False,
            "using": "default",
        },
        "db_table": "testapp_question",
    }


def test_update_and_delete(sent_events):
    question = make_question()
    question.question_text = "Changed"
    question.save(update_fields=["question_text"])
    pk = question.pk
    question.delete()

    types = [e.get_type() for e in sent_events]
    assert types == [
        "django.orm.post_save",
        "django.orm.post_save",
        "django.orm.post_delete",
    ]
    update, delete = sent_events[1], sent_events[2]
    assert update.get_data()["signal_kwargs"]["created"] is False
    assert update.get_data()["signal_kwargs"]["update_fields"] == ["question_text"]
    assert delete.get_subject() == f"DCE:testapp.question/{pk}"
    assert delete.get_data()["data"]["question_text"] == "Changed"
    assert delete.get_data()["signal_kwargs"] == {"using": "default"}
    assert len({e.get_id() for e in sent_events}) == 3


def test_foreign_key_is_its_raw_pk_without_a_query(
    sent_events, django_assert_num_queries
):
    question = make_question()
    sent_events.clear()
    choice = Choice(question_id=question.pk, choice_text="Yes")
    with django_assert_num_queries(1):  # the INSERT, nothing for the FK
        choice.save()

    [event] = sent_events
    assert event.get_data()["data"] == {
        "id": choice.pk,
        "question": question.pk,
        "choice_text": "Yes",
        "votes": 0,
    }


def test_cascade_delete_sends_each_row(sent_events):
    question = make_question()
    Choice.objects.create(question=question, choice_text="A")
    sent_events.clear()
    question.delete()
    assert sorted(e.get_subject().split("/")[0] for e in sent_events) == [
        "DCE:testapp.choice",
        "DCE:testapp.question",
    ]
    assert {e.get_type() for e in sent_events} == {"django.orm.post_delete"}


def test_m2m_changed_carries_action_model_and_pk_set(sent_events):
    article = Article.objects.create(title="Spec")
    tags = [Tag.objects.create(name=n) for n in ("b", "a")]
    sent_events.clear()
    article.tags.add(*tags)
    article.tags.remove(tags[0])
    article.tags.clear()

    m2m = [e for e in sent_events if e.get_type() == "django.orm.m2m_changed"]
    assert [e.get_data()["signal_kwargs"]["action"] for e in m2m] == [
        "post_add",
        "post_remove",
        "post_clear",
    ]
    first = m2m[0]
    assert first.get_subject() == f"DCE:testapp.article/{article.pk}"
    assert first.get_data()["signal_kwargs"] == {
        "action": "post_add",
        "reverse": False,
        "model": "testapp.tag",
        "pk_set": ["a", "b"],
        "using": "default",
    }
    assert first.get_data()["data"]["id"] == str(article.pk)
    assert m2m[2].get_data()["signal_kwargs"]["pk_set"] == []


def test_connecting_twice_sends_once(sent_events):
    # Question is connected by hand in testapp.models; connect it again.
    post_save.connect(send_cloudevent, sender=Question)
    make_question()
    assert len(sent_events) == 1


def test_model_declared_and_connected_by_hand_sends_once(sent_events):
    # Article.tags.through is in CLOUDEVENTS_MODELS and connected in testapp.models.
    article = Article.objects.create(title="Twice?")
    sent_events.clear()
    article.tags.add(Tag.objects.create(name="x"))
    assert [e.get_type() for e in sent_events].count("django.orm.m2m_changed") == 1


def test_rolled_back_transaction_sends_nothing(sent_events):
    with pytest.raises(RuntimeError), transaction.atomic():
        make_question()
        raise RuntimeError("roll back")
    assert sent_events == []


def test_nothing_is_sent_before_commit_and_inner_rollback_is_dropped(sent_events):
    with transaction.atomic():
        kept = make_question("kept")
        try:
            with transaction.atomic():
                make_question("savepoint rolled back")
                raise ValueError
        except ValueError:
            pass
        assert sent_events == []  # nothing before the outer commit
    assert [e.get_data()["data"]["question_text"] for e in sent_events] == ["kept"]
    assert sent_events[0].get_subject().endswith(f"/{kept.pk}")


def test_password_like_fields_are_never_sent(sent_events, caplog):
    serialize._plan.cache_clear()
    serialize._reported.clear()
    Profile.objects.create(
        username="ann",
        password="pbkdf2_sha256$secret-hash",
        api_token="tok",
        client_secret="shh",
        nickname="excluded",
        ssn="123-45-6789",
    )
    [event] = sent_events
    assert event.get_data()["data"] == {
        "id": event.get_data()["data"]["id"],
        "username": "ann",
    }
    assert b"secret-hash" not in repr(event.get_attributes()).encode()
    # A field left out is logged once, as a data key is.
    for field in ("password", "api_token", "client_secret", "ssn"):
        assert f"testapp.Profile: the key {field!r} looks like a secret" in caplog.text


def test_fields_option_and_custom_data_function(sent_events):
    Summary.objects.create(title="hello", body="12345")
    [event] = sent_events
    # The data function wins over "fields"; its result is made JSON-safe.
    assert event.get_data()["data"] == {"title": "HELLO", "length": 5}


def test_a_data_function_cannot_send_secrets(sent_events, settings, caplog):
    settings.CLOUDEVENTS_MODELS = {
        "testapp.Summary": {"data": "tests.emit.test_sources.leaky"}
    }
    settings.CLOUDEVENTS_SENSITIVE_FIELDS = ["ssn"]
    Summary.objects.create(title="hello")
    [event] = sent_events
    assert event.get_data()["data"] == {
        "title": "hello",
        "nested": [{"kept": 1}],
        "owner": {"name": "ann"},
    }
    assert "testapp.Summary: the key 'Password' looks like a secret" in caplog.text


def leaky(instance, signal_kwargs):
    return {
        "title": instance.title,
        "Password": "hunter2",
        "nested": [{"api_token": "t", "kept": 1}],
        "owner": {"name": "ann", "SSN": "123", "client_secret": "s"},
    }


def test_deferred_fields_are_skipped_not_loaded(sent_events, django_assert_num_queries):
    question = make_question()
    sent_events.clear()
    partial = Question.objects.only("id").get(pk=question.pk)
    with django_assert_num_queries(1):  # the UPDATE only
        partial.save(update_fields=[])  # no-op save still fires nothing
        partial.question_text = "new"
        partial.save(update_fields=["question_text"])
    [event] = sent_events
    assert event.get_data()["data"] == {"id": question.pk, "question_text": "new"}


def test_broken_serialization_never_breaks_save(sent_events, settings, caplog):
    settings.CLOUDEVENTS_MODELS = {
        "testapp.Summary": {"data": "tests.emit.test_sources.explode"}
    }
    summary = Summary.objects.create(title="still saved")
    assert Summary.objects.filter(pk=summary.pk).exists()
    assert sent_events == []
    assert "Could not build a CloudEvent" in caplog.text


def explode(instance, signal_kwargs):
    raise ZeroDivisionError("boom")


def test_reverse_m2m_sends_only_the_other_sides_pk(sent_events):
    article = Article.objects.create(title="Spec")
    tag = Tag.objects.create(name="secret-tag")
    sent_events.clear()
    tag.article_set.add(article)  # changed from the unregistered side
    [event] = [e for e in sent_events if e.get_type() == "django.orm.m2m_changed"]
    assert event.get_subject() == "DCE:testapp.tag/secret-tag"
    assert event.get_data()["data"] == {"name": "secret-tag"}
    assert event.get_data()["signal_kwargs"]["reverse"] is True
    assert event.get_data()["signal_kwargs"]["pk_set"] == [str(article.pk)]


# -- expressions: the stored value, never a repr ---------------------------------


def test_an_f_expression_is_sent_as_the_value_it_stored(sent_events):
    question = make_question()
    choice = Choice.objects.create(question=question, choice_text="Yes", votes=4)
    sent_events.clear()
    choice.votes = F("votes") + 1
    with CaptureQueriesContext(connection) as queries:
        choice.save()
    # Django 6 reads the stored value back itself (UPDATE ... RETURNING); before
    # it, the instance keeps the expression and the bridge reads the value once.
    refreshed_by_django = not isinstance(choice.votes, CombinedExpression)
    assert len(queries) == (1 if refreshed_by_django else 2)

    [event] = sent_events
    assert event.get_data()["data"] == {
        "id": choice.pk,
        "question": question.pk,
        "choice_text": "Yes",
        "votes": 5,
    }
    assert "F(" not in str(event.get_data())
    assert refreshed_by_django or django.VERSION < (6,)


def test_a_save_without_expressions_costs_no_query(
    sent_events, django_assert_num_queries
):
    choice = Choice.objects.create(question=make_question(), choice_text="Yes")
    choice.votes = 7
    with django_assert_num_queries(1):  # the UPDATE only
        choice.save()
    assert sent_events[-1].get_data()["data"]["votes"] == 7


def test_expressions_in_an_insert_and_functions(sent_events):
    question = make_question()
    choice = Choice.objects.create(
        question=question, choice_text=Value("MiXed"), votes=Value(2) + 3
    )
    choice.choice_text = Lower("choice_text")
    choice.save(update_fields=["choice_text"])

    created, updated = (event.get_data()["data"] for event in sent_events[-2:])
    assert (created["choice_text"], created["votes"]) == ("MiXed", 5)
    assert (updated["choice_text"], updated["votes"]) == ("mixed", 5)


def test_an_expression_that_cannot_be_read_back_is_left_out(sent_events):
    choice = Choice.objects.create(question=make_question(), choice_text="Yes")
    Choice.objects.filter(pk=choice.pk).delete()  # the row is gone: nothing to read
    sent_events.clear()
    choice.votes = F("votes") + 1
    post_save.send(Choice, instance=choice, created=False, using="default")

    [event] = sent_events
    assert event.get_data()["data"] == {
        "id": choice.pk,
        "question": choice.question_id,
        "choice_text": "Yes",
    }


def test_a_data_function_never_sends_an_expression(sent_events, settings):
    settings.CLOUDEVENTS_MODELS = {
        "testapp.Summary": {"data": "tests.emit.test_sources.with_expression"}
    }
    Summary.objects.create(title="hello")
    [event] = sent_events
    assert event.get_data()["data"] == {"title": "hello", "listed": [None]}


def with_expression(instance, signal_kwargs):
    return {"title": instance.title, "count": F("n") + 1, "listed": [F("n")]}


def test_a_generated_field_and_a_database_default_are_sent_as_stored(
    sent_events, django_assert_num_queries
):
    with django_assert_num_queries(2):  # the INSERT (RETURNING), one read-back
        row = StoredForm.objects.create(price="1.25")
    pk = row.pk
    row.price = "2.5"
    row.save()  # the instance keeps doubled as it was (unset): the row has 5.00
    row = StoredForm.objects.get(pk=row.pk)
    row.price = 4
    row.save()  # now the instance holds a stale 5.00: the row has 8.00
    row.delete()  # gone: nothing to read doubled from, and 5.00 is stale

    created, updated, stale, deleted = (e.get_data()["data"] for e in sent_events)
    assert created == {"id": pk, "price": "1.25", "doubled": "2.50", "label": "new"}
    assert (updated["price"], updated["doubled"]) == ("2.50", "5.00")
    assert (stale["price"], stale["doubled"]) == ("4.00", "8.00")
    assert deleted == {"id": pk, "price": "4.00", "label": "new"}


# -- the model path skips the checks its data has passed already ---------------


def test_secret_keys_inside_a_json_field_are_left_out(sent_events, caplog):
    # The fields are filtered by the model serializer; values holding objects
    # are still walked, at any depth, as events.new() walks anyone's data.
    Everything.objects.create(
        json={"note": "hi", "password": "hunter2", "items": [{"api_key": "k", "n": 1}]}
    )
    [event] = sent_events
    assert event.get_data()["data"]["json"] == {"note": "hi", "items": [{"n": 1}]}
    assert "django.orm.post_save: the key 'password' looks like a secret" in (
        caplog.text
    )
    assert b"hunter2" not in jsonformat.to_json(event)


def test_model_event_data_is_what_events_new_builds(sent_events):
    Everything.objects.create(json={"a": [1, {"b": None}]}, decimal="1.5")
    [event] = sent_events
    rebuilt = events.new(
        event.get_type(),
        data=event.get_data(),
        subject=event.get_subject(),
        extensions={
            "djangoapp": event.get_extension("djangoapp"),
            "djangomodel": event.get_extension("djangomodel"),
        },
        id=event.get_id(),
        time=event.get_time(),
    )
    assert jsonformat.to_json(rebuilt) == jsonformat.to_json(event)
    # Built without the SDK's checks (the installed SDK allows it), still its class.
    assert events._PLAIN
    assert type(event) is events.CloudEvent
    assert event.get_attributes() == rebuilt.get_attributes()


def test_a_key_of_the_bridges_own_called_sensitive_is_left_out(sent_events, settings):
    settings.CLOUDEVENTS_SENSITIVE_FIELDS = ["raw", "db_table"]
    make_question()
    [event] = sent_events
    data = event.get_data()
    assert "db_table" not in data
    assert "raw" not in data["signal_kwargs"]
    assert data["signal_kwargs"]["created"] is True


def test_a_reverse_m2m_change_sends_no_secret_primary_key_name(sent_events, settings):
    settings.CLOUDEVENTS_SENSITIVE_FIELDS = ["name"]  # Tag's primary key
    article = Article.objects.create(title="a")
    tag = Tag.objects.create(name="t")
    sent_events.clear()
    tag.article_set.add(article)
    [event] = [e for e in sent_events if e.get_type() == "django.orm.m2m_changed"]
    assert event.get_data()["data"] == {}
    assert event.get_data()["signal_kwargs"]["pk_set"] == [str(article.pk)]
