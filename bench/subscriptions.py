"""Subscriptions on PostgreSQL: the targets of one event in one statement, a feed page.

``python -m bench.subscriptions`` creates its own PostgreSQL database (dropped at
the end) and seeds it with COPY in the shape entity-event was measured with:
100,000 users in 1,000 groups (every user in a home group, 10% in a second one);
1,000 group subscriptions with ``only_following``, 100 plain group ones, 50
individual ones and 25 unsubscriptions, spread over 10 sources of one medium;
100,000 stored events (a user and a group as actors each). It prints:

- the targets of one event (a user and a group as actors): median time, the
  number of queries (1), the people reached and the duplicates among them (0);
- the query count of the resolution at 1, 100 and 10,000 subscriptions;
- one subscriber's feed page (50 events) among the 100,000: a plain and a
  following ("only_following") subscriber, median time and queries (<= 3).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from bench import settings as bench_settings
from bench.watches import admin

USERS, GROUPS, SOURCES = 100_000, 1_000, 10


def configure(name: str) -> None:
    import django
    from django.conf import settings

    database = {**bench_settings.postgres(), "NAME": name}
    database["OPTIONS"] = {"options": "-c random_page_cost=1.1"}
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
        LOGGING_CONFIG=None,
    )
    django.setup()


def copy(table: str, columns: list[str], rows: Any) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
        with cursor.cursor.copy(sql) as stream:
            for row in rows:
                stream.write_row(row)


def seed(events: int) -> dict[str, Any]:
    from django.contrib.auth.models import Group, User
    from django.contrib.contenttypes.models import ContentType
    from django.db import connection
    from django.utils import timezone

    from django_cloudevents_bridge.models import (
        Event,
        EventActor,
        Medium,
        Source,
        SourceGroup,
        Subscription,
        Unsubscription,
    )

    rng = random.Random(16)
    now = timezone.now()
    copy("auth_group", ["id", "name"], ((i + 1, f"g{i}") for i in range(GROUPS)))
    copy(
        "auth_user",
        [
            "id",
            "password",
            "is_superuser",
            "username",
            "first_name",
            "last_name",
            "email",
            "is_staff",
            "is_active",
            "date_joined",
        ],
        (
            (i + 1, "!", False, f"u{i}", "", "", f"u{i}@example.org", False, True, now)
            for i in range(USERS)
        ),
    )

    def memberships() -> Any:
        for i in range(USERS):
            home = i % GROUPS
            yield i + 1, home + 1
            if i % 10 == 0:
                yield i + 1, (home * 7 + 3) % GROUPS + 1

    copy("auth_user_groups", ["user_id", "group_id"], memberships())
    group = SourceGroup.objects.create(name="bench", display_name="Bench")
    sources = [
        Source.objects.create(
            name=f"s{n}", display_name=f"S{n}", group=group, event_type=f"bench.s{n}"
        )
        for n in range(SOURCES)
    ]
    medium = Medium.objects.create(name="email", display_name="E", channel="email")
    feed = Medium.objects.create(name="feed", display_name="F", channel="feed")
    user_ct = ContentType.objects.get_for_model(User).pk
    group_ct = ContentType.objects.get_for_model(Group).pk
    subs = []
    chosen = [rng.randrange(SOURCES) for _ in range(GROUPS)]
    for g in range(GROUPS):  # 1,000 only_following group subscriptions
        subs.append((group_ct, str(g + 1), user_ct, True, sources[chosen[g]].pk))
    for g in rng.sample(range(GROUPS), 100):  # 100 plain ones (another source)
        other = (chosen[g] + rng.randrange(1, SOURCES)) % SOURCES
        subs.append((group_ct, str(g + 1), user_ct, False, sources[other].pk))
    for u in rng.sample(range(USERS), 50):  # 50 individual ones
        subs.append((user_ct, str(u + 1), None, False, rng.choice(sources).pk))
    fields = [
        "medium_id",
        "source_id",
        "entity_type_id",
        "entity_id",
        "sub_entity_type_id",
        "only_following",
        "created_at",
    ]
    for m in (medium, feed):
        copy(
            Subscription._meta.db_table,
            fields,
            ((m.pk, s, ct, eid, sub, f, now) for ct, eid, sub, f, s in subs),
        )
    plain = [(int(e), s) for ct, e, sub, f, s in subs if sub and not f]
    copy(  # 25 members of plainly subscribed groups opt out
        Unsubscription._meta.db_table,
        ["medium_id", "source_id", "entity_type_id", "entity_id", "created_at"],
        (
            (medium.pk, s, user_ct, str(g - 1 + GROUPS * k + 1), now)
            for k, (g, s) in enumerate(plain[:25])
        ),
    )
    start = now.timestamp() - events
    from datetime import UTC, datetime

    copy(
        Event._meta.db_table,
        [
            "id",
            "source_id",
            "event_source",
            "event_id",
            "subject",
            "time",
            "context",
            "created_at",
        ],
        (
            (
                i + 1,
                sources[i % SOURCES].pk,
                "/bench",
                f"e{i}",
                "",
                datetime.fromtimestamp(start + i, UTC),
                f'{{"n": {i}}}',
                now,
            )
            for i in range(events)
        ),
    )

    def actors() -> Any:
        for i in range(events):
            yield i + 1, user_ct, str(rng.randrange(USERS) + 1)
            yield i + 1, group_ct, str(rng.randrange(GROUPS) + 1)

    copy(
        EventActor._meta.db_table, ["event_id", "entity_type_id", "entity_id"], actors()
    )
    with connection.cursor() as cursor:
        for table in (Event, EventActor, Group, User):
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('{table._meta.db_table}', "
                f"'id'), (SELECT MAX(id) FROM {table._meta.db_table}))"
            )
        cursor.execute("VACUUM ANALYZE")
    return {"medium": medium, "feed": feed, "sources": sources, "subs": subs}


def median_ms(function: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """Median and quickest milliseconds of ``repeat`` runs, and the last result."""
    return alternating([function], repeat)[0]


def alternating(
    functions: list[Callable[[], Any]], repeat: int
) -> list[tuple[float, float, Any]]:
    """``median_ms`` of each function, their runs interleaved (a noisy machine
    moves all of them alike)."""
    times: list[list[float]] = [[] for _ in functions]
    results: list[Any] = [None] * len(functions)
    for _ in range(repeat):
        for i, function in enumerate(functions):
            start = time.perf_counter()
            results[i] = function()
            times[i].append((time.perf_counter() - start) * 1000)
    return [
        (statistics.median(t), min(t), result)
        for t, result in zip(times, results, strict=True)
    ]


def statement_alone(event_pk: int, medium_pk: int) -> Callable[[], Any]:
    """The floor of a resolution: its prebuilt statement through a plain cursor,
    in a transaction as the target runs it, every row fetched, none grouped."""
    from django.db import connection, transaction

    from django_cloudevents_bridge.subscriptions import queries

    def run() -> Any:
        sql, params = queries.statement([event_pk], [medium_pk], "default")
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()

    return run


def count_queries(function: Callable[[], Any]) -> int:
    """Statements the function ran: a cursor's further FETCHes and its CLOSE
    read or free the same statement's rows (``more_fetches``)."""
    return sum(1 for sql in _captured(function) if not _fetch(sql))


