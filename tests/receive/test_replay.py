"""``manage.py cloudevents_replay``: stored events dispatched again."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from django_cloudevents_bridge import events, register_group_handler
from django_cloudevents_bridge.bindings import http
from django_cloudevents_bridge.models import ReceivedEvent, TargetRun
from django_cloudevents_bridge.targets.groups import unregister_group_handler

pytestmark = pytest.mark.django_db

T0 = datetime.datetime(2026, 11, 1, 9, 0, tzinfo=datetime.UTC)


class Handler:
    """A group handler that fails while ``broken`` and records its calls."""

    def __init__(self, name: str, *, broken: bool = False) -> None:
        self.__qualname__ = name  # the target's stable name in the store
        self.broken = broken
        self.calls: list[events.CloudEvent] = []

    def __call__(self, event: events.CloudEvent) -> None:
        self.calls.append(event)
        if self.broken:
            raise RuntimeError("handler bug")


@pytest.fixture
def flaky() -> Iterator[Handler]:
    handler = Handler("flaky", broken=True)
    register_group_handler(handler, group=r"^orders\.")
    yield handler
    unregister_group_handler(handler)


@pytest.fixture
def steady() -> Iterator[Handler]:
    handler = Handler("steady")
    register_group_handler(handler, group=r"^orders\.")
    yield handler
    unregister_group_handler(handler)


def receive(event: events.CloudEvent, *, at: datetime.datetime = T0) -> int:
    """POST the event to the receiver (binary mode); the status code."""
    headers, body = http.to_http(event)
    response = Client(enforce_csrf_checks=True).post(
        "/cloudevents/",
        body,
        content_type=headers.pop("Content-Type", None),
        headers=headers,
    )
    ReceivedEvent.objects.filter(event_id=event.get_id()).update(received_at=at)
    return response.status_code


def order(event_id: str, type: str = "orders.created", **kwargs) -> events.CloudEvent:
    return events.new(
        type, source="/shop", id=event_id, data={"order": event_id}, **kwargs
    )


def replay(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("cloudevents_replay", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def statuses(event_id: str) -> dict[str, str]:
    runs = TargetRun.objects.filter(event__event_id=event_id)
    return {run.target.rsplit(".", 1)[-1]: run.status for run in runs}


def test_failed_target_replayed_after_the_fix_is_done(flaky, steady):
    assert receive(order("o-1")) == 500
    assert statuses("o-1") == {"flaky": "failed", "steady": "done"}

    flaky.broken = False
    out, err = replay()

    assert "1 event(s) replayed: 1 target run(s) done, 0 failed" in out
    assert err == ""
    assert statuses("o-1") == {"flaky": "done", "steady": "done"}
    assert len(flaky.calls) == 2
    assert len(steady.calls) == 1  # done already: not run again
    assert flaky.calls[1].get_data() == {"order": "o-1"}


def test_default_replays_only_events_that_owe_work(flaky):
    flaky.broken = False
    receive(order("ok"))
    flaky.broken = True
    receive(order("bad"))

    flaky.broken = False
    out, _ = replay()

    assert "1 event(s) replayed" in out
    assert [e.get_id() for e in flaky.calls] == ["ok", "bad", "bad"]


def test_still_failing_is_reported_and_exits_non_zero(flaky):
    receive(order("o-1"))

    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError, match="1 target run"):
        call_command("cloudevents_replay", stdout=out, stderr=err)

    assert "1 event(s) replayed: 0 target run(s) done, 1 failed" in out.getvalue()
    assert "orders.created o-1 (/shop)" in err.getvalue()
    assert TargetRun.objects.get().attempts == 2


def test_all_targets_reruns_done_ones(steady):
    receive(order("o-1"))
    receive(order("p-1", type="orders.paid"))

    out, _ = replay("--all-targets", "--type", "orders.paid")

    assert "1 event(s) replayed: 1 target run(s) done" in out
    assert [e.get_id() for e in steady.calls] == ["o-1", "p-1", "p-1"]
    assert TargetRun.objects.get(event__event_id="p-1").attempts == 2


def test_all_targets_needs_a_filter(steady):
    receive(order("o-1"))

    with pytest.raises(CommandError, match="--all-targets needs"):
        replay("--all-targets")

    assert len(steady.calls) == 1


def test_filters_by_id_source_and_time(steady):
    for n in range(4):
        receive(order(f"o-{n}"), at=T0 + datetime.timedelta(hours=n))

    replay("--all-targets", "--id", "o-0", "--id", "o-3")
    replay(
        "--all-targets",
        "--since",
        "2026-11-01T10:00:00Z",
        "--until",
        "2026-11-01T12:00:00+00:00",
    )
    replay("--all-targets", "--source", "/elsewhere")

    replayed = [e.get_id() for e in steady.calls[4:]]
    assert replayed == ["o-0", "o-3", "o-1", "o-2"]


def test_naive_and_date_only_times_are_in_the_current_time_zone(steady):
    receive(order("o-1"), at=T0)

    out, _ = replay(
        "--all-targets", "--since", "2026-11-01", "--until", "2026-11-01 09:00:01"
    )

    assert "1 event(s) replayed" in out


def test_dry_run_lists_and_runs_nothing(flaky):
    receive(order("o-1"))

    out, _ = replay("--dry-run")

    assert "would replay orders.created o-1 (/shop)" in out
    assert "1 event(s) would be replayed" in out
    assert len(flaky.calls) == 1


def test_binary_data_survives_the_store(steady):
    receive(
        events.new(
            "orders.scanned",
            source="/scanner",
            id="s-1",
            data=b"\x00\xff",
            datacontenttype="application/octet-stream",
        )
    )

    replay("--all-targets", "--id", "s-1")

    assert [e.get_data() for e in steady.calls] == [b"\x00\xff", b"\x00\xff"]


@pytest.mark.parametrize("text", ["last tuesday", "2026-02-30", "2026-11-01T25:00"])
def test_invalid_time_is_a_usage_error(text):
    with pytest.raises(CommandError, match="--since: not an ISO 8601 date or datetime"):
        replay("--since", text)
