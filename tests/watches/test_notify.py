"""notify / stop_notifying / is_notifying, canonical values and the match key."""

from __future__ import annotations

import decimal
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from django_cloudevents_bridge import InstanceWatchEvent as TopLevel
from django_cloudevents_bridge.models import Watch
from django_cloudevents_bridge.watches import InstanceWatchEvent, WatchEvent, keys
from django_cloudevents_bridge.watches.base import registered, unregister
from tests.testapp.models import Article, Question, Tag
from tests.watches.watchers import EDITED, EditInLanguage, EditQuestion, Priced

pytestmark = pytest.mark.django_db


@pytest.fixture
def user():
    return get_user_model().objects.create_user("ann", "Ann@Example.com", "x")


@pytest.fixture
def question():
    return Question.objects.create(question_text="q", pub_date=timezone.now())


def test_top_level_names_are_the_watches_names():
    from django_cloudevents_bridge import EventUnion, WatchEvent, claim_watches, watches

    assert TopLevel is InstanceWatchEvent
    assert (WatchEvent, EventUnion, claim_watches) == (
        watches.WatchEvent,
        watches.EventUnion,
        watches.claim_watches,
    )


def test_classes_register_by_subclassing_in_definition_order():
    assert registered(EDITED) == [EditQuestion, EditInLanguage]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (True, "true"),
        (False, "false"),
        (42, "42"),
        (-7, "-7"),
        (2.0, "2"),
        (0.1, "0.1"),
        (decimal.Decimal("2.50"), "2.5"),
        (decimal.Decimal("3.000"), "3"),
        ("De ", "De "),
        (
            uuid.UUID("12345678-1234-5678-1234-567812345678"),
            "12345678-1234-5678-1234-567812345678",
        ),
    ],
)
def test_canonical_values(value, text):
    assert keys.canonical(value) == text


@pytest.mark.parametrize(
    "value", [None, float("nan"), [1], {"a": 1}, "a\x00b", object()]
)
def test_values_without_canonical_form_are_refused(value):
    with pytest.raises(keys.NoCanonicalForm):
        keys.canonical(value)
    with pytest.raises(ValueError, match="price"):
        Priced.notify("ann@example.org", price=value)


def test_a_user_watch_is_active_and_notify_is_idempotent(user):
    watch = EditInLanguage.notify(user, language="de")
    assert watch.active and watch.user == user and watch.owner == f"user:{user.pk}"
    assert EditInLanguage.notify(user, language="de") == watch
    assert Watch.objects.count() == 1
    assert watch.filters == {"language": "de"}
    assert watch.key == '["tests.question.edited",null,null,[["language","de"]]]'
    assert watch.key_digest == keys.digest(watch.key)


def test_wildcards_by_omission_are_watches_of_their_own(user):
    every = EditInLanguage.notify(user)
    german = EditInLanguage.notify(user, language="de")
    flagged = EditInLanguage.notify(user, flagged=True, language="de")
    assert len({every.pk, german.pk, flagged.pk}) == 3
    assert flagged.filters == {"flagged": "true", "language": "de"}
    assert EditInLanguage.is_notifying(user, language="de")
    assert not EditInLanguage.is_notifying(user, language="fr")
    assert EditInLanguage.stop_notifying(user, language="de") == 1
    assert not EditInLanguage.is_notifying(user, language="de")
    assert EditInLanguage.is_notifying(user)  # the others stay
    assert EditInLanguage.is_notifying(user, language="de", flagged=True)


def test_numbers_and_booleans_give_one_key_whatever_their_python_type(user):
    first = Priced.notify(user, price=2, instock=True)
    assert Priced.notify(user, price=2.0, instock=True) == first
    assert Priced.notify(user, price=decimal.Decimal("2.00"), instock=True) == first
    assert Priced.notify(user, price="2", instock="true") == first


