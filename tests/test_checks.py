"""System checks name each misconfiguration at start-up."""

from __future__ import annotations

import json

import pytest
from django.core import checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from django_cloudevents_bridge import checks as bridge_checks
from django_cloudevents_bridge import events
from django_cloudevents_bridge.emit.handlers import pubsub


def ids(messages) -> list[str]:
    return [message.id for message in messages]


def run_all() -> list[str]:
    return sorted(
        message.id
        for message in checks.run_checks()
        if message.id.startswith("cloudevents_bridge") and not message.is_silenced()
    )


@pytest.mark.django_db  # Django 6 runs the database checks too
def test_default_test_settings_are_clean():
    assert run_all() == []


def test_handler_that_does_not_import(settings):
    settings.CLOUDEVENTS_HANDLER = "no.such.module.Handler"
    assert ids(bridge_checks.check_handler()) == ["cloudevents_bridge.E001"]


def test_handler_that_is_not_callable(settings):
    settings.CLOUDEVENTS_HANDLER = 42
    assert ids(bridge_checks.check_handler()) == ["cloudevents_bridge.E001"]


def test_unknown_handler_option(settings):
    settings.CLOUDEVENTS_HANDLER_OPTIONS = {"timout": 3}
    [error] = bridge_checks.check_handler()
    assert error.id == "cloudevents_bridge.E003"
    assert "timout" in error.msg


def test_missing_pubsub_extra(settings, monkeypatch):
    monkeypatch.setattr(pubsub, "installed", lambda: False)
    settings.CLOUDEVENTS_HANDLER = "pubsub"
    [error] = bridge_checks.check_handler()
    assert error.id == "cloudevents_bridge.E002"
    assert "django-cloudevents-bridge[pubsub]" in error.msg


def test_http_handler_without_sink_warns(settings, monkeypatch):
    monkeypatch.delenv("K_SINK", raising=False)
    settings.CLOUDEVENTS_HANDLER = "http"
    assert ids(bridge_checks.check_handler()) == ["cloudevents_bridge.W001"]
    monkeypatch.setenv("K_SINK", "http://127.0.0.1:9/")
    assert bridge_checks.check_handler() == []


def test_renamed_sink_variable_is_the_one_checked(settings, monkeypatch):
    settings.CLOUDEVENTS_HANDLER = "http"
    settings.CLOUDEVENTS_ENV = {"SINK_VAR": "MY_SINK", "SOURCE_VAR": "MY_SOURCE"}
    monkeypatch.setenv("K_SINK", "http://127.0.0.1:9/")
    [warning] = bridge_checks.check_handler()
    assert "MY_SINK" in warning.msg


@pytest.mark.parametrize(
    "value", [["K_SINK"], {"SINK_VAR": "K_SINK"}, {"SOURCE_VAR": "K_SOURCE"}]
)
def test_bad_env_setting(settings, value):
    settings.CLOUDEVENTS_ENV = value
    assert ids(bridge_checks.check_env()) == ["cloudevents_bridge.E004"]


def test_bad_delivery(settings):
    settings.CLOUDEVENTS_DELIVERY = "later"
    assert ids(bridge_checks.check_delivery()) == ["cloudevents_bridge.E006"]


def test_unusable_overrides_warn(monkeypatch):
    monkeypatch.setenv("K_CE_OVERRIDES", '{"extensions": {"type": "x"}}')
    assert ids(bridge_checks.check_overrides()) == ["cloudevents_bridge.W002"]


@pytest.mark.parametrize("value", ["bad\ud800", "line\nbreak", "del\x7f"])
def test_override_values_that_are_no_cloudevents_string_warn(monkeypatch, value):
    monkeypatch.setenv("K_CE_OVERRIDES", json.dumps({"extensions": {"foo": value}}))
    assert ids(bridge_checks.check_overrides()) == ["cloudevents_bridge.W002"]
    assert events.overrides() == {}  # skipped: every send would fail otherwise


