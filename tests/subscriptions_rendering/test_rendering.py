"""Medium.render(): styles and fallbacks, templates, context hints in batch."""

from __future__ import annotations

import logging
import uuid

import pytest
from django.db import connection
from django.utils import timezone

from django_cloudevents_bridge.subscriptions import Event, Medium, RenderingStyle
from django_cloudevents_bridge.subscriptions.rendering import render
from tests.testapp.models import Article, Choice, Question, Tag

from .conftest import event, renderer

pytestmark = pytest.mark.django_db

HINTS = {
    "choice": {
        "app_name": "testapp",
        "model_name": "Choice",
        "select_related": ["question"],
    },
    "articles": {
        "app_name": "testapp",
        "model_name": "Article",
        "prefetch_related": ["tags"],
    },
}
TEMPLATE = (
    "{{ choice.choice_text }}/{{ choice.question.question_text }}"
    "{% for a in articles %}|{{ a.title }}:"
    "{% for t in a.tags.all %}{{ t.name }}{% endfor %}{% endfor %}"
)


def fresh(*events: Event) -> list[Event]:
    """The events as a feed query gives them: nothing related loaded yet."""
    return list(Event.objects.filter(pk__in=[e.pk for e in events]).order_by("pk"))


# Which renderer: the medium's style, the fallback style, the built-in text.


def test_the_styles_renderer_for_the_source_wins_over_the_groups(
    medium, style, voted, closed
):
    renderer(style, source=voted, text_template="source {{ source.name }}")
    renderer(style, source_group=voted.group, text_template="group {{ source.name }}")
    one, two = event(voted), event(closed)
    rendered = medium.render([one, two])
    assert rendered[one][0] == "source voted"
    assert rendered[two][0] == "group closed"


def test_the_fallback_style_then_the_builtin_text(settings, medium, voted, closed):
    fallback = RenderingStyle.objects.create(name="plain", display_name="Plain")
    renderer(fallback, source=voted, text_template="plain {{ source.name }}")
    one, two = event(voted, {"n": 1}), event(closed, subject="poll/7")
    settings.CLOUDEVENTS_SUBSCRIPTIONS = {"DEFAULT_RENDERING_STYLE": "plain"}
    rendered = medium.render([one, two])
    assert rendered[one][0] == "plain voted"  # the medium's style has none
    assert rendered[two] == (  # the fallback style has none for "closed" either
        "Poll closed: poll/7",
        "<p><strong>Poll closed</strong>: poll/7</p>",
    )
    del settings.CLOUDEVENTS_SUBSCRIPTIONS
    assert medium.render([one])[one][0] == 'Vote cast: {"n": 1}'


def test_a_medium_with_no_style_uses_the_default_style(settings, group, voted):
    plain = RenderingStyle.objects.create(name="plain", display_name="Plain")
    renderer(plain, source_group=group, text_template="plain {{ source.name }}")
    medium = Medium.objects.create(name="feed", display_name="Feed")
    one = event(voted)
    assert medium.render([one])[one][0] == "Vote cast"  # no default: built-in
    settings.CLOUDEVENTS_SUBSCRIPTIONS = {"DEFAULT_RENDERING_STYLE": "plain"}
    assert medium.render([one])[one][0] == "plain voted"
    settings.CLOUDEVENTS_SUBSCRIPTIONS = {"DEFAULT_RENDERING_STYLE": "nowhere"}
    assert medium.render([one])[one][0] == "Vote cast"


def test_the_builtin_summary_leaves_secrets_out_and_is_short(medium, voted):
    one = event(voted, {"password": "hunter2", "note": "x" * 500})
    text, html = medium.render([one])[one]
    assert "hunter2" not in text and "password" not in text
    assert text.startswith('Vote cast: {"note": "xxx') and len(text) < 250
    assert html.startswith("<p><strong>Vote cast</strong>: ")


def test_the_builtin_html_is_escaped(medium, voted):
    one = event(voted, subject="<script>")
    assert medium.render([one])[one][1] == (
        "<p><strong>Vote cast</strong>: &lt;script&gt;</p>"
    )


def test_no_events_no_queries(medium, django_assert_num_queries):
    with django_assert_num_queries(0):
        assert render(medium, []) == {}


# Templates: paths and inline text; one of them derives the other.


