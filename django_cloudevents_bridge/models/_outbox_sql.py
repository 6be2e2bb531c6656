"""The outbox's hand-written SQL, used by ``OutboxEventQuerySet``.

Two statements are written by hand because the ORM would need more round trips
or more parameters for them: the claim (one UPDATE ... RETURNING) and the record
of delivered rows (the ids as one parameter). Each is built once per database
alias and kept; the status names come from ``OutboxEvent.Status``.
"""

from __future__ import annotations

import functools
import json
import secrets
import weakref
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from django.db import connections

if TYPE_CHECKING:
    from .outbox import OutboxEvent


def _model() -> type[OutboxEvent]:
    from .outbox import OutboxEvent  # the model's module imports this one

    return OutboxEvent


# Session locks tie a claim to the database session that took it (PostgreSQL):
# advisory locks of this class, the second key the hash of the session's tag.
LOCK_CLASS = 0x44434500  # "DCE\0"
TAG_LENGTH = 12  # hex digits of a session tag, at the end of a tied token
_tags: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def session_locks(alias: str) -> bool:
    """True where claims are tied to the claiming session: PostgreSQL, unless the
    database goes through a transaction-pooling PgBouncer (which Django's docs
    have you mark with ``DISABLE_SERVER_SIDE_CURSORS``): there, a session lock
    stays on a server connection the pooler hands to others, and claims fall back
    to the lease."""
    connection = connections[alias]
    return connection.vendor == "postgresql" and not connection.settings_dict.get(
        "DISABLE_SERVER_SIDE_CURSORS"
    )


def tie(alias: str, token: str) -> str:
    """``token`` tied to this thread's session on ``alias``: ``token@<tag>``.

    The session holds a shared advisory lock keyed by its tag (taken here on its
    first use, and again by each claim statement, held until it ends): a claim
    finds a row leased to a tied token whose lock no session holds (its relay
    died, or lost its connection) free at once, without waiting for the lease to
    run out. Unchanged where ``session_locks`` is False.

    The tag is kept per client connection. Behind a transaction-pooling PgBouncer
    not marked as such, the server session under it changes; as every claim
    statement takes the lock in the session that runs it, a claim's rows are
    never seen free while that session lives (the lease still covers a server
    session the pooler closes while the relay sends).
    """
    if not session_locks(alias):
        return token
    connection = connections[alias]
    connection.ensure_connection()
    raw = connection.connection
    tag = _tags.get(raw)
    if tag is None:
        tag = secrets.token_hex(TAG_LENGTH // 2)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_lock_shared(%s, hashtext(%s))", [LOCK_CLASS, tag]
            )
        _tags[raw] = tag
    return f"{token}@{tag}"


