"""Watch lookup on PostgreSQL: cost follows the matches, not the watches of a type.

``python -m bench.watches`` (``--watches 1000000`` for the full size) creates its
own PostgreSQL database (dropped at the end), fills it with watches over ten
event types, one or two filters each, skewed like a real site (one very popular
value, a popular one, a long tail), and times the lookup of one event:

- ``<=100``: an event of a long-tail type: the people, fully read;
- ``~1,000``: an event of a popular value: the people, fully read;
- ``~50,000``: an event of the most popular value: streamed, to the first batch
  (``lookup.CHUNK`` people) and to the end, with the Python memory peak of the
  whole stream (tracemalloc), which does not grow with the matches;
- ``end to end``: an event POSTed to the receiver view (Django's test client:
  store and dispatch; the deferred target run on the worker loop: lookup,
  ``mails()`` and ``record()`` into the ledger) to its 1,000 watchers'
  messages handed to the e-mail backend (locmem) by ``send_due()`` (claims,
  unsubscribe links, one outcome per message).

Times are medians over ``--repeat`` runs; queries are counted per lookup. The
plans of the small and ~1,000 lookups are printed with the bench's and the
default ``random_page_cost``, to show the partial index and the user looked up
by key are used under both.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from bench import settings as bench_settings

TYPES = 10
# With the default random_page_cost (4, for spinning disks) PostgreSQL joins a
# few hundred matches to a table of tens of thousands of users by hashing the
# whole table (its cost then follows the users); at 1.1, the usual SSD setting,
# it looks each match's user up by primary key. --random-page-cost 4 shows both.
PLANNER = "1.1"
USERS = 0.25  # users per watch: every fourth watch is a user's


def configure(name: str) -> None:
    import django
    from django.conf import settings

    database = {**bench_settings.postgres(), "NAME": name}
    if PLANNER:  # the usual setting for a database on SSD, or all in memory
        database["OPTIONS"] = {"options": f"-c random_page_cost={PLANNER}"}
    settings.configure(
        SECRET_KEY="bench-only",
        USE_TZ=True,
        TIME_ZONE="UTC",
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "django_cloudevents_bridge",
        ],
        DATABASES={"default": database},
        CLOUDEVENTS_SOURCE="urn:django:bench",
        CLOUDEVENTS_HANDLER="locmem",
        CLOUDEVENTS_RECEIVER={"MODE": "inline", "TASK_BACKEND": False},
        EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
        ROOT_URLCONF="bench.notify_urls",  # the unsubscribe links' route
        CLOUDEVENTS_NOTIFICATIONS={"BASE_URL": "https://example.com"},
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "APP_DIRS": True,
            }
        ],
        LOGGING_CONFIG=None,
        ALLOWED_HOSTS=["testserver"],  # the end to end's test client
    )
    django.setup()


def set_planner(cost: str) -> None:
    global PLANNER
    PLANNER = str(float(cost))


def admin(sql: str) -> None:
    """Run one statement on the maintenance database (CREATE/DROP DATABASE)."""
    import psycopg

    db = bench_settings.postgres()
    with psycopg.connect(
        host=db["HOST"],
        port=db["PORT"],
        user=db["USER"],
        password=db["PASSWORD"] or None,
        dbname="postgres",
        autocommit=True,
    ) as connection:
        connection.execute(sql)  # type: ignore[arg-type]


def classes() -> list[Any]:
    """Ten watch classes: types 0-1 one filter, the others two."""
    from django_cloudevents_bridge.watches import WatchEvent

    made = []
    for number in range(TYPES):
        filters = {"lang"} if number < 2 else {"lang", "topic"}
        made.append(
            type(
                f"Bench{number}",
                (WatchEvent,),
                {
                    "__module__": __name__,
                    "event_type": f"bench.t{number}",
                    "filters": filters,
                },
            )
        )
    return made


def rows(total: int, users: Sequence[Any]) -> Iterator[Any]:
    """The watches: 50,000 on type 0's value "en", 1,000 on type 1's "de" (a
    quarter and 0.5% at 200,000), the rest spread over long tails (50 languages
    x 2,000 topics)."""
    from django_cloudevents_bridge.models import Watch
    from django_cloudevents_bridge.watches import keys

    rng = random.Random(15)
    popular, medium = min(50_000, total // 4), min(1_000, total // 200)
    for i in range(total):
        if i < popular:
            number, filters = 0, {"lang": "en"}
        elif i < popular + medium:
            number, filters = 1, {"lang": "de"}
        elif i < popular + medium + total // 10:
            number, filters = rng.randrange(2), {"lang": f"l{rng.randrange(1, 50)}"}
        else:
            number = rng.randrange(2, TYPES)
            filters = {"lang": f"l{int(rng.paretovariate(1.2)) % 50}"}
            if rng.random() < 0.7:
                filters["topic"] = f"x{int(rng.paretovariate(0.8)) % 2000}"
        key = keys.match_key(f"bench.t{number}", None, None, filters)
        # Every fourth watch a user's (each user once): the rest anonymous.
        user = users[i // 4] if i % 4 == 0 and i // 4 < len(users) else None
        email = f"w{i}@example.org"
        yield Watch(
            event_type=f"bench.t{number}",
            filters=filters,
            key=key,
            key_digest=keys.digest(key),
            owner=keys.owner_of(user, email),
            user=user,
            email="" if user else email,
            active=True,
        )


def fill(total: int) -> None:
    import itertools

    from django.contrib.auth import get_user_model
    from django.db import connection

    from django_cloudevents_bridge.models import Watch

    model = get_user_model()
    users = model.objects.bulk_create(
        (
            model(username=f"u{i}", email=f"u{i}@example.org")
            for i in range(int(total * USERS))
        ),
        batch_size=5000,
    )
    stream = rows(total, users)
    while batch := list(itertools.islice(stream, 5000)):
        Watch.objects.bulk_create(batch)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")  # statistics, as a live site has them


def median_ms(function: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Median time of ``function`` in a transaction, as the worker runs targets
    (in autocommit, Django's server-side cursor is WITH HOLD: materialised)."""
    from django.db import transaction

    times, result = [], None
    for _ in range(repeat):
        with transaction.atomic():
            start = time.perf_counter()
            result = function()
            times.append((time.perf_counter() - start) * 1000)
    best.append(min(times))  # the quietest run, printed next to the median
    return statistics.median(times), result


