"""Wake the relay when rows are written: LISTEN/NOTIFY on PostgreSQL, else polling.

On PostgreSQL a statement-level trigger on the outbox table (migration 0004) runs
``pg_notify(CHANNEL, '')`` with every INSERT: the notification travels with the
row, is delivered only when that transaction commits, and PostgreSQL folds
identical ones of one transaction into one. The relay listens on a connection of
its own (autocommit, opened from Django's connection parameters) and waits for a
notification or the poll interval, whichever comes first; polling stays the
fallback for retries that come due, a lost connection, other databases and
psycopg 2. LISTEN needs a session: behind PgBouncer use session pooling for the
relay, or point it at PostgreSQL directly.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any

from django.db import connections

logger = logging.getLogger("django_cloudevents_bridge")

CHANNEL = "dce_outbox"  # the name migration 0004's trigger notifies
COALESCE = 0.005  # seconds to collect the rest of a burst: one claim for all of it
SLICE = 0.25  # longest wait without looking at ``stop`` (SIGTERM stops promptly)


class Wakeup:
    """Waits until rows may be due: a notification, the poll interval, or ``stop``.

    ``listening`` is True while the LISTEN connection is up. A connection that is
    lost (or cannot be opened) is logged, the poll interval takes over, and it is
    opened again on a later wait, at most once per ``retry`` seconds.
    """

    def __init__(self, using: str, stop: threading.Event, retry: float = 5.0) -> None:
        self.using = using
        self.stop = stop
        self.retry = retry
        self.connection: Any = None
        self._next_try = 0.0
        self.supported = _psycopg3(using)
        if self.supported:
            self._listen()

    @property
    def listening(self) -> bool:
        return self.connection is not None

    def wait(self, interval: float) -> bool:
        """Wait up to ``interval`` seconds; True if a notification woke us.

        Also True when the LISTEN connection was just opened again: rows may
        have been written while nobody listened.
        """
        deadline = time.monotonic() + interval
        while not self.stop.is_set():
            down = self.supported and self.connection is None
            if down and time.monotonic() >= self._next_try and self._listen():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self.connection is None:
                self.stop.wait(min(remaining, SLICE))
                continue
            try:
                if self._notified(min(remaining, SLICE), stop_after=1):
                    self._notified(COALESCE)  # the rest of the burst, if any
                    return True
            except Exception as err:  # a broken connection: poll until reconnected
                logger.warning(
                    "Relay LISTEN connection lost, polling until it is back: %s", err
                )
                self.close()
                self._next_try = time.monotonic() + self.retry
        return False

    def _notified(self, timeout: float, stop_after: int | None = None) -> bool:
        """Consume the notifications arriving within ``timeout``; True if any."""
        notifies = self.connection.notifies(timeout=timeout, stop_after=stop_after)
        return bool(list(notifies))

    def _listen(self) -> bool:
        """Open the LISTEN connection; False (and log) if that fails."""
        import psycopg

        wrapper = connections[self.using]
        try:
            params = wrapper.get_connection_params()
            params.pop("cursor_factory", None)  # Django's cursors need Django
            connection = psycopg.connect(**params, autocommit=True)
            connection.execute(f"LISTEN {CHANNEL}")
        except Exception as err:
            logger.warning("Relay cannot LISTEN, polling instead: %s", err)
            self._next_try = time.monotonic() + self.retry
            return False
        self.connection = connection
        return True

    def close(self) -> None:
        """Close the LISTEN connection (a later wait opens it again)."""
        connection, self.connection = self.connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()


def _psycopg3(using: str) -> bool:
    """True on PostgreSQL through psycopg 3 (psycopg 2: the relay polls)."""
    if connections[using].vendor != "postgresql":
        return False
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    if not is_psycopg3:  # pragma: no cover - the tests run psycopg 3
        logger.info("Relay: LISTEN/NOTIFY needs psycopg 3; polling instead")
    return bool(is_psycopg3)