@functools.lru_cache(maxsize=64)
def claim_sql(alias: str, wanted: int) -> str:
    """The one-statement claim on ``alias``, among ``wanted`` ids (0: all due rows).

    A row is free if its lease is over or (PostgreSQL) its claim was tied to a
    session that has ended (``tie``); it is due if pending, its next attempt has
    come and it is free. A due row is a candidate unless an earlier pending row of
    its subject is not due (in backoff, or leased to a live claim): that filter
    comes before the LIMIT, so subjects that wait never fill a batch and hold back
    the others. Of the first LIMIT candidates, minus (on PostgreSQL) rows another
    relay is claiming right now (SKIP LOCKED), a row is taken only if every earlier
    pending row of its subject is a candidate too, which is ``in_subject_order``
    said in SQL. Parameters (named): now, the ids (i0, i1, ...), limit, token,
    until.
    """
    model = _model()
    connection = connections[alias]
    qn = connection.ops.quote_name
    table, pk, subject = qn(model._meta.db_table), qn("id"), qn("subject")
    status, locked_until = qn("status"), qn("locked_until")
    pending = model.Status.PENDING.value
    only = (
        f" AND r.{pk} IN ({', '.join(f'%(i{n})s' for n in range(wanted))})"
        if wanted
        else ""
    )
    skip = (
        " FOR UPDATE SKIP LOCKED"
        if connection.features.has_select_for_update_skip_locked
        else ""
    )
    live = hold = ""
    if connection.vendor == "postgresql":
        # Tags of the sessions holding a claim lock, read once per statement and
        # only if a row leased to a tied token is looked at.
        live = (
            "live AS MATERIALIZED (SELECT objid FROM pg_locks WHERE locktype = "
            f"'advisory' AND classid = {LOCK_CLASS} AND objsubid = 2 AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = "
            "current_database())), "
        )
        # A tied token's lock, taken again (it is re-entrant) by the session that
        # runs this very statement: behind a pooler that hands the client another
        # server session, the one that claims still holds its tag's lock. In
        # the statement, so no extra round trip; before any row is updated.
        hold = (
            f" AND (SELECT count(pg_advisory_lock_shared({LOCK_CLASS}, "
            f"hashtext(right(%(token)s, {TAG_LENGTH})))) WHERE %(token)s LIKE "
            f"'%%@{'_' * TAG_LENGTH}') >= 0"
        )

    def due(row: str) -> str:
        free = f"{row}.{locked_until} IS NULL OR {row}.{locked_until} < %(now)s"
        if live:
            by = f"{row}.{qn('locked_by')}"
            free += (
                f" OR ({by} LIKE '%%@{'_' * TAG_LENGTH}' AND "
                f"hashtext(right({by}, {TAG_LENGTH}))::oid NOT IN "
                "(SELECT objid FROM live))"
            )
        return (
            f"{row}.{status} = '{pending}' AND {row}.{qn('next_attempt_at')} "
            f"<= %(now)s AND ({free})"
        )

    return (
        f"WITH {live}candidate AS MATERIALIZED (SELECT r.{pk}, r.{subject} "
        f"FROM {table} r WHERE {due('r')}{only} AND (r.{subject} = '' OR NOT EXISTS "
        f"(SELECT 1 FROM {table} w WHERE w.{subject} = r.{subject} AND "
        f"w.{status} = '{pending}' AND w.{pk} < r.{pk} AND NOT ({due('w')}))) "
        f"ORDER BY r.{pk} LIMIT %(limit)s{skip}), "
        f"chosen AS (SELECT c.{pk} FROM candidate c WHERE c.{subject} = '' "
        f"OR NOT EXISTS (SELECT 1 FROM {table} e WHERE e.{subject} = c.{subject} "
        f"AND e.{status} = '{pending}' AND e.{pk} < c.{pk} "
        f"AND e.{pk} NOT IN (SELECT {pk} FROM candidate))) "
        f"UPDATE {table} SET {qn('locked_by')} = %(token)s, {locked_until} = "
        f"%(until)s WHERE {pk} IN (SELECT {pk} FROM chosen) AND "
        f"{due(table)}{hold} "
        f"RETURNING {', '.join(qn(str(f.column)) for f in model._meta.concrete_fields)}"
    )


def claim(
    alias: str,
    token: str,
    ids: list[int] | None,
    limit: int,
    now: datetime,
    until: datetime,
) -> list[OutboxEvent]:
    """Run ``claim_sql``: the claimed rows as model instances, in id order."""
    connection = connections[alias]
    adapt = connection.ops.adapt_datetimefield_value
    params: dict[str, Any] = {
        "now": adapt(now),
        "limit": limit,
        "token": token,
        "until": adapt(until),
    }
    params.update((f"i{n}", pk) for n, pk in enumerate(ids or ()))
    with connection.cursor() as cursor:
        _load_timestamps_natively(connection, cursor)
        cursor.execute(claim_sql(alias, len(ids or ())), params)
        found = cursor.fetchall()
    return sorted(_from_rows(alias, found), key=lambda row: row.pk)


def ids_as_one_parameter(alias: str) -> bool:
    """True where ``mark_delivered_sql`` works: PostgreSQL, SQLite with JSON."""
    connection = connections[alias]
    return connection.vendor == "postgresql" or (
        connection.vendor == "sqlite" and connection.features.supports_json_field
    )


