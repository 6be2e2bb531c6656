"""Settings are read at call time: a changed or deleted setting is seen at once."""

from __future__ import annotations

from django.conf import UserSettingsHolder
from django.conf import settings as django_settings
from django.test import override_settings

from django_cloudevents_bridge import conf


def test_a_setting_is_read_again_whenever_it_changes(settings):
    assert conf.delivery() == "on_commit"  # tests/settings.py
    with override_settings(CLOUDEVENTS_DELIVERY="outbox"):
        assert conf.delivery() == "outbox"
    assert conf.delivery() == "on_commit"
    settings.CLOUDEVENTS_DELIVERY = "outbox"  # pytest-django's fixture
    assert conf.delivery() == "outbox"


def test_a_deleted_setting_falls_back_to_its_default_and_comes_back():
    with override_settings():
        assert conf.delivery() == "on_commit"
        del django_settings.CLOUDEVENTS_DELIVERY  # sends no setting_changed
        assert conf.delivery() == "outbox"  # the default
        assert "testapp.Choice" in conf.models()  # the others stay as they were
    assert conf.delivery() == "on_commit"


def test_a_setting_assigned_or_deleted_in_place_is_seen_at_once():
    with override_settings():
        assert conf.receiver_setting() is None
        django_settings.CLOUDEVENTS_RECEIVER = {"SECRET": "s"}
        assert conf.receiver_setting() == {"SECRET": "s"}
        django_settings.CLOUDEVENTS_DELIVERY = "outbox"
        assert conf.delivery() == "outbox"
        del django_settings.CLOUDEVENTS_DELIVERY
        assert conf.delivery() == "outbox"  # the default
        django_settings.CLOUDEVENTS_DELIVERY = "on_commit"
        assert conf.delivery() == "on_commit"
    assert conf.receiver_setting() is None


def test_nested_overrides_and_deletions():
    assert conf.handler() == "locmem"  # tests/settings.py
    with override_settings(CLOUDEVENTS_HANDLER="console"):
        with override_settings():
            del django_settings.CLOUDEVENTS_HANDLER
            assert conf.handler() == "http"  # the default, not the outer "console"
            with override_settings(CLOUDEVENTS_HANDLER="pubsub"):
                assert conf.handler() == "pubsub"
            assert conf.handler() == "http"
        assert conf.handler() == "console"
        assert "testapp.Choice" in conf.models()  # under two layers
    assert conf.handler() == "locmem"


def test_settings_behind_an_object_of_another_kind(monkeypatch):
    # settings.configure(default_settings=...) takes any object: its class
    # attributes count, as Django's own getattr finds them.
    class Defaults:
        CLOUDEVENTS_HANDLER = "console"

    holder = UserSettingsHolder(Defaults())
    monkeypatch.setattr(django_settings, "_wrapped", holder)
    assert conf.handler() == "console"
    assert conf.delivery() == "outbox"  # not set anywhere: the default
