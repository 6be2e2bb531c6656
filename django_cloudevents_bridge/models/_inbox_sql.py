"""The receiver's hot-path SQL, for the inbox's QuerySet methods (models/inbox.py).

Built once per vendor (and number of targets), quoted and joined, not per request.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.backends.base.base import BaseDatabaseWrapper


def upserts(connection: BaseDatabaseWrapper) -> bool:
    """True where one INSERT ... ON CONFLICT ... RETURNING statement works."""
    return connection.vendor in ("postgresql", "sqlite") and bool(
        connection.features.can_return_columns_from_insert
    )


@dataclass(frozen=True)
class Statements:
    """The hot path's SQL for one vendor, quoted and joined once, not per request."""

    insert: str  # the event, if new: RETURNING its id
    first: str  # PostgreSQL: the event and its runs at once; SQLite: one run
    again: str  # one more delivery of a stored event: RETURNING its id
    claim: str  # lock a target's run: RETURNING its status and stored reply
    done: str  # a target's run is done (with its reply, if kept)
    deferred: str  # PostgreSQL: a new event and its runs, due now ("" elsewhere)


_statements: dict[tuple[str, int], Statements] = {}


def statements(connection: BaseDatabaseWrapper, targets: int) -> Statements:
    """The statements for this connection's vendor and ``targets`` runs."""
    key = (connection.vendor, targets)
    if key not in _statements:
        _statements[key] = _build(connection, targets)
    return _statements[key]


def _build(connection: BaseDatabaseWrapper, targets: int) -> Statements:
    from .inbox import ReceivedEvent, TargetRun  # inbox imports this module

    qn = connection.ops.quote_name
    table, runs = qn(ReceivedEvent._meta.db_table), qn(TargetRun._meta.db_table)
    source, event_id, id_ = qn("source"), qn("event_id"), qn("id")
    insert = (
        f"INSERT INTO {table} ({source}, {event_id}, {qn('type')}, "
        f"{qn('subject')}, {qn('event')}, {qn('received_at')}, "
        f"{qn('ordering_key')}, {qn('deliveries')}) "
        f"VALUES (%s, %s, %s, %s, %s, %s, %s, 1) "
        f"ON CONFLICT ({source}, {event_id}) DO NOTHING RETURNING {id_}"
    )
    columns = ", ".join(
        qn(c)
        for c in (
            "event_id",
            "target",
            "status",
            "attempts",
            "error",
            "reply",
            "updated_at",
        )
    )
    done, pending = TargetRun.Status.DONE.value, TargetRun.Status.PENDING.value
    if connection.vendor == "postgresql":
        rows = ", ".join(
            [f"(%s, '{done}', 1)"] + [f"(%s, '{pending}', 0)"] * (targets - 1)
        )
        first = (
            f"WITH new AS ({insert}, {qn('received_at')}) "
            f"INSERT INTO {runs} ({columns}) SELECT new.{id_}, run.name, "
            f"run.status, run.attempts, '', '', new.{qn('received_at')} FROM new "
            f"CROSS JOIN (VALUES {rows}) AS run(name, status, attempts) "
            f"RETURNING {event_id}"
        )
    else:
        first = f"INSERT INTO {runs} ({columns}) VALUES (%s, %s, %s, %s, '', '', %s)"
    deferred = ""
    if connection.vendor == "postgresql" and targets:
        names = ", ".join(["(%s)"] * targets)
        at = f"new.{qn('received_at')}"
        deferred = (
            f"WITH new AS ({insert}, {qn('received_at')}) "
            f"INSERT INTO {runs} ({columns}, {qn('next_attempt_at')}) SELECT "
            f"new.{id_}, run.name, '{pending}', 0, '', '', {at}, {at} FROM new "
            f"CROSS JOIN (VALUES {names}) AS run(name) RETURNING {event_id}"
        )
    return Statements(
        insert=insert,
        first=first,
        again=(
            f"UPDATE {table} SET {qn('deliveries')} = {qn('deliveries')} + 1 "
            f"WHERE {source} = %s AND {event_id} = %s RETURNING {id_}"
        ),
        claim=(
            f"UPDATE {runs} SET {qn('updated_at')} = %s WHERE {event_id} = %s "
            f"AND {qn('target')} = %s RETURNING {qn('status')}, {qn('reply')}"
        ),
        done=(
            f"UPDATE {runs} SET {qn('status')} = '{done}', {qn('attempts')} = "
            f"{qn('attempts')} + 1, {qn('error')} = '', {qn('reply')} = %s, "
            f"{qn('updated_at')} = %s WHERE {event_id} = %s AND {qn('target')} = %s"
        ),
        deferred=deferred,
    )
