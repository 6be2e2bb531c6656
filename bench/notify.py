"""Notification sending: 1,000 recorded deliveries through the locmem e-mail backend.

``python -m bench.notify`` records one event's deliveries to 1,000 people
(``notifications.record``: the ledger rows with their JSON messages, in one
transaction) and sends them (``notifications.send_due``: claims in batches, one
connection per batch, an unsubscribe link per message, an outcome recorded per
message) through Django's locmem e-mail backend, on a SQLite file and on a
PostgreSQL database of its own (created and dropped). The table gives the median
over rounds of each step's time, the messages per second of sending, and the
queries sending took. The lead combines it with the watches' end-to-end figure
(recipient lookup and grouping happen before ``record``). Exits 1 if a round did
not hand exactly 1,000 messages to the backend, each with its unsubscribe link.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def configure(directory: Path, pg_name: str | None) -> list[str]:
    import django
    from django.conf import settings

    from bench.settings import POSTGRES, postgres

    databases = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(directory / "notify.sqlite3"),
        }
    }
    if pg_name:
        databases[POSTGRES] = {**postgres(), "NAME": pg_name}
    settings.configure(
        SECRET_KEY="bench-only",
        USE_TZ=True,
        TIME_ZONE="UTC",
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django_cloudevents_bridge",
        ],
        DATABASES=databases,
        ROOT_URLCONF="bench.notify_urls",
        EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
        CLOUDEVENTS_SOURCE="urn:django:bench",
        CLOUDEVENTS_NOTIFICATIONS={"BASE_URL": "https://example.com"},
        LOGGING_CONFIG=None,
    )
    django.setup()
    return ["default", POSTGRES] if pg_name else ["default"]


def one_round(alias: str, people: int, batch: int) -> dict[str, float]:
    from django.core import mail
    from django.core.mail import EmailMessage
    from django.db import connections, transaction
    from django.test.utils import CaptureQueriesContext, override_settings

    from django_cloudevents_bridge.events import new
    from django_cloudevents_bridge.models import Delivery
    from django_cloudevents_bridge.notifications import (
        Recipient,
        address_key,
        record,
        send_due,
    )

    Delivery.objects.using(alias).all().delete()
    mail.outbox = []
    event = new("com.example.wiki.edit", data={"page": 1}, source="/bench")
    addresses = [f"person{n}@example.com" for n in range(people)]
    items = (
        (
            Recipient(
                key=address_key(address),
                email=address,
                reasons=({"kind": "watch", "id": n},),
            ),
            EmailMessage(
                "Page edited", f"Hello {address}", "wiki@example.com", [address]
            ),
        )
        for n, address in enumerate(addresses)
    )
    started = time.perf_counter()
    with transaction.atomic(using=alias):
        new_rows = record(event, "email", items, using=alias)
    recorded = time.perf_counter() - started
    options = {"BASE_URL": "https://example.com", "BATCH": batch}
    with (
        override_settings(CLOUDEVENTS_NOTIFICATIONS=options),
        CaptureQueriesContext(connections[alias]) as queries,
    ):
        started = time.perf_counter()
        outcomes = send_due(using=alias)
        sent = time.perf_counter() - started
    ok = (
        new_rows == people
        and outcomes == {"sent": people}
        and len(mail.outbox) == people
        and all("List-Unsubscribe" in m.extra_headers for m in mail.outbox)
    )
    if not ok:
        raise SystemExit(
            f"{alias}: {new_rows} recorded, {outcomes}, {len(mail.outbox)} messages"
        )
    return {
        "record": recorded,
        "send": sent,
        "queries": float(len(queries.captured_queries)),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.notify", description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--people", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args(argv)

    from bench.settings import POSTGRES, postgres_problem

    pg_name = None
    if not args.no_postgres:
        problem = postgres_problem()
        if problem:
            print(f"PostgreSQL skipped: {problem}", file=sys.stderr)
        else:
            pg_name = f"bench_notify_{os.getpid()}"
            _admin(f"CREATE DATABASE {pg_name}")
    try:
        with tempfile.TemporaryDirectory() as directory:
            aliases = configure(Path(directory), pg_name)
            from django.core.management import call_command
            from django.db import connections

            for alias in aliases:
                call_command("migrate", database=alias, verbosity=0)
            rows = []
            for alias in aliases:
                one_round(alias, args.people, args.batch)  # warm-up
                rounds = [
                    one_round(alias, args.people, args.batch)
                    for _ in range(args.rounds)
                ]
                record_s = statistics.median(r["record"] for r in rounds)
                send_s = statistics.median(r["send"] for r in rounds)
                queries = statistics.median(r["queries"] for r in rounds)
                name = "PostgreSQL" if alias == POSTGRES else "SQLite (file)"
                rows.append(
                    f"{name:<14} {record_s * 1000:>9.1f} {send_s * 1000:>9.1f} "
                    f"{args.people / send_s:>10.0f} {queries:>8.0f}"
                )
            connections.close_all()
    finally:
        if pg_name:
            _admin(f"DROP DATABASE IF EXISTS {pg_name}")
    print(
        f"Notifications: {args.people} deliveries of one event recorded, then sent "
        f"through the locmem e-mail backend (batches of {args.batch}); "
        f"median of {args.rounds} rounds"
    )
    print(
        f"{'database':<14} {'record ms':>9} {'send ms':>9} {'messages/s':>10} "
        f"{'queries':>8}"
    )
    for row in rows:
        print(row)
    return 0


def _admin(sql: str) -> None:
    import psycopg

    from bench.settings import postgres

    db = postgres()
    with psycopg.connect(
        host=db["HOST"],
        port=db["PORT"],
        user=db["USER"],
        password=db["PASSWORD"] or None,
        dbname="postgres",
        autocommit=True,
    ) as connection:
        connection.execute(sql)


if __name__ == "__main__":
    sys.exit(main())