def test_instance_watches_any_primary_key(user, question):
    article = Article.objects.create(title="a")
    tag = Tag.objects.create(name="x/y")

    class ArticleWatch(InstanceWatchEvent):
        event_type = "tests.article.any"
        content_type = Article

    class TagWatch(InstanceWatchEvent):
        event_type = "tests.tag.any"
        content_type = "testapp.Tag"

    try:
        on_question = EditQuestion.notify(user, question)
        on_article = ArticleWatch.notify(user, article)
        on_tag = TagWatch.notify(user, tag)
        on_all_questions = EditQuestion.notify(user)
    finally:
        unregister(ArticleWatch)
        unregister(TagWatch)
    assert (on_question.subject_type, on_question.subject_id) == (
        "testapp.question",
        str(question.pk),
    )
    assert on_article.subject_id == str(article.pk)
    assert on_tag.subject_id == "x/y"
    assert (on_all_questions.subject_type, on_all_questions.subject_id) == (
        "testapp.question",
        "",
    )
    assert keys.parse_subject("DCE:testapp.tag/x/y") == ("testapp.tag", "x/y")


def test_bad_arguments_are_clear_errors(user, question):
    with pytest.raises(TypeError, match="no filter"):
        EditInLanguage.notify(user, colour="red")
    with pytest.raises(TypeError, match="single objects"):
        EditInLanguage.notify(user, question)
    with pytest.raises(TypeError, match="saved testapp.question"):
        EditQuestion.notify(
            user, Question(question_text="unsaved", pub_date=timezone.now())
        )
    with pytest.raises(ValidationError):
        EditInLanguage.notify("not an address")
    with pytest.raises(TypeError, match="saved user or an e-mail"):
        from django.contrib.auth.models import AnonymousUser

        EditInLanguage.notify(AnonymousUser())


@pytest.mark.parametrize(
    "filters",
    [{"Language"}, {"lang_code"}, {"a" * 21}, {"a", "b", "c", "d", "e"}, {"subject"}],
)
def test_filter_names_are_checked_at_definition(filters):
    with pytest.raises(ImproperlyConfigured):
        type("Bad", (WatchEvent,), {"event_type": "tests.bad", "filters": filters})
    assert registered("tests.bad") == []


def test_uniqueness_holds_for_watches_without_user_or_object(user):
    anonymous = EditInLanguage.notify("ann@example.org", language="de")
    assert anonymous.user is None and not anonymous.active
    assert (
        EditInLanguage.notify(" ANN@Example.org ", language="de") == anonymous
    )  # one address
    duplicate = Watch(
        event_type=EDITED,
        key=anonymous.key,
        key_digest=anonymous.key_digest,
        owner=anonymous.owner,
        email="ann@example.org",
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        duplicate.save()


def test_long_keys_fit_the_index(user):
    long = "é" * 3000  # a btree entry of the key itself would exceed PostgreSQL's limit
    watch = Priced.notify(user, sku=long)
    assert Priced.is_notifying(user, sku=long)
    assert len(watch.key_digest) == 64


def test_admin_lists_and_edits_only_the_flag(admin_client, user):
    watch = EditInLanguage.notify(user, language="de")
    listing = admin_client.get("/admin/django_cloudevents_bridge/watch/")
    assert listing.status_code == 200 and f"user:{user.pk}".encode() in listing.content
    page = admin_client.get(
        f"/admin/django_cloudevents_bridge/watch/{watch.pk}/change/"
    )
    assert page.status_code == 200 and b"secret_digest" not in page.content
    assert (
        admin_client.get("/admin/django_cloudevents_bridge/watch/add/").status_code
        == 403
    )
    done = admin_client.post(
        "/admin/django_cloudevents_bridge/watch/",
        {"action": "deactivate", "_selected_action": [watch.pk]},
    )
    assert done.status_code == 302
    assert not Watch.objects.get().active


def test_system_check_names_bad_watch_classes_and_settings(settings):
    from django_cloudevents_bridge.checks import check_watches

    assert check_watches() == []

    class Broken(InstanceWatchEvent):
        event_type = "tests.broken"
        content_type = "testapp.Nothing"

    try:
        settings.CLOUDEVENTS_NOTIFICATIONS = {
            "ACTIVATION_RATE": 3,
            "PENDING_WATCH_DAYS": -1,
        }
        found = check_watches()
    finally:
        unregister(Broken)
    assert [(m.id, m.obj) for m in found] == [
        ("cloudevents_bridge.E013", Broken.label()),
        ("cloudevents_bridge.E013", "CLOUDEVENTS_NOTIFICATIONS"),
        ("cloudevents_bridge.E013", "CLOUDEVENTS_NOTIFICATIONS"),
    ]