def test_templates_from_paths(medium, style, voted):
    question = Question.objects.create(question_text="Tea?", pub_date=timezone.now())
    choice = Choice.objects.create(question=question, choice_text="Yes & more")
    renderer(
        style,
        source=voted,
        text_template_path="subscriptions_rendering/choice.txt",
        html_template_path="subscriptions_rendering/choice.html",
        context_hints={"choice": HINTS["choice"]},
    )
    medium.additional_context = {"site": "example.com"}
    one = event(voted, {"choice": choice.pk})
    text, html = medium.render([one])[one]
    assert text.strip() == "Yes & more (Tea?) by example.com"  # autoescape off
    assert html.strip() == "<p>Yes &amp; more &mdash; Tea?</p>"


def test_inline_html_only_gives_the_text_too_and_text_only_the_html(
    medium, style, voted, closed
):
    renderer(style, source=voted, html_template="<p>{{ who }} &amp; <b>co</b></p>")
    renderer(style, source=closed, text_template="{{ who }}\n\nbye")
    one, two = event(voted, {"who": "Ann"}), event(closed, {"who": "<Bob>"})
    rendered = medium.render([one, two])
    assert rendered[one] == ("Ann & co", "<p>Ann &amp; <b>co</b></p>")
    assert rendered[two] == (
        "&lt;Bob&gt;\n\nbye",
        "<p>&amp;lt;Bob&amp;gt;</p>\n\n<p>bye</p>",
    )


def test_a_missing_or_broken_template_is_logged_and_left_out(
    medium, style, voted, closed, caplog
):
    renderer(
        style,
        source=voted,
        text_template_path="subscriptions_rendering/gone.txt",
        html_template="<i>{{ n }}</i>",
    )
    renderer(
        style, source=closed, html_template_path="subscriptions_rendering/broken.html"
    )
    one, two = event(voted, {"n": 1}), event(closed, {"n": 2})
    with caplog.at_level(logging.WARNING, "django_cloudevents_bridge"):
        rendered = medium.render([one, two])
    assert rendered[one] == ("1", "<i>1</i>")
    assert rendered[two] == ('Poll closed: {"n": 2}', rendered[two][1])
    assert "gone.txt" in caplog.text and "broken.html" in caplog.text


# Context: data, hints, additional context, reserved names.


def test_additional_context_wins_over_the_data_and_event_is_the_event(
    medium, style, voted
):
    renderer(
        style,
        source=voted,
        text_template="{{ base }} {{ who }} {{ event.event_id }} {{ medium.name }}",
    )
    medium.additional_context = {"base": "https://example.com"}
    one = event(voted, {"base": "https://evil.example", "who": "Ann", "event": "x"})
    assert (
        medium.render([one])[one][0] == f"https://example.com Ann {one.event_id} email"
    )
    assert one.context["base"] == "https://evil.example"  # stored data unchanged


def test_data_that_is_no_object_is_data(medium, style, voted):
    renderer(style, source=voted, text_template="{{ data|join:',' }}")
    one = event(voted, [1, 2])
    assert medium.render([one])[one][0] == "1,2"


def test_hints_load_instances_for_dotted_paths_lists_and_every_key_type(
    medium, style, voted
):
    question = Question.objects.create(question_text="Tea?", pub_date=timezone.now())
    yes = Choice.objects.create(question=question, choice_text="yes")
    no = Choice.objects.create(question=question, choice_text="no")
    red = Tag.objects.create(name="red")
    article = Article.objects.create(title="On tea")
    article.tags.add(red)
    renderer(
        style,
        source=voted,
        text_template=(
            "{{ vote.choice.choice_text }} {% for c in others %}{{ c }}"
            "{% endfor %} {% for i in items %}{{ i.tag.name }}{% endfor %} "
            "{{ article.title }} {{ gone }}"
        ),
        context_hints={
            "vote.choice": {"app_name": "testapp", "model_name": "Choice"},
            "others": {"app_name": "testapp", "model_name": "choice"},
            "items.tag": {"app_name": "testapp", "model_name": "Tag"},
            "article": {"app_name": "testapp", "model_name": "Article"},
            "gone": {"app_name": "testapp", "model_name": "Question"},
        },
    )
    one = event(
        voted,
        {
            "vote": {"choice": str(yes.pk)},  # a key as text still finds the row
            "others": [no.pk, 999999],  # a missing row leaves its key
            "items": [{"tag": "red"}, {"tag": "blue"}],  # string primary keys
            "article": str(article.pk).upper(),  # a UUID in another spelling
            "gone": 424242,
        },
    )
    assert medium.render([one])[one][0] == "yes no999999 red On tea 424242"


