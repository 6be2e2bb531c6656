"""A source's Subscriptions-API ``filter`` narrows the events it stands for."""

from __future__ import annotations

from django_cloudevents_bridge.models import Event
from django_cloudevents_bridge.targets import subscriptions as target
from django_cloudevents_bridge.targets import targets_for

from .conftest import cloudevent


def has_target(event) -> bool:
    return target.NAME in [t.name for t in targets_for(event)]


def test_only_events_that_pass_the_filter_get_the_target(source) -> None:
    source.filter = {"exact": {"region": "eu"}}
    source.save()  # forgets the process's list of sources at once
    assert has_target(cloudevent(extensions={"region": "eu"}))
    assert not has_target(cloudevent(extensions={"region": "us"}))
    assert not has_target(cloudevent())  # a missing extension fails exact


def test_a_run_checks_the_filter_again(source) -> None:
    source.filter = {"cesql": "region = 'eu'"}
    source.save()
    assert target.notify_subscribers(cloudevent(extensions={"region": "us"})) == 0
    assert not Event.objects.exists()
    target.notify_subscribers(cloudevent(extensions={"region": "eu"}))
    assert Event.objects.count() == 1


def test_an_invalid_filter_lets_no_event_through_and_raises_nothing(
    source, caplog
) -> None:
    source.filter = {"exact": {"region": 5}}  # values are strings
    source.save()
    assert not has_target(cloudevent(extensions={"region": "5"}))
    assert "invalid filter" in caplog.text
    source.filter = None
    source.save()
    assert has_target(cloudevent())
