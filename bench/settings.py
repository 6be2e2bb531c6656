"""Django settings for the bench, configured in-process: SQLite file and PostgreSQL.

PostgreSQL is reached like the test suite does (``PGHOST``, ``PGPORT``, ``PGUSER``,
``PGPASSWORD``, ``PGDATABASE``; 127.0.0.1:5432, postgres, test by default).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import django
from django.conf import settings

SQLITE = "sqlite"
POSTGRES = "postgresql"


def postgres() -> dict[str, Any]:
    """The PostgreSQL database settings."""
    return {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": os.environ.get("PGHOST", "127.0.0.1"),
        "PORT": os.environ.get("PGPORT", "5432"),
        "USER": os.environ.get("PGUSER", "postgres"),
        "PASSWORD": os.environ.get("PGPASSWORD", ""),
        "NAME": os.environ.get("PGDATABASE", "test"),
    }


def postgres_problem() -> str | None:
    """Why PostgreSQL cannot be used, or None when it answers."""
    import psycopg

    db = postgres()
    try:
        with psycopg.connect(
            host=db["HOST"],
            port=db["PORT"],
            user=db["USER"],
            password=db["PASSWORD"] or None,
            dbname=db["NAME"],
            connect_timeout=3,
        ) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as err:
        return " ".join(str(err).split()) or type(err).__name__
    return None


def configure(directory: Path, *, with_postgres: bool) -> list[str]:
    """Configure Django with a SQLite file in ``directory``; return the aliases."""
    databases: dict[str, Any] = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(directory / "bench.sqlite3"),
        }
    }
    if with_postgres:
        databases[POSTGRES] = postgres()
    settings.configure(
        SECRET_KEY="bench-only",
        USE_TZ=True,
        TIME_ZONE="UTC",
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django_cloudevents_bridge",
            "bench",
        ],
        DATABASES=databases,
        CLOUDEVENTS_SOURCE="urn:django:bench",
        LOGGING_CONFIG=None,
    )
    django.setup()
    return ["default", POSTGRES] if with_postgres else ["default"]