def more_fetches(function: Callable[[], Any]) -> int:
    return sum(1 for sql in _captured(function) if _fetch(sql))


def _fetch(sql: str) -> bool:
    return sql.startswith(("FETCH ", "CLOSE "))


def _captured(function: Callable[[], Any]) -> list[str]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        function()
    return [str(query["sql"]) for query in queries]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.subscriptions")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=21)
    parser.add_argument(
        "--explain", action="store_true", help="print the targets statement's plan"
    )
    options = parser.parse_args(argv)
    problem = bench_settings.postgres_problem()
    if problem:
        print(f"bench.subscriptions needs PostgreSQL: {problem}", file=sys.stderr)
        return 1
    name = f"bench_subscriptions_{int(time.time())}"
    admin(f'CREATE DATABASE "{name}"')
    try:
        configure(name)
        return run(options.events, options.repeat, options.explain)
    finally:
        from django.db import connections

        connections.close_all()
        admin(f'DROP DATABASE IF EXISTS "{name}"')


def run(total: int, repeat: int, explain: bool = False) -> int:
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db import transaction

    from django_cloudevents_bridge import events as ce
    from django_cloudevents_bridge.models import Event, Source, Subscription
    from django_cloudevents_bridge.subscriptions import entity_events, queries
    from django_cloudevents_bridge.targets.subscriptions import store

    call_command("migrate", verbosity=0)
    start = time.perf_counter()
    seeded = seed(total)
    medium, feed, sources = seeded["medium"], seeded["feed"], seeded["sources"]
    print(
        f"{USERS:,} users in {GROUPS:,} groups, {len(seeded['subs']):,} "
        f"subscriptions per medium, 25 unsubscriptions, {total:,} stored events "
        f"(seeded in {time.perf_counter() - start:.0f} s)"
    )
    # The event: of the source with the most plain group subscriptions, by a
    # user and a group.
    counts: dict[int, int] = {}
    for _, _, sub, following, source in seeded["subs"]:
        if sub and not following:
            counts[source] = counts.get(source, 0) + 1
    busiest = Source.objects.get(pk=max(counts, key=lambda s: counts[s]))
    event = store(
        ce.new(
            busiest.event_type,
            source="/bench",
            id="one",
            extensions={"actors": "auth.user/12345,auth.group/77"},
        ),
        busiest,
    )

    def targets() -> list[Any]:
        # In a transaction, as the subscriptions target runs (autocommit would
        # make the chunked cursor WITH HOLD: materialized at once).
        with transaction.atomic():
            return list(queries.resolve([event.pk], [medium.pk]))

    targets()
    if explain:
        from django.db import connection

        sql, params = queries.statement([event.pk], [medium.pk], "default")
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
            print("\n".join(row[0] for row in cursor.fetchall()))
    # The same actors on a source with only the only_following subscriptions:
    # the followers of the actors, the few people entity-event's measurement
    # reached (226 targets, 125 distinct).
    following = Source.objects.create(
        name="following",
        display_name="Following",
        group=busiest.group,
        event_type="bench.following",
    )
    Subscription.objects.bulk_create(
        Subscription(
            medium_id=s.medium_id,
            source=following,
            entity_type_id=s.entity_type_id,
            entity_id=s.entity_id,
            sub_entity_type_id=s.sub_entity_type_id,
            only_following=True,
        )
        for s in Subscription.objects.filter(only_following=True, medium=medium)
    )
    from django.db import connection

    with connection.cursor() as cursor:  # as autovacuum would, before timing
        cursor.execute("ANALYZE")
    followed = store(
        ce.new(
            following.event_type,
            source="/bench",
            id="two",
            extensions={"actors": "auth.user/12345,auth.group/77"},
        ),
        following,
    )

    def followers() -> list[Any]:
        with transaction.atomic():
            return list(queries.resolve([followed.pk], [medium.pk]))

    if explain:
        ms, best, _ = median_ms(
            lambda: queries.statement([followed.pk], [medium.pk], "default"), repeat
        )
        print(f"building the statement: median {ms:.2f} ms, min {best:.2f} ms")
        from django.db import connection

        sql, params = queries.statement([followed.pk], [medium.pk], "default")

        def plain() -> Any:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                return cursor.fetchall()

        ms, best, rows = median_ms(plain, repeat)
        print(f"the statement, plain cursor: median {ms:.2f} ms ({len(rows)} rows)")
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE) " + sql, params)
            print("\n".join(row[0] for row in cursor.fetchall()[-2:]))
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.runcall(lambda: [followers() for _ in range(20)])
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
    print(f"\n{'measure':<46}{'queries':>8}{'median ms':>11}{'min':>8}")
    for label, function, stored_pk in (
        ("targets of one event, followers only", followers, followed.pk),
        ("targets of one event, busiest source", targets, event.pk),
    ):
        floor = statement_alone(stored_pk, medium.pk)
        function()
        floor()
        (ms, best, found), (floor_ms, floor_best, rows) = alternating(
            [function, floor], repeat
        )
        keys = [person.key for _, _, person in found]
        queries_ = count_queries(function) - 2  # less the transaction's savepoint
        print(
            f"{label + ' (' + str(len(keys)) + ' people)':<46}"
            f"{queries_:>8}{ms:>11.2f}{best:>8.2f}  (target <= 5; "
            f"duplicates: {len(keys) - len(set(keys))}; "
            f"further fetches of its rows: {more_fetches(function)})"
        )
        print(
            f"{'  floor: its statement alone (' + str(len(rows)) + ' rows)':<46}"
            f"{1:>8}{floor_ms:>11.2f}{floor_best:>8.2f}  (a plain cursor in a "
            f"transaction, all rows fetched, none grouped: {ms / floor_ms:.2f}x)"
        )

    # Query count against the number of subscriptions.
    user_ct = Subscription.objects.filter(sub_entity_type__isnull=False).first()
    assert user_ct is not None
    counted = []
    for size in (1, 100, 10_000):
        source = Source.objects.create(
            name=f"q{size}",
            display_name="Q",
            group=busiest.group,
            event_type=f"bench.q{size}",
        )
        Subscription.objects.bulk_create(
            Subscription(
                medium=medium,
                source=source,
                entity_type_id=user_ct.sub_entity_type_id,
                entity_id=str(i + 1),
                only_following=i % 2 == 0,
            )
            for i in range(size)
        )
        stored = store(
            ce.new(
                source.event_type,
                source="/bench",
                id=f"q{size}",
                extensions={"actors": "auth.group/5"},
            ),
            source,
        )
        counted.append(
            (
                size,
                count_queries(
                    lambda s=stored: list(queries.resolve([s.pk], [medium.pk]))
                ),
            )
        )
    print(
        "queries of the resolution at "
        + ", ".join(f"{size:,} subscriptions: {n}" for size, n in counted)
    )

    # Feed pages among the stored events.
    plain_user = User.objects.get(pk=1)
    Subscription.objects.create(
        medium=feed,
        source=sources[0],
        entity_type_id=user_ct.sub_entity_type_id,
        entity_id="1",
        only_following=False,
    )
    following_user = User.objects.get(pk=2)
    for label, who in (("plain", plain_user), ("only_following", following_user)):
        entity_events(feed, who)
        ms, best, page = median_ms(lambda w=who: entity_events(feed, w), repeat)
        queries_ = count_queries(lambda w=who: entity_events(feed, w))
        print(
            f"{'feed page, ' + label + ' (' + str(len(page)) + ' events)':<46}"
            f"{queries_:>8}{ms:>11.2f}{best:>8.2f}  (target <= 20, <= 3 queries)"
        )
    print(f"stored events: {Event.objects.count():,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
