"""The outbox: rows written in the caller's transaction, sent by the relay.

``write()`` is the only work added to ``save()``: one INSERT, no network. The
relay (``manage.py cloudevents_relay``) sends the rows; on PostgreSQL the INSERT
wakes it (``wakeup.py``). With ``CLOUDEVENTS_OUTBOX["BACKGROUND"]`` a background
thread of the saving process also tries them right after the commit
(``background.py``); whatever it cannot deliver stays pending for the relay.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models import Count, QuerySet
from django.utils import timezone

from .. import conf
from ..bindings import jsonformat
from ..events import CloudEvent
from ..models import OutboxEvent, RelayHeartbeat
from . import transaction_aborted
from .background import Claim, Job, background

logger = logging.getLogger("django_cloudevents_bridge")


_present: set[str] = set()  # aliases whose outbox table was found
_missing_since: dict[str, float] = {}  # alias -> when it was found missing
RECHECK = 60.0  # seconds before a missing table is looked for again


def ready(using: str) -> bool:
    """True if the outbox table exists on ``using``.

    Checked before the first INSERT because a failed INSERT inside the caller's
    transaction would abort that transaction on PostgreSQL. Found once per
    process; a missing table (migrate has not run yet) is looked for again
    after a minute.
    """
    if using in _present:
        return True
    if time.monotonic() - _missing_since.get(using, -RECHECK) < RECHECK:
        return False
    with connections[using].cursor() as cursor:
        names = connections[using].introspection.table_names(cursor)
    if OutboxEvent._meta.db_table in names:
        _present.add(using)
        return True
    _missing_since[using] = time.monotonic()
    logger.error(
        "The outbox table is missing on %r (run migrate); events are sent once, "
        "in the background, without retries",
        using,
    )
    return False


def store(batch: Sequence[CloudEvent], using: str) -> None:
    """Write the events to the outbox (and, with BACKGROUND, try them after commit).

    If the outbox cannot take them, they are still sent once after the commit,
    from the background thread (never inside the request), unless the failure
    aborted the caller's transaction (PostgreSQL): then the error is raised, as
    that transaction can no longer commit.
    """
    ids: list[int] = []  # the rows written, even when a later INSERT failed
    rest: list[CloudEvent] = []  # the events to send once instead
    options = conf.outbox()
    # With BACKGROUND, rows are written already claimed by this process's sender.
    claim = background.claim(using, options["LEASE"]) if options["BACKGROUND"] else None
    try:
        if ready(using):
            write(batch, using, ids, claim, lock_timeout=options["LOCK_TIMEOUT"])
        else:
            rest = list(batch)
    except Exception:
        if transaction_aborted(using):
            raise
        rest = list(batch[len(ids) :])
        logger.exception(
            "Could not write CloudEvents %s to the outbox; sending them once",
            ", ".join(event.get_id() for event in rest),
        )
    jobs: list[Job] = [("", rest)]  # the relay sends (and retries) written rows
    if ids and options["BACKGROUND"]:
        jobs.append((using, ids if claim is None else claim))  # ... this process first
    for job in jobs:
        if job[1]:
            transaction.on_commit(
                partial(background.submit, job), using=using, robust=True
            )


def write(
    batch: Sequence[CloudEvent],
    using: str,
    ids: list[int] | None = None,
    claim: Claim | None = None,
    *,
    lock_timeout: Any = None,
) -> list[int]:
    """INSERT one row per event on ``using`` (in its current transaction).

    Returns the new rows' ids, appended to ``ids`` as they are written when it
    is given (so a caller knows which rows exist if a later INSERT fails). With
    ``claim`` (the background sender's) the rows are written claimed by it, and
    recorded in ``claim``. ``lock_timeout``: ``LOCK_TIMEOUT`` as the caller
    read it (None: read here).

    This runs inside every ``save()``, so it is one plain INSERT statement: no
    model instances, no signals, no BEGIN/COMMIT of its own in autocommit mode.
    """
    connection = connections[using]
    adapt = connection.ops.adapt_datetimefield_value
    created = timezone.now()
    now = adapt(created)
    returning = connection.features.can_return_columns_from_insert
    claimed: tuple[Any, ...] = ()
    if claim is not None and returning:  # else: written unclaimed, in ``others``
        claim.created = created
        claim.until = created + timedelta(seconds=claim.lease)
        claimed = (claim.token, adapt(claim.until))
    values: list[tuple[Any, ...]] = []
    for event in batch:
        subject = (event.get_subject() or "")[:1024]
        row = (
            event.get_id()[:255],  # the column; the event keeps its whole id
            event.get_source()[:1024],
            event.get_type()[:255],
            subject,
            jsonformat.to_json(event).decode(),
            now,
            now,
        )
        values.append((*row, *claimed, subject, subject) if claimed else row)
    ids = [] if ids is None else ids
    bound = None
    if connection.vendor == "postgresql":
        if lock_timeout is None:
            lock_timeout = conf.outbox()["LOCK_TIMEOUT"]
        bound = _lock_timeout_ms(lock_timeout)
    with connection.cursor() as cursor:
        kind = None
        if bound and not claimed and _writer_ready(using):
            # One statement: the function sets the bound and gives the value back.
            sql = _insert_sql(using, returning, writer=True)
            values = [(f"{bound}ms", *row) for row in values]
        else:
            sql = _insert_sql(using, returning, bool(claimed))
            kind = _lock_bound(connection, cursor) if bound else None
        if bound and kind:
            restore = not connection.get_autocommit()
            sql = _bounded(sql, bound, restore=restore)
        for row in values:
            cursor.execute(sql, row)
            if kind == "psycopg":
                cursor.nextset()  # psycopg 3 starts at the first statement's result
            found: Any = cursor.fetchone() if returning else (cursor.lastrowid,)
            ids.append(found[0])
            if claim is not None:
                if claimed and found[1] == claim.token:
                    claim.rows.append((found[0], *row[:5]))
                else:
                    claim.others.append(found[0])
    return ids


def _lock_timeout_ms(seconds: Any) -> int | None:
    """``LOCK_TIMEOUT`` in milliseconds as PostgreSQL takes it; None: no bound.

    A value the system check refuses (E008) never breaks ``save()``: one above
    PostgreSQL's limit (``inf`` too) is the limit, one that is no positive
    number (``nan``, a negative, a string) is the default.
    """
    if seconds is None or seconds is False or seconds == 0:
        return None
    number = isinstance(seconds, int | float) and not isinstance(seconds, bool)
    if not (number and seconds > 0):  # a string, True, a negative, nan
        seconds = conf.OUTBOX_DEFAULTS["LOCK_TIMEOUT"]
    return max(1, round(min(seconds, conf.LOCK_TIMEOUT_MAX) * 1000))


def _lock_bound(connection: Any, cursor: Any) -> str | None:
    """The cursor's kind if the INSERT can carry a bound on its lock wait
    (``LOCK_TIMEOUT``): ``psycopg`` (3) or ``psycopg2``; None: it cannot.

    The bound travels in the INSERT's own statement string (``_bounded``): no
    round trip of its own. That takes a cursor that sends several statements in
    one string, so PostgreSQL with client-side binding: psycopg 3's default in
    Django, and psycopg2. With ``"server_side_binding": True`` (prepared
    statements take one statement) the INSERT waits without a bound.
    """
    if connection.vendor != "postgresql":
        return None
    raw = getattr(cursor, "cursor", None)
    kind = _cursor_kinds.get(type(raw))
    if kind is None:
        kind = _cursor_kinds[type(raw)] = _cursor_kind(raw)
    return kind or None


_cursor_kinds: dict[type, str] = {}


def _cursor_kind(raw: Any) -> str:
    """``psycopg`` (3, client-side binding), ``psycopg2``, or "" (one statement)."""
    if type(raw).__module__.startswith("psycopg2"):
        return "psycopg2"
    with contextlib.suppress(ImportError):
        import psycopg

        if isinstance(raw, psycopg.ClientCursor):
            return "psycopg"
    return ""


@functools.lru_cache(maxsize=16)
def _bounded(insert: str, milliseconds: int, *, restore: bool) -> str:
    """``insert`` (with RETURNING) run under ``lock_timeout`` (PostgreSQL), in one
    string: one round trip.

    In autocommit the string runs as one implicit transaction, so a SET LOCAL
    before the INSERT ends with it. In a transaction (``restore``) the bound would
    outlive the INSERT: the session's value is kept first and put back by the
    INSERT's RETURNING, once its row is in; an INSERT that fails aborts the
    transaction, whose end restores the value. The INSERT's result is the
    string's last (psycopg2's cursor is there) and second (psycopg 3's cursor is
    at the first result: ``nextset()``).
    """
    if not restore:
        return f"SET LOCAL lock_timeout = '{milliseconds}ms'; {insert}"
    return (
        "SELECT set_config('dce.lock_timeout', current_setting('lock_timeout'), "
        f"true), set_config('lock_timeout', '{milliseconds}ms', true); {insert}, "
        "set_config('lock_timeout', current_setting('dce.lock_timeout'), true)"
    )


_writers: dict[str, bool] = {}  # alias -> has the function of migration 0010
_writers_checked: dict[str, float] = {}  # alias -> when it was found missing


def _writer_ready(using: str) -> bool:
    """True if ``dce_outbox_write()`` (migration 0010) exists on ``using``.

    Found once per process, as the table is (:func:`ready`); until then the row
    is written by the INSERT bounded in its statement string (:func:`_bounded`).
    """
    if _writers.get(using):
        return True
    if time.monotonic() - _writers_checked.get(using, -RECHECK) < RECHECK:
        return False
    with connections[using].cursor() as cursor:
        cursor.execute("SELECT to_regprocedure(%s) IS NOT NULL", [WRITER])
        found = bool(cursor.fetchone()[0])
    if found:
        _writers[using] = True
    else:
        _writers_checked[using] = time.monotonic()
    return found


WRITER = (
    "dce_outbox_write(text, text, text, text, text, text, timestamptz, timestamptz)"
)


@functools.lru_cache(maxsize=8)
def _insert_sql(
    using: str, returning: bool, claimed: bool = False, writer: bool = False
) -> str:
    """The outbox INSERT; ``claimed``: written claimed by the background sender.

    ``writer`` (PostgreSQL): the call of ``dce_outbox_write()`` instead, which
    takes the lock bound first, then the INSERT's parameters, and returns the id.

    A claimed row takes two more parameters, the sender's token and the lease's
    end, then its subject twice: it is written unclaimed if an earlier row of its
    subject is pending (that one goes first, and the sender claims this one as a
    relay does, in subject order). Its RETURNING also says whether it is claimed.
    """
    # Constants are written into the statement: fewer parameters to adapt on
    # every save().
    columns = {
        "event_id": "%s",
        "source": "%s",
        "type": "%s",
        "subject": "%s",
        "event": "%s",
        "created_at": "%s",
        "next_attempt_at": "%s",
        "status": f"'{OutboxEvent.Status.PENDING.value}'",
        "attempts": "0",
        "locked_by": "''",
        "last_error": "''",
    }
    qn = connections[using].ops.quote_name
    if writer:
        return f"SELECT dce_outbox_write({', '.join(['%s'] * 8)})"
    table = qn(OutboxEvent._meta.db_table)
    names = ", ".join(qn(c) for c in [*columns, *["locked_until"][:claimed]])
    if not claimed:
        sql = f"INSERT INTO {table} ({names}) VALUES ({', '.join(columns.values())})"
        return sql + f" RETURNING {qn('id')}" if returning else sql
    columns["locked_by"] = "CASE WHEN b.blocked THEN '' ELSE %s END"
    values = [*columns.values(), "CASE WHEN b.blocked THEN NULL ELSE %s END"]
    return (
        f"INSERT INTO {table} ({names}) SELECT {', '.join(values)} FROM (SELECT "
        f"%s <> '' AND EXISTS (SELECT 1 FROM {table} w WHERE w.{qn('subject')} = %s "
        f"AND w.{qn('status')} = '{OutboxEvent.Status.PENDING.value}') AS blocked) b "
        f"RETURNING {qn('id')}, {qn('locked_by')}"
    )


def prune(using: str = DEFAULT_DB_ALIAS, older_than: float | None = None) -> int:
    """Delete delivered rows older than ``older_than`` seconds (default RETENTION).

    Without a relay (``RELAY`` False: a CDC reader took each row when it was
    written), every row older than that, whatever its status.
    """
    options = conf.outbox()
    seconds = options["RETENTION"] if older_than is None else older_than
    cutoff = timezone.now() - timedelta(seconds=seconds)
    rows = OutboxEvent.objects.using(using)
    if options["RELAY"]:
        rows = rows.filter(status=OutboxEvent.Status.DELIVERED, delivered_at__lt=cutoff)
    else:
        rows = rows.filter(created_at__lt=cutoff)
    deleted, _ = rows.delete()
    return deleted


def stats(using: str = DEFAULT_DB_ALIAS) -> dict[str, Any]:
    """Counts per status, the oldest pending row's age in seconds, and the relays.

    ``relay_last_seen_age``: seconds since a relay's last heartbeat (None: none
    runs); ``waiting_without_relay``: the message of ``waiting()``, or None.
    """
    rows = OutboxEvent.objects.using(using)
    counts = dict.fromkeys(OutboxEvent.Status.values, 0)
    for row in rows.values("status").annotate(n=Count("pk")):
        counts[row["status"]] = row["n"]
    found = {**counts, **health(using)}
    return {**found, "waiting_without_relay": waiting(found)}


STALE = 300.0  # seconds: a pending event this old, with no relay, is reported
RELAY_GONE = 60.0  # seconds without a heartbeat before a relay counts as gone


def health(using: str = DEFAULT_DB_ALIAS) -> dict[str, float | None]:
    """The oldest pending row's age and the last relay heartbeat's, in seconds."""
    now = timezone.now()
    oldest: datetime | None = (
        OutboxEvent.objects.using(using)
        .filter(status=OutboxEvent.Status.PENDING)
        .order_by("pk")
        .values_list("created_at", flat=True)
        .first()
    )
    seen = RelayHeartbeat.objects.using(using).last_seen()
    return {
        "oldest_pending_age": (now - oldest).total_seconds() if oldest else None,
        "relay_last_seen_age": (now - seen).total_seconds() if seen else None,
    }


def waiting(found: dict[str, Any]) -> str | None:
    """What to say when events wait for minutes and no relay was seen lately
    (nothing without a relay: ``RELAY`` False)."""
    age, seen = found["oldest_pending_age"], found["relay_last_seen_age"]
    if age is None or age < STALE or (seen is not None and seen < RELAY_GONE):
        return None
    if not conf.outbox()["RELAY"]:
        return None
    last = (
        "no relay is running" if seen is None else f"a relay was last seen {_ago(seen)}"
    )
    return (
        f"CloudEvents are waiting in the outbox (the oldest for {_ago(age, '')}) "
        f"and {last}: run manage.py cloudevents_relay."
    )


def _ago(seconds: float, suffix: str = " ago") -> str:
    if seconds < 120:
        return f"{seconds:.0f} s{suffix}"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min{suffix}"
    return f"{seconds / 3600:.1f} h{suffix}"


def retry(rows: QuerySet[OutboxEvent]) -> int:
    """Send parked rows again: same event id, fresh attempts, age counted anew."""
    now = timezone.now()
    return rows.filter(status=OutboxEvent.Status.PARKED).update(
        status=OutboxEvent.Status.PENDING,
        attempts=0,
        created_at=now,
        next_attempt_at=now,
        locked_until=None,
        locked_by="",
    )