@functools.lru_cache(maxsize=8)
def mark_delivered_sql(alias: str) -> str:
    """Rows of one claim delivered, with the ids as one value.

    On PostgreSQL (an array) and SQLite (a JSON array): the queryset's
    ``id IN (%s, ...)`` takes a parameter per row to compile and bind.
    Parameters: delivered_at, the ids (``ids_parameter``), the claim's token.
    """
    model = _model()
    connection = connections[alias]
    qn = connection.ops.quote_name
    pk, status = qn("id"), qn("status")
    if connection.vendor == "postgresql":
        among = f"{pk} = ANY(%s)"
    else:
        among = f"{pk} IN (SELECT value FROM json_each(%s))"
    return (
        f"UPDATE {qn(model._meta.db_table)} SET {status} = "
        f"'{model.Status.DELIVERED.value}', {qn('delivered_at')} = %s, "
        f"{qn('attempts')} = {qn('attempts')} + 1, {qn('locked_until')} = NULL, "
        f"{qn('last_error')} = '' WHERE {among} AND {qn('locked_by')} = %s "
        f"AND {status} = '{model.Status.PENDING.value}'"
    )


def mark_delivered(
    alias: str, rows: Sequence[OutboxEvent], token: str, now: datetime
) -> int:
    """Run ``mark_delivered_sql``; the number of rows it changed."""
    connection = connections[alias]
    pks: Any = [row.pk for row in rows]
    if connection.vendor != "postgresql":
        pks = json.dumps(pks)
    params = [connection.ops.adapt_datetimefield_value(now), pks, token]
    with connection.cursor() as cursor:
        cursor.execute(mark_delivered_sql(alias), params)
        return int(cursor.rowcount)


def in_subject_order(
    found: list[tuple[int, str]], pending_before: dict[str, list[int]]
) -> list[int]:
    """Keep a found row only if every earlier pending row of its subject is kept too."""
    kept: list[int] = []
    kept_by_subject: dict[str, set[int]] = defaultdict(set)
    blocked: set[str] = set()
    for pk, subject in found:
        if not subject:
            kept.append(pk)
            continue
        if subject in blocked:
            continue
        earlier = [p for p in pending_before.get(subject, ()) if p < pk]
        if all(p in kept_by_subject[subject] for p in earlier):
            kept.append(pk)
            kept_by_subject[subject].add(pk)
        else:
            blocked.add(subject)
    return kept


def _load_timestamps_natively(connection: Any, cursor: Any) -> None:
    """Read ``timestamptz`` with psycopg's own loader where it gives Django's values.

    Django's psycopg 3 loader is written in Python and, on a claim, reads three
    timestamps of every row: a fifth of the relay's time in batched mode. With
    ``USE_TZ`` and the database in UTC (Django's default) psycopg's loader (in C
    with psycopg's binary package) returns the same aware UTC datetimes.
    """
    raw = getattr(cursor, "cursor", None)
    if connection.vendor != "postgresql" or connection.timezone is not UTC:
        return
    adapters = getattr(raw, "adapters", None)
    if raw is None or adapters is None:  # psycopg2: its loader is in C already
        return
    if raw.connection.pgconn.parameter_status(b"TimeZone") not in _UTC_NAMES:
        return  # the session is not in UTC after all (a SET TIME ZONE, a pooler)
    from psycopg import adapters as defaults
    from psycopg.pq import Format

    oid = defaults.types["timestamptz"].oid
    adapters.register_loader(oid, defaults.get_loader(oid, Format.TEXT))


_UTC_NAMES = (b"UTC", b"Etc/UTC")


def _from_rows(alias: str, found: list[tuple[Any, ...]]) -> Iterable[OutboxEvent]:
    """Model instances from raw rows of every column, as a queryset would make.

    Each value goes through the database's converters (SQLite hands datetimes
    back as text, for one).
    """
    model = _model()
    fields = model._meta.concrete_fields
    names = [model_field.attname for model_field in fields]
    connection = connections[alias]
    table = model._meta.db_table
    steps: list[tuple[int, Any, Any]] = []
    for position, model_field in enumerate(fields):
        column = model_field.get_col(table)
        converters = connection.ops.get_db_converters(
            column
        ) + column.get_db_converters(connection)
        steps.extend((position, column, convert) for convert in converters)
    for values in found:
        row = list(values)
        for position, column, convert in steps:
            row[position] = convert(row[position], column, connection)
        yield model.from_db(alias, names, row)