def test_context_hints_cost_the_same_queries_for_1_and_200_events(
    medium, style, voted, closed, django_assert_num_queries
):
    renderer(
        style, source_group=voted.group, html_template=TEMPLATE, context_hints=HINTS
    )
    question = Question.objects.create(question_text="Tea?", pub_date=timezone.now())
    choices = Choice.objects.bulk_create(
        Choice(question=question, choice_text=f"c{i}") for i in range(200)
    )
    tags = Tag.objects.bulk_create(Tag(name=f"t{i}") for i in range(5))
    articles = Article.objects.bulk_create(
        Article(id=uuid.uuid4(), title=f"a{i}") for i in range(10)
    )
    for i, article in enumerate(articles):
        article.tags.set(tags[: i % 5 + 1])
    events = [
        event(
            (voted, closed)[i % 2],
            {
                "choice": choices[i].pk,
                "articles": [str(articles[i % 10].pk), str(articles[(i + 3) % 10].pk)],
            },
        )
        for i in range(200)
    ]
    one, every = fresh(events[0]), fresh(*events)
    # sources, renderers, choices (with their questions), articles, their tags
    with django_assert_num_queries(5):
        single = render(medium, one)
    with django_assert_num_queries(5):
        batch = render(medium, every)
    assert single[events[0]][1] == "c0/Tea?|a0:t0|a3:t0t1t2t3"
    assert len(batch) == 200
    assert batch[events[199]][1] == "c199/Tea?|a9:t0t1t2t3t4|a2:t0t1t2"


def test_a_bad_hint_is_logged_and_skipped_never_a_crash(medium, style, voted, caplog):
    renderer(
        style,
        name="bad",
        source=voted,
        text_template="{{ a }} {{ b }} {{ c }}",
        context_hints={
            "a": {"app_name": "nowhere", "model_name": "Thing"},
            "b": {
                "app_name": "testapp",
                "model_name": "Choice",
                "select_related": ["votes"],
            },
            "c": "testapp.Choice",
        },
    )
    one = event(voted, {"a": 1, "b": 2, "c": 3})
    with caplog.at_level(logging.WARNING, "django_cloudevents_bridge"):
        assert medium.render([one])[one][0] == "1 2 3"
    assert "no installed model nowhere.Thing" in caplog.text
    assert "'votes'" in caplog.text


def test_cached_sources_are_not_loaded_again(medium, voted, django_assert_num_queries):
    one = event(voted)  # created with its source: cached
    with django_assert_num_queries(1):  # the renderers of the medium's style
        medium.render([one])


def tag_renderer(style, source) -> None:
    """A renderer printing the tag whose key is the event's ``tag``."""
    renderer(
        style,
        source=source,
        text_template="{{ tag.name }}",
        context_hints={"tag": {"app_name": "testapp", "model_name": "Tag"}},
    )


def test_more_keys_than_djangos_999_are_still_one_query(
    medium, style, voted, django_assert_num_queries
):
    tag_renderer(style, voted)
    Tag.objects.bulk_create(Tag(name=f"t{i}") for i in range(1100))
    events = Event.objects.bulk_create(
        Event(
            source=voted,
            event_source="/many",
            event_id=str(i),
            context={"tag": f"t{i}"},
        )
        for i in range(1100)
    )
    every = fresh(*events)
    with django_assert_num_queries(3):  # sources, renderers, the 1,100 tags
        rendered = render(medium, every)
    assert {text for text, _ in rendered.values()} == {f"t{i}" for i in range(1100)}


@pytest.mark.sqlite_only
def test_past_the_databases_own_parameter_limit_the_keys_are_split(
    medium, style, voted, django_assert_num_queries
):
    import sqlite3

    tag_renderer(style, voted)
    Tag.objects.bulk_create(Tag(name=f"t{i}") for i in range(25))
    events = [event(voted, {"tag": f"t{i}"}) for i in range(25)]
    every = fresh(*events)
    connection.ensure_connection()
    limit = sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER
    before = connection.connection.setlimit(limit, 10)
    try:
        with django_assert_num_queries(2 + 3):  # 25 keys, 10 a query
            rendered = render(medium, every)
    finally:
        connection.connection.setlimit(limit, before)
    assert [rendered[e][0] for e in events] == [f"t{i}" for i in range(25)]


def test_inline_templates_work_without_a_template_engine_configured(
    settings, medium, style, voted, closed, caplog
):
    settings.TEMPLATES = []
    renderer(style, source=voted, text_template="{{ n|add:1 }}")
    renderer(
        style, source=closed, text_template_path="subscriptions_rendering/choice.txt"
    )
    one, two = event(voted, {"n": 1}), event(closed, {"n": 2})
    with caplog.at_level(logging.WARNING, "django_cloudevents_bridge"):
        rendered = medium.render([one, two])
    assert rendered[one][0] == "2"
    assert rendered[two][0] == 'Poll closed: {"n": 2}'  # no loader: logged
    assert "choice.txt" in caplog.text
