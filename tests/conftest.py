from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from django_cloudevents_bridge.emit import reset_handler
from django_cloudevents_bridge.emit.handlers import locmem
from tests.sink import Sink

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _fast_postgresql_flush() -> None:
    """Empty the tables after a transactional test with DELETE, not TRUNCATE.

    TRUNCATE makes new files for every table and index: emptying this
    project's ~60 tables took 280-550 ms a time here (15 TRUNCATEs of 60 small
    tables with 3 indexes each), a DELETE from each of them 14 ms; with over a
    thousand transactional tests that was most of the PostgreSQL run. Triggers
    (the capture triggers, the foreign keys' checks) are off in the flush's
    transaction (``session_replication_role``), so the order does not matter
    and no trigger writes a row back. Sequences are not reset, as Django's
    flush does not reset them unless asked (then it still TRUNCATEs).
    """
    from django.db.backends.postgresql.operations import DatabaseOperations

    truncate = DatabaseOperations.sql_flush

    def delete(
        self: Any,
        style: Any,
        tables: Any,
        *,
        reset_sequences: bool = False,
        allow_cascade: bool = False,
    ) -> list[str]:
        if reset_sequences or not tables:
            return truncate(
                self,
                style,
                tables,
                reset_sequences=reset_sequences,
                allow_cascade=allow_cascade,
            )
        return [
            "SET LOCAL session_replication_role = replica",
            *(f"DELETE FROM {self.quote_name(table)}" for table in tables),
        ]

    DatabaseOperations.sql_flush = delete  # type: ignore[method-assign]


if os.environ.get("DATABASE") == "postgres":
    _fast_postgresql_flush()


def need(service: str, reason: str) -> None:
    """A missing service fails under CI=true and skips (with the reason) elsewhere."""
    if CI:
        pytest.fail(f"{service} is required under CI=true: {reason}")
    pytest.skip(f"{service} unavailable: {reason}")


@pytest.fixture(autouse=True)
def _fresh_handler() -> Iterator[None]:
    reset_handler()
    yield
    # No background sender (nor its connection) outlives its test.
    background = sys.modules.get("django_cloudevents_bridge.emit.background")
    if background is not None:
        background.background.stop()
    reset_handler()


@pytest.fixture(autouse=True)
def _no_known_sources() -> None:
    """Each test reads the subscription sources' types afresh (a process keeps
    them for a few seconds; a test's rows are gone after it)."""
    from django_cloudevents_bridge.targets import subscriptions

    subscriptions._forget()


@pytest.fixture
def sent_events() -> Iterator[list]:
    """The events the locmem handler received during the test, in order."""
    locmem.sent.clear()
    yield locmem.sent
    locmem.sent.clear()


@pytest.fixture
def sink() -> Iterator[Sink]:
    """A real HTTP sink on a loopback port."""
    server = Sink().start()
    yield server
    server.stop()


@pytest.fixture
def failing_outbox_insert(monkeypatch) -> None:
    """Every outbox INSERT fails (a table that is not there), as a server would."""
    from django_cloudevents_bridge.emit import outbox

    def nowhere(
        using: str, returning: bool, claimed: bool = False, writer: bool = False
    ) -> str:
        count = 11 if claimed else 8 if writer else 7
        return f"INSERT INTO nowhere ({', '.join(['%s'] * count)})"

    monkeypatch.setattr(outbox, "_insert_sql", nowhere)


@pytest.fixture
def http_sink(sink: Sink, settings, monkeypatch) -> Sink:
    """The sink, with K_SINK pointing at it and the http handler configured."""
    monkeypatch.setenv("K_SINK", sink.url)
    monkeypatch.delenv("K_CE_OVERRIDES", raising=False)
    settings.CLOUDEVENTS_HANDLER = "http"
    settings.CLOUDEVENTS_HANDLER_OPTIONS = {
        # Far above a loopback round trip, even on a loaded machine; the tests of
        # the timeouts themselves set their own.
        "timeout": (10.0, 10.0),
        "oidc_token_path": None,
    }
    return sink


@pytest.fixture
def smtp(settings) -> Iterator[Any]:
    """A real SMTP server on a loopback port, and the default mailer sending to it."""
    from tests.mail_settings import SMTP, use_mail
    from tests.smtp import SMTPServer

    server = SMTPServer().start()
    use_mail(settings, SMTP, host="127.0.0.1", port=server.port, timeout=30)
    yield server
    server.stop()


# What `make test` prints when PostgreSQL does not answer: the commands that fix it.
POSTGRES_FIX = """\
Start PostgreSQL on 127.0.0.1:5432 (user postgres), for example:
    docker run -d -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust postgres:16
or point the tests at a running one (its user needs CREATEDB):
    PGHOST=... PGPORT=... PGUSER=... PGPASSWORD=... make test
or run the SQLite half alone:
    make test-sqlite"""


def pytest_sessionstart(session: pytest.Session) -> None:
    """With DATABASE=postgres, PostgreSQL must answer, or the run fails at once.

    The probe goes through the maintenance database ``postgres``, as Django does to
    create ``test_<NAME>``: the database named by ``NAME`` (``PGDATABASE``) need not
    exist. Like Django, it falls back to ``NAME`` when ``postgres`` is not there.
    """
    if os.environ.get("DATABASE") != "postgres":
        return
    import psycopg
    from django.conf import settings

    db = settings.DATABASES["default"]
    errors = []
    for dbname in dict.fromkeys(["postgres", db["NAME"]]):
        try:
            psycopg.connect(
                host=db["HOST"],
                port=db["PORT"],
                user=db["USER"],
                password=db["PASSWORD"],
                dbname=dbname,
                connect_timeout=5,
            ).close()
            return
        except psycopg.Error as err:
            errors.append(str(err).strip())
    where = f"{db['HOST']}:{db['PORT']} as user {db['USER']!r}"
    # A usage error: pytest prints it once, on its own, and exits with status 4.
    raise pytest.UsageError(
        f"PostgreSQL is unreachable at {where}: {errors[0]}\n{POSTGRES_FIX}"
    )


# The Pub/Sub emulator fixtures, shared by every test package (one emulator per
# session). Imported last: that module uses need() from here.
from tests.pubsub_emulator import (  # noqa: E402
    ordered_pubsub,  # noqa: F401
    pubsub,  # noqa: F401
    pubsub_emulator,  # noqa: F401
)
