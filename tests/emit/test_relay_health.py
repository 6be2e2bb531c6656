"""Events waiting with no relay to send them are visible: check, stats, admin.

The web process does not send events by default; the relay does. A project that
never starts one must hear about it: the system check W005 (with ``databases``),
``cloudevents_outbox stats`` and the outbox admin say how old the oldest pending
event is and when a relay was last seen; a fresh heartbeat silences them.
"""

from __future__ import annotations

import datetime
import json
import re
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from django_cloudevents_bridge import checks
from django_cloudevents_bridge.emit import outbox
from django_cloudevents_bridge.models import OutboxEvent, RelayHeartbeat
from tests.testapp.models import Question

pytestmark = pytest.mark.django_db(transaction=True)

CHANGELIST = "/admin/django_cloudevents_bridge/outboxevent/"


@pytest.fixture
def waiting_event(settings):
    """A pending event written ten minutes ago (default settings: nobody sent it)."""
    settings.CLOUDEVENTS_DELIVERY = "outbox"
    del settings.CLOUDEVENTS_OUTBOX  # the defaults: BACKGROUND off
    Question.objects.create(question_text="?", pub_date=timezone.now())
    ten_minutes_ago = timezone.now() - datetime.timedelta(minutes=10)
    OutboxEvent.objects.update(created_at=ten_minutes_ago)
    return OutboxEvent.objects.get()


def beat(name: str = "relay-host:42", ago: float = 0.0) -> None:
    RelayHeartbeat.objects.beat(name)
    seen = timezone.now() - datetime.timedelta(seconds=ago)
    RelayHeartbeat.objects.filter(name=name).update(last_seen=seen)


def relay_warnings() -> list:
    return checks.check_relay(databases=["default"])


def stats() -> dict:
    out, err = StringIO(), StringIO()
    call_command("cloudevents_outbox", "stats", "--json", stdout=out, stderr=err)
    return json.loads(out.getvalue())


def test_the_check_warns_when_events_wait_and_no_relay_ever_ran(waiting_event):
    [warning] = relay_warnings()
    assert warning.id == "cloudevents_bridge.W005"
    assert "the oldest for 10 min" in warning.msg
    assert "no relay is running" in warning.msg
    assert "cloudevents_relay" in warning.msg


def test_the_check_names_when_the_relay_was_last_seen(waiting_event):
    beat(ago=600)
    [warning] = relay_warnings()
    assert "a relay was last seen 10 min ago" in warning.msg


def test_a_fresh_heartbeat_silences_the_check(waiting_event):
    beat()
    assert relay_warnings() == []


def test_young_events_are_not_reported(waiting_event):
    OutboxEvent.objects.update(created_at=timezone.now())
    assert relay_warnings() == []


def test_delivered_and_parked_events_are_not_reported(waiting_event):
    OutboxEvent.objects.update(status="parked")
    assert relay_warnings() == []


def test_the_check_makes_no_query_without_databases(
    waiting_event, django_assert_num_queries
):
    # A plain `manage.py check` (and runserver) passes no databases.
    with django_assert_num_queries(0):
        assert checks.check_relay(databases=None) == []


def test_the_check_skips_a_database_that_is_not_migrated(waiting_event, monkeypatch):
    # migrate runs the checks (with its database) before it creates the tables.
    monkeypatch.setattr(
        type(checks.connections["default"].introspection),
        "table_names",
        lambda self, cursor=None, include_views=False: [],
    )
    assert relay_warnings() == []


def test_the_check_skips_a_database_it_cannot_reach(waiting_event, monkeypatch):
    from django.db import DatabaseError

    def broken(self, cursor=None, include_views=False):
        raise DatabaseError("server closed the connection unexpectedly")

    monkeypatch.setattr(
        type(checks.connections["default"].introspection), "table_names", broken
    )
    assert relay_warnings() == []


def test_manage_py_check_with_a_database_runs_it(waiting_event):
    err = StringIO()
    call_command("check", databases=["default"], stderr=err, stdout=StringIO())
    assert "cloudevents_bridge.W005" in err.getvalue()


def test_stats_reports_the_wait_and_the_relay(waiting_event):
    found = stats()
    assert found["pending"] == 1
    assert found["oldest_pending_age"] >= 600
    assert found["relay_last_seen_age"] is None
    assert "no relay is running" in found["waiting_without_relay"]
    beat(ago=1)
    found = stats()
    assert 1 <= found["relay_last_seen_age"] < outbox.RELAY_GONE
    assert found["waiting_without_relay"] is None


def test_stats_as_text_warns_on_stderr(waiting_event):
    out, err = StringIO(), StringIO()
    call_command("cloudevents_outbox", "stats", stdout=out, stderr=err)
    assert "oldest_pending_age: " in out.getvalue()
    assert "relay_last_seen_age: None" in out.getvalue()
    assert "warning: CloudEvents are waiting in the outbox" in err.getvalue()
    beat()
    out, err = StringIO(), StringIO()
    call_command("cloudevents_outbox", "stats", stdout=out, stderr=err)
    assert err.getvalue() == ""


def test_the_admin_warns_then_summarizes(waiting_event, admin_client):
    page = admin_client.get(CHANGELIST).content.decode()
    assert "CloudEvents are waiting in the outbox" in page
    assert "no relay is running" in page
    beat(ago=3)
    page = admin_client.get(CHANGELIST).content.decode()
    assert "CloudEvents are waiting" not in page
    assert re.search(r"Oldest pending event: 10 min; last relay seen: \d+ s ago", page)


def test_the_admin_says_nothing_when_nothing_is_pending(settings, admin_client):
    page = admin_client.get(CHANGELIST).content.decode()
    assert "Oldest pending event" not in page
    assert "CloudEvents are waiting" not in page


def test_the_admin_lists_relays(admin_client):
    beat("pod-1:7")
    page = admin_client.get("/admin/django_cloudevents_bridge/relayheartbeat/")
    assert "pod-1:7" in page.content.decode()
    assert (
        admin_client.get(
            "/admin/django_cloudevents_bridge/relayheartbeat/add/"
        ).status_code
        == 403
    )


def test_a_heartbeat_is_one_row_per_relay_updated_in_place():
    beat("a:1", ago=30)
    first = RelayHeartbeat.objects.get()
    RelayHeartbeat.objects.beat("a:1")
    again = RelayHeartbeat.objects.get()
    assert again.pk == first.pk and again.started_at == first.started_at
    assert again.last_seen > first.last_seen
    assert RelayHeartbeat.objects.last_seen() == again.last_seen


def test_the_admin_summarizes_young_events_with_no_relay(waiting_event, admin_client):
    OutboxEvent.objects.update(created_at=timezone.now())
    page = admin_client.get(CHANGELIST).content.decode()
    assert "Oldest pending event: 0 min; last relay seen: none running" in page


@pytest.mark.parametrize(
    ("age", "seen", "says"),
    [
        (400, 90, "the oldest for 7 min) and a relay was last seen 90 s ago"),
        (3 * 3600, 5 * 3600, "the oldest for 3.0 h) and a relay was last seen 5.0 h"),
        (400, 59, None),  # the relay is alive: it will get to them
        (299, None, None),  # young: nothing to say yet
        (None, None, None),  # nothing pending
    ],
)
def test_what_waiting_says(age, seen, says):
    found = outbox.waiting({"oldest_pending_age": age, "relay_last_seen_age": seen})
    assert found == says or (says is not None and says in found)