def test_checks_run_without_a_root_urlconf(settings):
    # A settings module for the relay alone routes no URL at all.
    del settings.ROOT_URLCONF
    assert ids(bridge_checks.check_receiver_auth()) == []


def test_models_setting_errors(settings):
    settings.CLOUDEVENTS_MODELS = {
        "testapp.Nope": {},
        "nolabel": {},
        "testapp.Question": {
            "signals": ["post_save", "pre_save"],
            "fields": ["question_text", "nope"],
            "exclude": ["missing"],
            "data": "no.such.function",
            "colour": "blue",
        },
        "testapp.Choice": "post_save",
        "testapp.Tag": {"data": "django_cloudevents_bridge.__version__"},
    }
    messages = [m.msg for m in bridge_checks.check_models()]
    assert set(ids(bridge_checks.check_models())) == {"cloudevents_bridge.E005"}
    expected = [
        "unknown model 'testapp.Nope'",
        "unknown model 'nolabel'",
        "unknown option 'colour'",
        "unknown signal 'pre_save'",
        "fields: no field 'nope'",
        "exclude: no field 'missing'",
        "data: ",
        "options must be a dict",
        "data must be callable",
    ]
    for text in expected:
        assert any(text in message for message in messages), text
    assert len(messages) == len(expected)


def test_models_setting_not_a_dict(settings):
    settings.CLOUDEVENTS_MODELS = ["testapp.Question"]
    assert ids(bridge_checks.check_models()) == ["cloudevents_bridge.E005"]


@pytest.mark.django_db
def test_errors_stop_manage_py_check(settings):
    settings.CLOUDEVENTS_HANDLER = "no.such.Handler"
    with pytest.raises(SystemCheckError, match="cloudevents_bridge.E001"):
        call_command("check")


@pytest.mark.parametrize(
    "value, message",
    [
        ([1], "must be a dict"),
        ({"BATCHSIZE": 5}, "unknown key 'BATCHSIZE'"),
        ({"LEASE": "60"}, "LEASE must be a number"),
        ({"CONCURRENCY": 0}, "CONCURRENCY must be positive"),
        ({"LOCK_TIMEOUT": 0}, "LOCK_TIMEOUT must be positive"),
        ({"LOCK_TIMEOUT": 2147484}, "LOCK_TIMEOUT must be a finite number"),
        ({"LOCK_TIMEOUT": float("inf")}, "LOCK_TIMEOUT must be a finite number"),
        ({"LOCK_TIMEOUT": float("nan")}, "LOCK_TIMEOUT must be a finite number"),
    ],
)
def test_bad_outbox_setting(settings, value, message):
    settings.CLOUDEVENTS_OUTBOX = value
    [error] = bridge_checks.check_outbox()
    assert error.id == "cloudevents_bridge.E008"
    assert message in error.msg


def test_good_outbox_setting(settings):
    settings.CLOUDEVENTS_OUTBOX = {
        "LEASE": 30,
        "BACKGROUND": False,
        "LOCK_TIMEOUT": None,  # no bound
    }
    assert bridge_checks.check_outbox() == []
    settings.CLOUDEVENTS_OUTBOX = {"LOCK_TIMEOUT": 2147483.647}  # the largest
    assert bridge_checks.check_outbox() == []


@pytest.mark.parametrize(
    "issuer, warned",
    [
        ("http://issuer.example.com", True),
        ("http://10.0.0.1:8080", True),
        ("https://kubernetes.default.svc", False),
        ("http://127.0.0.1:9999", False),
        ("http://localhost:9999", False),
        ("http://[::1]:9999", False),
    ],
)
def test_plain_http_oidc_issuer_warns(settings, issuer, warned):
    settings.CLOUDEVENTS_RECEIVER = {"OIDC_ISSUER": issuer, "OIDC_AUDIENCE": "a"}
    found = ids(bridge_checks.check_receiver_auth())
    assert found == (["cloudevents_bridge.W004"] if warned else [])