best: list[float] = []


def count_queries(function: Callable[[], Any]) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        function()
    return len(queries)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.watches")
    parser.add_argument("--watches", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--random-page-cost", default=PLANNER)
    options = parser.parse_args(argv)
    set_planner(options.random_page_cost)
    problem = bench_settings.postgres_problem()
    if problem:
        print(f"bench.watches needs PostgreSQL: {problem}", file=sys.stderr)
        return 1
    name = f"bench_watches_{int(time.time())}"
    admin(f'CREATE DATABASE "{name}"')
    try:
        configure(name)
        return run(options.watches, options.repeat)
    finally:
        from django.db import connections

        connections.close_all()
        admin(f'DROP DATABASE IF EXISTS "{name}"')


def run(total: int, repeat: int) -> int:
    import itertools

    from django.core import mail
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.test import Client

    from django_cloudevents_bridge import events, work
    from django_cloudevents_bridge.bindings.jsonformat import STRUCTURED_JSON, to_json
    from django_cloudevents_bridge.notifications import send_due
    from django_cloudevents_bridge.watches import lookup

    call_command("migrate", verbosity=0)
    made = classes()
    start = time.perf_counter()
    fill(total)
    print(
        f"random_page_cost={PLANNER}; "
        f"{total:,} watches over {len(made)} types, {int(total * USERS):,} users "
        f"(filled in {time.perf_counter() - start:.0f} s)"
    )

    def event(number: int, **extensions: str) -> Any:
        return events.new(f"bench.t{number}", extensions=extensions)

    # A long-tail event: the one with the most matches up to 100 among a few.
    tries = [
        event(n, lang=f"l{lang}", topic=f"x{topic}")
        for n in (2, 3, 4)
        for lang in (3, 7, 20)
        for topic in (5, 50, 500)
    ]
    counted = [(sum(1 for _ in lookup.people(e)), e) for e in tries]
    small = max((pair for pair in counted if pair[0] <= 100), key=lambda p: p[0])[1]
    medium, large = event(1, lang="de"), event(0, lang="en")

    def everyone(e: Any) -> Callable[[], int]:
        return lambda: sum(1 for _ in lookup.people(e))

    def first_batch() -> int:
        return len(list(itertools.islice(lookup.people(large), lookup.CHUNK)))

    print(f"\n{'lookup':<34}{'matches':>9}{'queries':>9}{'median ms':>11}{'min':>8}")
    for label, e, target_ms in (
        ("<=100 matches, all read", small, 2),
        ("~1,000 matches, all read", medium, 15),
    ):
        ms, found = median_ms(everyone(e), repeat)
        queries = count_queries(everyone(e))
        print(
            f"{label:<34}{found:>9,}{queries:>9}{ms:>11.2f}{best[-1]:>8.2f}"
            f"  (target <= {target_ms})"
        )
    ms, _ = median_ms(first_batch, repeat)
    first_best = best[-1]
    full_ms, found = median_ms(everyone(large), max(3, repeat // 5))
    print(
        f"{'~50,000: first batch of ' + str(lookup.CHUNK):<34}{found:>9,}"
        f"{count_queries(first_batch):>9}{ms:>11.2f}{first_best:>8.2f}"
        "  (target <= 250)"
    )
    print(
        f"{'~50,000: all read':<34}{found:>9,}{'':>9}{full_ms:>11.2f}{best[-1]:>8.2f}"
    )

    peaks = {}
    for label, e in (("~1,000", medium), ("~50,000", large)):
        tracemalloc.start()
        median_ms(everyone(e), 1)
        peaks[label] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    print(
        "Python memory peak while streaming: "
        + ", ".join(f"{label} {peak / 1024:.0f} KiB" for label, peak in peaks.items())
    )

    # End to end: POSTed to the receiver view, run on the worker loop (lookup,
    # mails() into the ledger), then sent from the ledger: 1,000 messages.
    client = Client()
    times, sent = [], 0
    for i in range(max(3, repeat // 3)):
        mail.outbox = []
        received = events.new("bench.t1", id=f"e2e-{i}", extensions={"lang": "de"})
        body = to_json(received)
        start = time.perf_counter()
        response = client.post("/cloudevents/", body, content_type=STRUCTURED_JSON)
        assert response.status_code < 300, response.content
        outcome = work.process()
        recorded = time.perf_counter()
        sent = send_due()["sent"]
        times.append(
            ((recorded - start) * 1000, (time.perf_counter() - recorded) * 1000)
        )
        assert outcome == {"done": 1}, outcome
        assert sent == len(mail.outbox), (sent, len(mail.outbox))
    steps = [statistics.median(step) for step in zip(*times, strict=True)]
    print(
        f"\nend to end: receipt to {sent:,} messages handed to the e-mail backend "
        f"(locmem) through the ledger: {sum(steps):.0f} ms (median; receipt, "
        f"lookup, mails() and record() {steps[0]:.0f} ms, send_due() "
        f"{steps[1]:.0f} ms)"
    )

    for cost in sorted({float(PLANNER), 4.0}):
        for label, e in (("small", small), ("~1,000", medium)):
            sql, params = lookup.statement(lookup.candidates(e), "default")
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(f"SET LOCAL random_page_cost = {cost}")
                cursor.execute("EXPLAIN " + sql, params)
                plan_steps = [row[0].strip().split("  (")[0] for row in cursor]
            plan = " / ".join(s for s in plan_steps if "Scan" in s or "Join" in s)
            print(f"plan, {label} lookup, random_page_cost={cost}: {plan}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
