"""The delivery ledger: one row per (event, recipient, channel), sent once."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_cloudevents_bridge.models import Delivery
from django_cloudevents_bridge.notifications import (
    address_key,
    normalise_address,
    record,
    send_due,
    user_key,
)
from django_cloudevents_bridge.notifications.channels import (
    BaseChannel,
    PermanentFailure,
)
from django_cloudevents_bridge.notifications.ledger import CHUNK

from .conftest import event, items, person
from .conftest import mail as message

Status = Delivery.Status
pytestmark = pytest.mark.django_db


class FlakyChannel(BaseChannel):
    """Fails every delivery whose message says so, as its text says."""

    def dump(self, message: Any) -> dict[str, Any]:
        return {"text": message}

    def load(self, data: dict[str, Any]) -> Any:
        return data["text"]

    def send(self, deliveries: Sequence[Delivery]) -> Iterator[tuple[Delivery, Any]]:
        for delivery in deliveries:
            text = self.load(delivery.message)
            if text.startswith("permanent"):
                yield delivery, PermanentFailure(text)
            elif text.startswith("fail"):
                yield delivery, ConnectionError(text)
            elif text != "skip":
                yield delivery, None


@pytest.fixture
def flaky(settings) -> None:
    settings.CLOUDEVENTS_NOTIFICATIONS = {
        **settings.CLOUDEVENTS_NOTIFICATIONS,
        "CHANNELS": {"flaky": f"{__name__}.FlakyChannel"},
        "MAX_ATTEMPTS": 3,
    }


def test_keys_of_recipients():
    class User:
        pk = 7

    assert normalise_address("  Ann@Example.COM ") == "ann@example.com"
    assert address_key(" Ann@Example.COM") == "email:ann@example.com"
    assert user_key(User()) == "user:7"


def test_record_writes_one_pending_row_per_recipient_with_the_message():
    assert record(event(), "email", items("ann@example.com", "bob@example.com")) == 2

    rows = list(Delivery.objects.order_by("recipient"))
    assert [row.recipient for row in rows] == [
        "email:ann@example.com",
        "email:bob@example.com",
    ]
    ann = rows[0]
    assert (ann.source, ann.event_id, ann.event_type, ann.channel) == (
        "/wiki",
        "e-1",
        "com.example.wiki.edit",
        "email",
    )
    assert ann.status == Status.PENDING and ann.attempts == 0
    assert ann.next_attempt_at is not None
    assert ann.message["to"] == ["ann@example.com"]
    assert ann.message["subject"] == "Page edited"
    assert ann.reasons == [{"kind": "watch", "id": 1, "class": "wiki.EditDocument"}]


def test_a_redelivered_event_or_a_retry_records_nobody_twice():
    assert record(event(), "email", items("ann@example.com")) == 1
    assert send_due() == Counter(sent=1)
    # The same event again (the broker redelivers, the task is retried), with
    # one more person: only that person is new.
    again = items("ann@example.com", "bob@example.com")
    assert record(event(), "email", again) == 1
    assert send_due() == Counter(sent=1)
    assert [m.to for m in mail.outbox] == [["ann@example.com"], ["bob@example.com"]]
    assert Delivery.objects.count() == 2
    # Another event, or another channel, is another delivery.
    assert record(event("e-2"), "email", items("ann@example.com")) == 1
    assert record(event(source="/other"), "email", items("ann@example.com")) == 1


def test_record_writes_in_the_callers_transaction():
    with pytest.raises(RuntimeError), transaction.atomic():
        assert record(event(), "email", items("ann@example.com")) == 1
        raise RuntimeError("the fan-out failed")
    assert not Delivery.objects.exists()
    assert send_due() == Counter()


def test_record_inserts_in_chunks_from_a_generator():
    count = CHUNK * 2 + 50
    generated = (
        (person(f"p{n}@example.com"), message(f"p{n}@example.com"))
        for n in range(count)
    )
    with CaptureQueriesContext(connection) as queries:
        assert record(event(), "email", generated) == count
    inserts = [q for q in queries.captured_queries if q["sql"].startswith("INSERT")]
    assert len(inserts) == 3
    assert Delivery.objects.count() == count
    assert record(event(), "email", items("p0@example.com", "new@example.com")) == 1


def test_long_sources_and_addresses_fit_the_unique_key():
    long_source = "https://example.com/" + "s" * 1000
    address = "a" * 64 + "@" + "d" * 185 + ".com"  # 254, the longest there is
    assert record(event(source=long_source), "email", items(address)) == 1
    assert record(event(source=long_source), "email", items(address)) == 0
    assert len(Delivery.objects.get().key) == 64
    with pytest.raises(ValueError, match="a recipient key is 1 to 320 characters"):
        record(event(), "email", items("a" * 400 + "@example.com"))


def test_an_unknown_channel_or_message_is_a_clear_error():
    with pytest.raises(LookupError, match="no notification channel 'sms'"):
        record(event(), "sms", items("ann@example.com"))
    with pytest.raises(TypeError, match="EmailMessage"):
        record(event(), "email", [(person("ann@example.com"), "just text")])
    assert not Delivery.objects.exists()


def test_sending_is_enqueued_after_commit(settings, django_capture_on_commit_callbacks):
    settings.CLOUDEVENTS_RECEIVER = {"TASK_BACKEND": "default"}  # immediate tasks
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        record(event(), "email", items("ann@example.com"))
    assert mail.outbox == []  # nothing before the commit
    for callback in callbacks:
        callback()
    assert [m.to for m in mail.outbox] == [["ann@example.com"]]
    assert Delivery.objects.get().status == Status.SENT
    # Nothing new: nothing enqueued.
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        record(event(), "email", items("ann@example.com"))
    assert callbacks == []


def test_a_failed_enqueue_is_a_warning_and_the_worker_sends_later(
    settings, django_capture_on_commit_callbacks, caplog
):
    settings.CLOUDEVENTS_RECEIVER = {"TASK_BACKEND": "nowhere"}
    with django_capture_on_commit_callbacks(execute=True):
        assert record(event(), "email", items("ann@example.com")) == 1
    assert "Could not enqueue sending notifications" in caplog.text
    assert mail.outbox == []
    assert send_due() == Counter(sent=1)


def test_failures_are_retried_with_backoff_then_parked(flaky):
    record(
        event(),
        "flaky",
        [(person("ok@x.org"), "hello"), (person("down@x.org"), "fail: downstream")],
    )
    assert send_due() == Counter(sent=1, failed=1)
    failed = Delivery.objects.get(recipient="email:down@x.org")
    assert failed.status == Status.FAILED and failed.attempts == 1
    assert failed.last_error == "ConnectionError: fail: downstream"
    assert failed.next_attempt_at > timezone.now() + timedelta(seconds=50)
    assert send_due() == Counter()  # not due yet

    for attempt, expected in ((2, "failed"), (3, "parked")):
        Delivery.objects.filter(pk=failed.pk).update(next_attempt_at=timezone.now())
        assert send_due() == Counter({expected: 1})
        failed.refresh_from_db()
        assert failed.attempts == attempt
    assert failed.status == Status.PARKED and failed.next_attempt_at is None

    assert Delivery.objects.filter(pk=failed.pk).retry() == 1
    failed.refresh_from_db()
    assert (failed.status, failed.attempts) == (Status.PENDING, 0)


def test_a_permanent_failure_is_parked_at_once_and_errors_are_redacted(flaky):
    record(event(), "flaky", [(person("a@x.org"), "permanent: password=hunter2")])
    assert send_due() == Counter(parked=1)
    parked = Delivery.objects.get()
    assert parked.status == Status.PARKED and parked.attempts == 1
    assert "hunter2" not in parked.last_error


def test_a_delivery_its_channel_did_not_report_is_retried(flaky):
    record(event(), "flaky", [(person("a@x.org"), "skip")])
    assert send_due() == Counter(failed=1)
    assert "not sent by its channel" in Delivery.objects.get().last_error


def test_a_channel_no_longer_configured_fails_its_deliveries(flaky, settings):
    record(event(), "flaky", [(person("a@x.org"), "hello")])
    settings.CLOUDEVENTS_NOTIFICATIONS = {"BASE_URL": "https://example.com"}
    assert send_due() == Counter(failed=1)
    assert "no notification channel 'flaky'" in Delivery.objects.get().last_error


def test_send_due_sends_in_batches_and_stops_when_asked(settings):
    settings.CLOUDEVENTS_NOTIFICATIONS = {
        **settings.CLOUDEVENTS_NOTIFICATIONS,
        "BATCH": 2,
    }
    record(event(), "email", items(*(f"p{n}@example.com" for n in range(5))))
    stop = threading.Event()
    stop.set()
    assert send_due(stop=stop) == Counter()
    assert send_due() == Counter(sent=5)
    assert len(mail.outbox) == 5


# PostgreSQL: concurrent writers and workers on one ledger.


def _waiting_on_a_lock() -> bool:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
        return bool(cursor.fetchone()[0])


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_fan_outs_of_one_event_record_each_person_once():
    people = [f"p{n}@example.com" for n in range(20)]
    results: dict[str, int] = {}
    first_wrote = threading.Event()
    second_started = threading.Event()

    def fan_out(name: str) -> None:
        try:
            with transaction.atomic():
                if name == "second":
                    first_wrote.wait(30)
                    second_started.set()
                results[name] = record(event(), "email", items(*people))
                if name == "first":
                    first_wrote.set()
                    second_started.wait(30)
                    # Commit only once the second waits on the unique key.
                    deadline = timezone.now() + timedelta(seconds=30)
                    while not _waiting_on_a_lock() and timezone.now() < deadline:
                        threading.Event().wait(0.01)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=fan_out, args=(n,)) for n in ("first", "second")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results == {"first": 20, "second": 0}
    assert Delivery.objects.count() == 20
    assert send_due() == Counter(sent=20)
    assert sorted(m.to[0] for m in mail.outbox) == sorted(people)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_workers_send_each_delivery_once(settings):
    settings.CLOUDEVENTS_NOTIFICATIONS = {
        **settings.CLOUDEVENTS_NOTIFICATIONS,
        "BATCH": 7,
    }
    people = [f"p{n}@example.com" for n in range(300)]
    record(event(), "email", items(*people))
    counts: list[Counter[str]] = []
    start = threading.Barrier(2)

    def worker() -> None:
        try:
            start.wait(30)
            counts.append(send_due())
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sum(counts, Counter()) == Counter(sent=300)
    assert sorted(m.to[0] for m in mail.outbox) == sorted(people)
    assert set(Delivery.objects.values_list("status", "attempts")) == {(Status.SENT, 1)}
