"""Named-event handlers and watch classes narrowed by a Subscriptions API filter
(issue 18: one filter language wherever events are matched)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.test import Client

from django_cloudevents_bridge import catalogue, filters, handler
from django_cloudevents_bridge import events as ce
from django_cloudevents_bridge.bindings import http
from django_cloudevents_bridge.models import TargetRun
from django_cloudevents_bridge.targets import named, targets_for
from django_cloudevents_bridge.watches import WatchEvent
from django_cloudevents_bridge.watches.base import matching, unregister
from tests.testapp import events as testapp_events

# Finding an event's targets reads the database (the subscription sources).
pytestmark = pytest.mark.django_db


@pytest.fixture
def calls() -> Iterator[list[Any]]:
    testapp_events.calls.clear()
    yield testapp_events.calls
    testapp_events.calls.clear()


def us_desk(event: Any) -> None:
    testapp_events.calls.append(("us_desk", event.get_type(), event.get_data()))


@pytest.fixture
def function_handler() -> Iterator[None]:
    handler("testapp.Ref*", filter={"cesql": "region = 'us'"})(us_desk)
    yield
    named.unregister_handler(us_desk)


def refund(**extensions: str) -> Any:
    return ce.new(
        "testapp.Refund", source="/shop", data={"id": 7}, extensions=extensions or None
    )


def reached(event: Any) -> list[str]:
    return [
        t.name.rsplit(".", 1)[-1]
        for t in targets_for(event)
        if t.name.startswith("named:")
    ]


def test_a_method_handler_runs_only_for_events_that_pass_its_filter() -> None:
    assert reached(refund(region="eu")) == ["eu_desk", "ledger"]
    assert reached(refund(region="us")) == ["ledger"]
    assert reached(refund()) == ["ledger"]  # a missing extension fails exact


def test_a_function_handler_with_a_filter(function_handler) -> None:
    assert reached(refund(region="us")) == ["ledger", "us_desk"]
    assert reached(refund(region="eu")) == ["eu_desk", "ledger"]
    named.unregister_handler(us_desk)
    assert reached(refund(region="us")) == ["ledger"]


def test_registering_again_without_a_filter_drops_it() -> None:
    handler("testapp.Refund", filter={"exact": {"region": "nowhere"}})(us_desk)
    try:
        assert "us_desk" not in reached(refund(region="us"))
        handler("testapp.Refund")(us_desk)
        assert "us_desk" in reached(refund(region="us"))
    finally:
        named.unregister_handler(us_desk)


def test_a_bad_filter_is_refused_where_the_handler_is_declared() -> None:
    with pytest.raises(filters.InvalidFilter):
        handler("testapp.Refund", filter={"exactly": {"type": "x"}})
    with pytest.raises(filters.InvalidFilter):
        handler(filter={"cesql": "region ="})


@pytest.mark.django_db(transaction=True)
def test_received_events_run_only_the_handlers_whose_filter_they_pass(
    calls, function_handler, settings
) -> None:
    settings.CLOUDEVENTS_DELIVERY = "on_commit"
    settings.CLOUDEVENTS_HANDLER = "locmem"
    client = Client()
    for region in ("eu", "us"):
        headers, body = http.to_http(refund(region=region))
        content_type = headers.pop("Content-Type")
        response = client.post(
            "/cloudevents/", body, content_type=content_type, headers=headers
        )
        assert response.status_code in (200, 202), response.content
    assert sorted(name for name, _, _ in calls) == [
        "eu_desk",
        "ledger",
        "ledger",
        "us_desk",
    ]
    # Only the targets that ran have done-records: a filtered-out handler is no
    # target of that event, not a failed one.
    runs = sorted(TargetRun.objects.values_list("target", flat=True))
    assert len(runs) == 4 and all(r.startswith("named:testapp.Refund:") for r in runs)


def test_triggers_carry_the_named_handlers_filters(function_handler) -> None:
    routes = {r.name: r.filters for r in catalogue.routes()}
    # Refund's ledger handler takes every Refund: one Trigger by type alone.
    assert routes["named-testapp.Refund"] == [{"exact": {"type": "testapp.Refund"}}]


def test_triggers_split_per_filter_when_every_handler_has_one() -> None:
    handler("testapp.Purchase", filter={"exact": {"region": "eu"}})(us_desk)
    try:
        routes = {r.name: r.filters for r in catalogue.routes()}
        assert routes["named-testapp.Purchase"] == [
            {"exact": {"type": "testapp.Purchase"}},
            {"exact": {"region": "eu"}},
        ]
        out = StringIO()
        call_command(
            "cloudevents_triggers", "--service", "shop", "--format", "json", stdout=out
        )
        items = json.loads(out.getvalue())["items"]
        purchase = [
            i for i in items if i["metadata"]["name"].endswith("testapp-purchase")
        ]
        assert purchase[0]["spec"]["filters"][1] == {"exact": {"region": "eu"}}
    finally:
        named.unregister_handler(us_desk)


# -- watch classes -------------------------------------------------------------


@pytest.fixture
def wiki_watches() -> Iterator[tuple[type[WatchEvent], type[WatchEvent]]]:
    class WikiEdited(WatchEvent):
        event_type = "com.example.wiki.edited"
        event_filter = {"prefix": {"subject": "wiki/en/"}}

    class AnyEdit(WatchEvent):
        event_type = "com.example.wiki.edited"

    yield WikiEdited, AnyEdit
    unregister(WikiEdited)
    unregister(AnyEdit)


def edited(subject: str) -> Any:
    return ce.new("com.example.wiki.edited", source="/wiki", subject=subject)


def test_a_watch_class_with_an_event_filter_takes_only_what_passes(
    wiki_watches,
) -> None:
    only_en, any_edit = wiki_watches
    assert matching(edited("wiki/en/Main")) == [only_en, any_edit]
    assert matching(edited("wiki/de/Haupt")) == [any_edit]
    unregister(any_edit)
    event = edited("wiki/de/Haupt")
    assert matching(event) == []
    assert "watches" not in [t.name for t in targets_for(event)]
    assert "watches" in [t.name for t in targets_for(edited("wiki/en/Main"))]


def test_watch_classes_get_triggers_with_their_filter(wiki_watches) -> None:
    only_en, _ = wiki_watches
    routes = {r.name: r.filters for r in catalogue.routes()}
    assert routes[f"watch-{only_en.label()}"] == [
        {"exact": {"type": "com.example.wiki.edited"}},
        {"prefix": {"subject": "wiki/en/"}},
    ]


def test_a_bad_event_filter_is_refused_when_the_class_is_defined() -> None:
    with pytest.raises(ImproperlyConfigured, match="event_filter"):

        class Broken(WatchEvent):
            event_type = "com.example.broken"
            event_filter = {"prefix": {"subject": 3}}


def test_subscription_sources_get_triggers_with_their_filter() -> None:
    from django_cloudevents_bridge.models import Source, SourceGroup

    group = SourceGroup.objects.create(name="issues", display_name="Issues")
    Source.objects.create(
        name="commented",
        display_name="Commented",
        group=group,
        event_type="com.example.issue.commented",
        filter={"prefix": {"subject": "repo/"}},
    )
    routes = {r.name: r.filters for r in catalogue.routes()}
    assert routes["source-commented"] == [
        {"exact": {"type": "com.example.issue.commented"}},
        {"prefix": {"subject": "repo/"}},
    ]
