"""notify() racing itself: one watch, on PostgreSQL (SQLite serialises writers)."""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.db import connection

from django_cloudevents_bridge.models import Watch
from tests.watches.watchers import EditInLanguage

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]

THREADS = 8


def race(function, *args, **kwargs) -> list:
    """Call ``function`` in THREADS threads released at once; their results."""
    barrier = threading.Barrier(THREADS)
    results: list = []
    errors: list = []

    def run() -> None:
        try:
            barrier.wait(timeout=60)
            results.append(function(*args, **kwargs))
        except Exception as err:  # reported by the test, not lost in the thread
            errors.append(err)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert len(results) == THREADS
    return results


@pytest.mark.parametrize("who", ["user", "address"])
def test_concurrent_notify_makes_one_watch(who, settings):
    assert connection.vendor == "postgresql"
    if who == "user":
        watcher = get_user_model().objects.create_user("ann", "ann@example.org", "x")
    else:
        watcher = "ann@example.org"
    for language in ("de", "fr", "it"):
        watches = race(EditInLanguage.notify, watcher, language=language)
        assert len({watch.pk for watch in watches}) == 1
    race(EditInLanguage.notify, watcher)  # no filter, no object: unique too
    assert Watch.objects.count() == 4
    if who == "address":  # one mail per watch, three per address and hour
        assert len(mail.outbox) == 3
