"""The lookup: one query, grouped per person, the first class's mails()."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_cloudevents_bridge import events
from django_cloudevents_bridge.models import Watch
from django_cloudevents_bridge.watches import keys, lookup
from tests.testapp.models import Article, Question, Tag
from tests.watches.watchers import (
    EDITED,
    ArticleTouched,
    EditInLanguage,
    EditQuestion,
    Priced,
    TagTouched,
)

pytestmark = pytest.mark.django_db


def make_user(name: str, email: str = "", active: bool = True):
    return get_user_model().objects.create_user(
        name, email or f"{name}@example.org", "x", is_active=active
    )


def edited(question: Question, **extensions: str) -> events.CloudEvent:
    return events.new(
        EDITED, subject=keys.subject(question), extensions=extensions, data={}
    )


@pytest.fixture
def question():
    return Question.objects.create(question_text="q", pub_date=timezone.now())


def people(event) -> dict[str, list[tuple[str, dict]]]:
    """{recipient key: [(class name, filters) of each matched watch]}."""
    return {
        person.key: [
            (reason["class"].rsplit(".", 1)[-1], watch.filters)
            for reason, watch in zip(person.reasons, person.watches, strict=True)
        ]
        for person in lookup.people(event)
    }


def test_an_event_reaches_each_watcher_once_with_all_matched_watches(question):
    ann, bob, cid = (
        make_user("ann"),
        make_user("bob"),
        make_user("cid", "Cid@Example.org"),
    )
    EditInLanguage.notify(ann, language="de")
    EditInLanguage.notify(ann, language="fr")  # no match
    EditQuestion.notify(bob, question)
    EditInLanguage.notify(cid)
    EditInLanguage.notify(cid, language="de", flagged=False)
    EditQuestion.notify(cid)  # every question
    anonymous = EditInLanguage.notify("CID@example.ORG", language="de")
    Watch.objects.filter(pk=anonymous.pk).update(active=True)
    pending = EditInLanguage.notify("dan@example.org", language="de")  # not confirmed

    found = people(edited(question, language="de", flagged="false"))

    assert f"email:{pending.email}" not in found
    assert found == {
        f"user:{ann.pk}": [("EditInLanguage", {"language": "de"})],
        f"user:{bob.pk}": [("EditQuestion", {})],
        # the user wins over the anonymous watch of the same address (any case);
        # the first class in definition order comes first: it builds the mail
        f"user:{cid.pk}": [
            ("EditQuestion", {}),
            ("EditInLanguage", {}),
            ("EditInLanguage", {"flagged": "false", "language": "de"}),
            ("EditInLanguage", {"language": "de"}),
        ],
    }


def test_the_first_class_builds_one_mail_per_person_from_all_their_watches(question):
    ann = make_user("ann")
    EditInLanguage.notify(ann, language="de")
    EditQuestion.notify(ann, question)
    only_language = make_user("bob")
    EditInLanguage.notify(only_language)

    pairs = list(lookup.mails(edited(question, language="de")))

    assert [(p.key, p.watch_class) for p, _ in pairs] == [
        (f"user:{ann.pk}", EditQuestion),
        (f"user:{only_language.pk}", EditInLanguage),
    ]
    message = pairs[0][1]
    assert message.to == ["ann@example.org"]
    assert message.subject == f"{EDITED}: DCE:testapp.question/{question.pk}"
    assert "Hello ann" in message.body and "2 watches" in message.body
    assert [r["kind"] for r in pairs[0][0].reasons] == ["watch", "watch"]


def test_filter_values_come_from_extension_then_data_then_model_data():
    ann = make_user("ann")
    Priced.notify(ann, price=2, instock=True)

    def matches(**kwargs) -> bool:
        return bool(list(lookup.people(events.new("tests.priced", **kwargs))))

    assert matches(extensions={"price": "2", "instock": "true"})
    assert matches(data={"price": 2.0, "instock": True})
    assert matches(data={"data": {"price": 2, "instock": True}})  # a model event
    assert matches(extensions={"instock": "true"}, data={"price": 2, "instock": False})
    assert not matches(data={"price": 3, "instock": True})
    assert not matches(data={"price": 2})  # a value the event lacks matches nothing
    assert not matches(data={"price": [2], "instock": True})  # no canonical form


def test_per_type_templates_are_used_with_a_fallback_per_name():
    Priced.notify(make_user("ann"), price=2)
    [(person, message)] = lookup.mails(events.new("tests.priced", data={"price": 2}))
    assert message.subject == "Price now 2"
    assert message.body.startswith("Dear ann@example.org: 1 of your watches matched.")
    assert message.alternatives[0][1] == "text/html"


def test_instance_watches_on_uuid_and_string_keys():
    article = Article.objects.create(title="a")
    tag = Tag.objects.create(name="a/b")
    ann = make_user("ann")
    ArticleTouched.notify(ann, article)
    TagTouched.notify(ann, tag)

    def hit(event_type, subject) -> bool:
        return bool(list(lookup.people(events.new(event_type, subject=subject))))

    assert hit("tests.article.touched", f"DCE:testapp.article/{article.pk}")
    assert not hit("tests.article.touched", "DCE:testapp.article/not-a-uuid")
    assert hit("tests.tag.touched", "DCE:testapp.tag/a/b")
    assert not hit("tests.tag.touched", "DCE:testapp.tag/a")
    assert not hit("tests.tag.touched", "a/b")  # not our subject form


def test_a_deleted_object_still_notifies_without_crashing(question):
    EditQuestion.notify(make_user("ann"), question)
    event = edited(question)
    question.delete()
    [(person, message)] = lookup.mails(event)
    assert EditQuestion.received(event).instance is None
    assert message.to == ["ann@example.org"]


def test_inactive_users_and_users_without_address_are_left_out(question):
    EditQuestion.notify(make_user("ann", active=False), question)
    nobody = make_user("bob")
    nobody.email = ""
    nobody.save()
    EditQuestion.notify(nobody, question)
    assert people(edited(question)) == {}


def test_an_event_of_no_watched_type_costs_no_query(django_assert_num_queries):
    with django_assert_num_queries(0):
        assert list(lookup.mails(events.new("tests.unwatched"))) == []


@pytest.mark.parametrize("count", [1, 100, 10_000])
def test_the_lookup_is_one_query_whatever_the_number_of_matches(count, question):
    users = get_user_model().objects.bulk_create(
        get_user_model()(username=f"u{i}", email=f"u{i}@example.org")
        for i in range(min(count, 50))
    )
    key = keys.match_key(EDITED, None, None, {"language": "de"})
    other = keys.match_key(EDITED, None, None, {"language": "fr"})
    rows = []
    for i in range(count):
        user = users[i] if i < len(users) else None
        for k in (key, other):  # as many non-matching watches
            rows.append(
                Watch(
                    event_type=EDITED,
                    key=k,
                    key_digest=keys.digest(k),
                    owner=keys.owner_of(user, f"w{i}@example.org"),
                    user=user,
                    email="" if user else f"w{i}@example.org",
                    active=True,
                )
            )
    Watch.objects.bulk_create(rows, batch_size=2000)

    with CaptureQueriesContext(connection) as queries:
        found = sum(1 for _ in lookup.people(edited(question, language="de")))

    assert found == count
    assert len(queries) == 1


def test_watches_and_users_come_whole_but_password_and_secret_never_loaded(
    question, django_assert_num_queries
):
    ann = make_user("ann")
    watch = EditInLanguage.notify(ann, language="de")
    anonymous = EditInLanguage.notify("Bea@Example.org", language="de")
    Watch.objects.filter(pk=anonymous.pk).update(active=True)

    with django_assert_num_queries(1):
        found = list(lookup.people(edited(question, language="de")))
        by_key = {person.key: person for person in found}
        user = by_key[f"user:{ann.pk}"]
        [loaded] = user.watches
        # Every field mails() may read, with no further query.
        assert loaded.user is user.user
        assert loaded.filters == {"language": "de"}
        assert loaded.created_at == watch.created_at
        assert loaded.active is True
        assert user.user.username == "ann"
        assert user.user.date_joined == ann.date_joined
        [bea] = by_key["email:bea@example.org"].watches
        assert bea.user is None
        assert bea.email == "Bea@Example.org"
    assert "password" in user.user.get_deferred_fields()
    assert {"key", "secret_digest"} <= loaded.get_deferred_fields()


@pytest.mark.postgres
def test_the_plan_looks_each_user_up_by_key_at_the_default_page_cost(question):
    users = get_user_model().objects.bulk_create(
        get_user_model()(username=f"u{i}", email=f"u{i}@example.org")
        for i in range(2000)
    )
    key = keys.match_key(EDITED, None, None, {"language": "de"})
    Watch.objects.bulk_create(
        Watch(
            event_type=EDITED,
            key=key,
            key_digest=keys.digest(key),
            owner=keys.owner_of(user),
            user=user,
            active=True,
        )
        for user in users[:300]
    )
    sql, params = lookup.statement(
        lookup.candidates(edited(question, language="de")), "default"
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
        cursor.execute("SET LOCAL random_page_cost = 4")
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "Hash" not in plan
    assert "Seq Scan on auth_user" not in plan
    assert "Index Scan using auth_user_pkey" in plan


def test_post_init_receivers_still_see_the_instances_the_lookup_makes(question):
    from django.db.models.signals import post_init

    ann, bob = make_user("ann"), make_user("bob")
    for user in (ann, bob):
        EditInLanguage.notify(user, language="de")
    seen: list[int] = []

    def saw(sender, instance, **kwargs) -> None:
        seen.append(instance.pk)

    post_init.connect(saw, sender=get_user_model())
    try:
        found = list(lookup.people(edited(question, language="de")))
    finally:
        post_init.disconnect(saw, sender=get_user_model())
    assert sorted(seen) == sorted([ann.pk, bob.pk])
    assert sorted(p.user.username for p in found) == ["ann", "bob"]
    assert all(not p.user._state.adding and p.user._state.db for p in found)
    assert all(not w._state.adding for p in found for w in p.watches)
