"""Rendering subscription events with context hints: queries stay constant.

``python -m bench.rendering`` (``--events 1000``, ``--repeat 5``) fills a SQLite
file (the query count does not depend on the database, and the time is spent
in Python: loading rows and rendering templates) with users in groups, and
stored events whose data names an actor (a user, with its groups prefetched),
three reviewers (a list of users) and a team (a group). One style's renderer
hints all three, so ``Medium.render`` loads every user of the batch in one
query (plus one for their groups) and every group in one.

Printed, for 1, 10, 100 and 1,000 events: the queries of ``Medium.render``
(constant), its median time and time per event, the same for
``serialized_context``; then the 1,000 events rendered one at a time (what a
loop over ``render(medium, [event])`` costs), against the batch in the same run.
Exits 1 if the batch's query count grows with the events.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench import settings as bench_settings

GROUPS = 50
TEMPLATE_TEXT = (
    "{% autoescape off %}{{ actor.username }} ({% for g in actor.groups.all %}"
    "{{ g.name }} {% endfor %}) asks {% for r in reviewers %}{{ r.username }}, "
    "{% endfor %}of {{ team.name }} on {{ site }}{% endautoescape %}"
)
TEMPLATE_HTML = (
    "<p><b>{{ actor.username }}</b> asks {% for r in reviewers %}{{ r.username }} "
    "{% endfor %}of <i>{{ team.name }}</i></p>"
)
HINTS = {
    "actor": {
        "app_name": "auth",
        "model_name": "User",
        "prefetch_related": ["groups"],
    },
    "reviewers": {"app_name": "auth", "model_name": "User"},
    "team": {"app_name": "auth", "model_name": "Group"},
}


def fill(events: int) -> tuple[Any, list[int]]:
    """Users, groups, a source, a style with its renderer, a medium, events."""
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command

    from django_cloudevents_bridge.subscriptions import (
        ContextRenderer,
        Event,
        Medium,
        RenderingStyle,
        Source,
        SourceGroup,
    )

    call_command("migrate", verbosity=0)
    users = User.objects.bulk_create(
        User(username=f"user{i}", email=f"user{i}@example.com") for i in range(events)
    )
    groups = Group.objects.bulk_create(Group(name=f"team{i}") for i in range(GROUPS))
    through = User.groups.through
    through.objects.bulk_create(
        through(user_id=user.pk, group_id=groups[(i + k) % GROUPS].pk)
        for i, user in enumerate(users)
        for k in (0, 7)
    )
    group = SourceGroup.objects.create(name="reviews", display_name="Reviews")
    source = Source.objects.create(
        name="asked", display_name="Review asked", group=group, event_type="review"
    )
    style = RenderingStyle.objects.create(name="email", display_name="E-mail")
    ContextRenderer.objects.create(
        name="asked",
        rendering_style=style,
        source=source,
        text_template=TEMPLATE_TEXT,
        html_template=TEMPLATE_HTML,
        context_hints=HINTS,
    )
    medium = Medium.objects.create(
        name="email",
        display_name="E-mail",
        channel="email",
        rendering_style=style,
        additional_context={"site": "example.com"},
    )
    stored = Event.objects.bulk_create(
        Event(
            source=source,
            event_source="/bench",
            event_id=str(i),
            context={
                "actor": users[i].pk,
                "reviewers": [users[(i + k) % events].pk for k in (1, 2, 3)],
                "team": groups[i % GROUPS].pk,
            },
        )
        for i in range(events)
    )
    return medium, [event.pk for event in stored]


def measure(call: Callable[[], Any], repeat: int) -> tuple[int, float]:
    """(queries of one call, median milliseconds over ``repeat`` calls)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        call()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return len(queries), statistics.median(times)


def run(total: int, repeat: int) -> int:
    from django_cloudevents_bridge.subscriptions import Event
    from django_cloudevents_bridge.subscriptions.rendering import (
        render,
        serialized_context,
    )

    start = time.perf_counter()
    medium, ids = fill(total)
    print(
        f"Rendering with context hints (SQLite file; {total:,} users in {GROUPS} "
        f"groups, filled in {time.perf_counter() - start:.1f} s)"
    )

    def batch(count: int) -> Callable[[], Any]:
        def call(function: Callable[..., Any]) -> Callable[[], Any]:
            # Fresh rows each time, as a feed query gives them (not timed: the
            # events are the caller's).
            events = list(Event.objects.filter(pk__in=ids[:count]).order_by("pk"))
            return lambda: function(medium, events)

        return call

    print(
        f"\n{'events':>8}{'render queries':>16}{'median ms':>11}{'ms/event':>10}"
        f"{'serialized queries':>20}{'median ms':>11}"
    )
    counts = sorted({n for n in (1, 10, 100, 1000, total) if n <= total})
    queries_seen = set()
    rendered_ms = 0.0
    for count in counts:
        queries, ms = measure(batch(count)(render), repeat)
        s_queries, s_ms = measure(batch(count)(serialized_context), repeat)
        queries_seen.add(queries)
        rendered_ms = ms
        print(
            f"{count:>8,}{queries:>16}{ms:>11.1f}{ms / count:>10.3f}"
            f"{s_queries:>20}{s_ms:>11.1f}"
        )
    events = list(Event.objects.filter(pk__in=ids).order_by("pk"))

    def one_at_a_time() -> None:
        for event in events:
            render(medium, [event])

    queries, ms = measure(one_at_a_time, max(1, repeat // 3))
    print(
        f"\n{total:,} events one at a time: {queries:,} queries, {ms:.0f} ms "
        f"(the batch: {min(queries_seen)} queries, {rendered_ms:.0f} ms; "
        f"{ms / rendered_ms:.1f}x the time)"
    )
    constant = len(queries_seen) == 1
    print(
        "query count constant over the batch sizes: "
        + ("yes" if constant else f"NO ({sorted(queries_seen)})")
    )
    return 0 if constant else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rendering")
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-rendering-") as directory:
        bench_settings.configure(Path(directory), with_postgres=False)
        return run(args.events, args.repeat)


if __name__ == "__main__":
    sys.exit(main())
