"""``python -m bench`` (``make bench``): configure, start the sink, run, print.

Exits 1 if the sink did not count every event it was sent, or the bridge logged a
warning or an error.
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench import settings, sink

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def versions(aliases: Sequence[str]) -> str:
    """Package and database versions, with the settings that move numbers."""
    from importlib.metadata import version

    import django
    from django.db import connections

    parts = [
        f"django-cloudevents-bridge {version('django-cloudevents-bridge')}",
        f"Python {platform.python_version()}",
        f"Django {django.get_version()}",
        f"requests {version('requests')}",
        f"urllib3 {version('urllib3')}",
        f"psycopg {version('psycopg')}",
    ]
    with connections["default"].cursor() as cursor:
        journal = cursor.execute("PRAGMA journal_mode").fetchone()[0]
    parts.append(f"SQLite {sqlite3.sqlite_version} (file, journal_mode={journal})")
    if settings.POSTGRES in aliases:
        with connections[settings.POSTGRES].cursor() as cursor:
            cursor.execute("SHOW server_version")
            server = cursor.fetchone()[0].split()[0]
            cursor.execute("SHOW synchronous_commit")
            commit = cursor.fetchone()[0]
        parts.append(f"PostgreSQL {server} (synchronous_commit={commit})")
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}"
    return ", ".join(parts[:4]) + ",\n" + ", ".join([*parts[4:], machine])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Emit-overhead ratios, side by side."
    )
    parser.add_argument(
        "--rounds", type=int, default=12, help="emit rounds (default: %(default)s)"
    )
    parser.add_argument(
        "--ops",
        type=int,
        default=100,
        help="timed creates per variant, mode, database and round"
        " (default: %(default)s)",
    )
    parser.add_argument(
        "--relay-rounds", type=int, default=3, help="default: %(default)s"
    )
    parser.add_argument(
        "--relay-events",
        type=int,
        default=5000,
        help="outbox rows per relay drain (default: %(default)s)",
    )
    parser.add_argument(
        "--latency-events",
        type=int,
        default=500,
        help="creates timed commit-to-sink (default: %(default)s)",
    )
    parser.add_argument(
        "--profile",
        choices=("binary", "batched"),
        help="only cProfile one relay drain (the last database) and print the stats",
    )
    parser.add_argument(
        "--capture-only",
        action="store_true",
        help="only the trigger-capture section (PostgreSQL)",
    )
    args = parser.parse_args(argv)
    started = time.monotonic()

    problem = settings.postgres_problem()
    if problem and CI:
        print(f"PostgreSQL is required under CI=true: {problem}", file=sys.stderr)
        return 1
    with (
        tempfile.TemporaryDirectory(prefix="bench-") as directory,
        sink.Process() as server,
    ):
        aliases = settings.configure(Path(directory), with_postgres=problem is None)
        from django.db import connections

        # These import models: only once Django is set up.
        from bench import capture, emit, latency, relay

        try:
            header = versions(aliases)
            emit.create_tables(aliases)
            if args.profile:
                print(header)
                print(
                    relay.profile(
                        aliases[-1],
                        server,
                        args.relay_events,
                        batch=args.profile == "batched",
                    )
                )
                return 0
            if args.capture_only:
                lines, ok = capture.main(args.rounds, args.ops, server), True
                print(header)
                print("\n".join(lines))
                return 0
            lines, ok = emit.main(
                aliases,
                server,
                args.rounds,
                args.ops,
                skipped=problem and f"skipped: PostgreSQL unavailable ({problem})",
            )
            lines.append(f"(emit section: {time.monotonic() - started:.0f} s)")
            if settings.POSTGRES in aliases:
                section = time.monotonic()
                lines += capture.main(args.rounds, args.ops, server)
                lines.append(f"(capture section: {time.monotonic() - section:.0f} s)")
            section = time.monotonic()
            more, relayed = relay.main(
                aliases, server, args.relay_rounds, args.relay_events
            )
            more.append(f"(relay section: {time.monotonic() - section:.0f} s)")
            lines += more
            ok = ok and relayed
            more, timed = latency.main(aliases, args.latency_events)
            lines += more
            ok = ok and timed
        finally:
            emit.drop_tables(aliases)
            connections.close_all()

    print(header)
    print("\n".join(lines))
    print(f"run time: {time.monotonic() - started:.0f} s")
    return 0 if ok else 1


raise SystemExit(main())