@pytest.mark.parametrize(
    "value, message",
    [
        ({"MODE": "later"}, 'MODE must be "inline" or "deferred"'),
        ({"MAX_ATTEMPTS": 0}, "MAX_ATTEMPTS must be a whole number, 1 or more"),
        ({"BACKOFF": "1"}, "BACKOFF must be a number, 0 or more"),
        ({"TASK_BACKEND": 1}, "TASK_BACKEND must be a task backend's alias"),
    ],
)
def test_bad_deferred_setting(settings, value, message):
    settings.CLOUDEVENTS_RECEIVER = value
    [error] = bridge_checks.check_deferred()
    assert error.id == "cloudevents_bridge.E009"
    assert message in error.msg


def test_task_backend_without_django_tasks(settings, monkeypatch):
    from django_cloudevents_bridge import work

    monkeypatch.setattr(work, "tasks_api", lambda: None)
    settings.CLOUDEVENTS_RECEIVER = {"MODE": "deferred", "TASK_BACKEND": "default"}
    [error] = bridge_checks.check_deferred()
    assert "needs Django 6, or django-tasks" in error.msg


def test_deferred_replies_without_a_sink_warn(settings, monkeypatch):
    monkeypatch.delenv("K_SINK", raising=False)
    settings.CLOUDEVENTS_HANDLER = "http"
    settings.CLOUDEVENTS_RECEIVER = {"MODE": "deferred"}
    assert ids(bridge_checks.check_deferred()) == ["cloudevents_bridge.W006"]
    monkeypatch.setenv("K_SINK", "http://127.0.0.1:9/")
    assert bridge_checks.check_deferred() == []
    settings.CLOUDEVENTS_RECEIVER = {"MODE": "inline"}
    monkeypatch.delenv("K_SINK")
    assert bridge_checks.check_deferred() == []


def test_capture_option_names_a_mode(settings):
    settings.CLOUDEVENTS_MODELS = {"testapp.Tag": {"capture": "triggers"}}
    [error] = bridge_checks.check_models()
    assert error.id == "cloudevents_bridge.E005"
    assert "capture must be 'signals' or 'trigger', not 'triggers'" in error.msg


@pytest.mark.sqlite_only
def test_trigger_capture_on_sqlite_is_an_error(settings):
    settings.CLOUDEVENTS_MODELS = {"testapp.Tag": {"capture": "trigger"}}
    [error] = bridge_checks.check_models()
    assert error.id == "cloudevents_bridge.E012"
    assert "needs PostgreSQL; the database 'default' is sqlite" in error.msg
    assert "SystemCheckError" in repr(
        pytest.raises(SystemCheckError, call_command, "check")
    )


@pytest.mark.postgres
def test_trigger_capture_on_postgresql_is_clean_unless_it_cannot_work(settings):
    settings.CLOUDEVENTS_MODELS = {"testapp.Tag": {"capture": "trigger"}}
    assert bridge_checks.check_models() == []
    # Question is connected by hand (testapp/models.py): it would be sent twice.
    settings.CLOUDEVENTS_MODELS = {"testapp.Question": {"capture": "trigger"}}
    [error] = bridge_checks.check_models()
    assert "each change would be sent twice" in error.msg
    settings.CLOUDEVENTS_MODELS = {
        "testapp.Tag": {"capture": "trigger", "data": "tests.testapp.models.x"},
        "testapp.Choice": {"capture": "trigger", "signals": ["post_save"]},
        "django_cloudevents_bridge.OutboxEvent": {"capture": "trigger"},
        "testapp.Article_tags": {"capture": "trigger"},
    }
    messages = [m.msg for m in bridge_checks.check_models()]
    assert set(ids(bridge_checks.check_models())) == {"cloudevents_bridge.E005"}
    for text in (
        "'data' does not apply to capture 'trigger'",
        "'signals' does not apply to capture 'trigger'",
    ):
        assert any(text in message for message in messages), text
    for text in (
        "cannot capture it: the bridge's own tables are never captured",
        "cannot capture it: an auto-created many-to-many through model",
    ):
        assert any(text in message for message in messages), text
