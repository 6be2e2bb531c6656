"""Settings are read at call time: a changed or deleted setting is seen at once."""

from __future__ import annotations

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
        del django_settings.CLOUDEVENTS_DELIVERY  # sends no setting_changed
        assert conf.delivery() == "outbox"  # the default
        assert "testapp.Choice" in conf.models()  # the others stay as they were
    assert conf.delivery() == "on_commit"
