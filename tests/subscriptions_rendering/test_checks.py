"""System checks of the default rendering style and of context renderers."""

from __future__ import annotations

import pytest

from django_cloudevents_bridge.checks import (
    check_rendering,
    check_subscriptions_rendering,
)
from django_cloudevents_bridge.subscriptions.rendering import hint_problems

from .conftest import renderer


@pytest.mark.parametrize("value", [None, {}, {"DEFAULT_RENDERING_STYLE": "plain"}])
def test_a_style_name_none_or_nothing_passes(settings, value):
    settings.CLOUDEVENTS_SUBSCRIPTIONS = value
    assert check_subscriptions_rendering() == []


@pytest.mark.parametrize(
    "value",
    [
        "plain",
        {"DEFAULT_RENDERING_STYLE": 3},
        {"DEFAULT_RENDERING_STYLE": "two words"},
        {"DEFAULT_RENDERING_STYLE": ""},
    ],
)
def test_a_bad_default_style_is_an_error(settings, value):
    settings.CLOUDEVENTS_SUBSCRIPTIONS = value
    assert [m.id for m in check_subscriptions_rendering()] == [
        "cloudevents_bridge.E017"
    ]


@pytest.mark.django_db
def test_a_default_style_that_does_not_exist_is_a_warning(settings, style):
    settings.CLOUDEVENTS_SUBSCRIPTIONS = {"DEFAULT_RENDERING_STYLE": "plain"}
    assert check_rendering() == []  # no database asked: no query
    messages = check_rendering(databases=["default"])
    assert [m.id for m in messages] == ["cloudevents_bridge.W012"]
    assert "'plain'" in messages[0].msg
    settings.CLOUDEVENTS_SUBSCRIPTIONS = {"DEFAULT_RENDERING_STYLE": "short"}
    assert check_rendering(databases=["default"]) == []


@pytest.mark.django_db
def test_renderers_with_missing_templates_or_bad_hints_are_errors(style, voted):
    renderer(style, name="fine", source=voted, text_template="{{ x }}")
    renderer(
        style,
        name="bad",
        source_group=voted.group,
        text_template_path="subscriptions_rendering/gone.txt",
        html_template="{% if %}",
        context_hints={"x": {"app_name": "nowhere", "model_name": "Thing"}},
    )
    messages = check_rendering(databases=["default"])
    assert [m.id for m in messages] == ["cloudevents_bridge.E018"]
    message = messages[0].msg
    assert message.startswith("Context renderer 'bad': ")
    assert (
        "text_template_path: template 'subscriptions_rendering/gone.txt' not found"
        in message
    )
    assert "html_template: template inline: " in message
    assert "context_hints: hint 'x': no installed model nowhere.Thing" in message


@pytest.mark.parametrize(
    ("hints", "problem"),
    [
        ([], "context hints must be an object"),
        ({"": {}}, "hint '': the name must be a key, or a dotted path of keys"),
        ({"a..b": {}}, "the name must be a key"),
        ({"a": "testapp.Choice"}, "must be an object with app_name and model_name"),
        ({"a": {"app_name": "testapp"}}, "app_name and model_name must be strings"),
        ({"a": {"app_name": "x", "model_name": "Y"}}, "no installed model x.Y"),
        (
            {"a": {"app_name": "testapp", "model_name": "Choice", "order": []}},
            "unknown key 'order'",
        ),
        (
            {
                "a": {
                    "app_name": "testapp",
                    "model_name": "Choice",
                    "select_related": "question",
                }
            },
            "select_related must be a list of relation names",
        ),
        (
            {
                "a": {
                    "app_name": "testapp",
                    "model_name": "Choice",
                    "select_related": ["votes"],
                }
            },
            "select_related 'votes': testapp.Choice has no relation 'votes'",
        ),
        (
            {
                "a": {
                    "app_name": "testapp",
                    "model_name": "Question",
                    "select_related": ["choice_set"],
                }
            },
            "testapp.Question.choice_set is not a single related object",
        ),
        (
            {
                "a": {
                    "app_name": "testapp",
                    "model_name": "Question",
                    "prefetch_related": ["choice_set__nothing"],
                }
            },
            "testapp.Choice has no relation 'nothing'",
        ),
    ],
)
def test_hint_problems_say_what_is_wrong(hints, problem):
    found = hint_problems(hints)
    assert any(problem in p for p in found), found


def test_good_hints_have_no_problems():
    assert hint_problems({}) == []
    assert (
        hint_problems(
            {
                "a.b": {
                    "app_name": "testapp",
                    "model_name": "Question",
                    "prefetch_related": ["choice_set__question"],
                },
                "c": {
                    "app_name": "testapp",
                    "model_name": "choice",
                    "select_related": ["question"],
                },
                "d": {
                    "app_name": "auth",
                    "model_name": "User",
                    "prefetch_related": ["groups__permissions"],
                },
            }
        )
        == []
    )
