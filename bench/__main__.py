"""``python -m bench`` (``make bench``): configure, start the sink, run, print."""

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
    """Python, Django and database versions, with the settings that move numbers."""
    import django
    from django.db import connections

    parts = [f"Python {platform.python_version()}", f"Django {django.get_version()}"]
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
    return ", ".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Emit-overhead ratios, side by side."
    )
    parser.add_argument("--rounds", type=int, default=25, help="default: %(default)s")
    parser.add_argument(
        "--ops",
        type=int,
        default=200,
        help="timed creates per variant, database and round (default: %(default)s)",
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

        from bench import emit  # imports models: only once Django is set up

        try:
            header = versions(aliases)
            lines, ok = emit.main(
                aliases,
                server,
                args.rounds,
                args.ops,
                skipped=problem and f"skipped: PostgreSQL unavailable ({problem})",
            )
        finally:
            connections.close_all()

    print(header)
    print("\n".join(lines))
    print(f"run time: {time.monotonic() - started:.0f} s")
    return 0 if ok else 1


raise SystemExit(main())
