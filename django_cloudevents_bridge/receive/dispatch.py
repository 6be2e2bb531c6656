"""Fan a received event out to its targets, each exactly once.

Each target's work commits together with the record that it is done, so a
redelivered event runs only the targets that have not succeeded yet, and two
concurrent deliveries of one event never run a target twice. A target runs in
one transaction with its claim and its done-record (no savepoint); a failure
rolls that transaction back and is recorded after. On an event's first delivery
the first target's transaction also stores the event: on PostgreSQL that is
BEGIN, one INSERT, the target's own work, COMMIT.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction

from .. import events, signals
from ..events import CloudEvent
from ..models import ReceivedEvent
from . import registry, store

logger = logging.getLogger("django_cloudevents_bridge")


class TargetRolledBack(Exception):
    """A target returned, but a database error it caught undid its work."""


class TargetFailed(Exception):
    """Carries a target's exception out of its transaction (so it rolls back)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(frozen=True)
class Owed:
    """A reply event, and the target run that keeps it until it is sent."""

    event: CloudEvent
    stored: int  # the received event's row
    target: str


@dataclass
class Report:
    """What dispatching one event did."""

    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # done on an earlier delivery
    failed: list[str] = field(default_factory=list)
    # Failed targets that rejected the event's data (a ValidationError): a
    # retry cannot help, so the sender gets a 400, not a 500.
    rejected: dict[str, str] = field(default_factory=dict)
    replies: list[CloudEvent] = field(default_factory=list)  # from targets run now
    # Every reply still owed, in target order: those of targets run now, and
    # those kept from earlier deliveries that never went out through the
    # handler (they were in a response the sender may not have got).
    owed: list[Owed] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def deliver(event: CloudEvent, report: Report | None = None) -> Report:
    """Run every target that still owes work for this event; fill ``report``.

    A failing target does not stop the others; its error is recorded and the
    report says so. Database errors of our own propagate (the caller answers
    503 so the sender retries); a caller that passed ``report`` still sees what
    ran before (their replies must not be lost).

    An event seen for the first time takes the short path: it is stored, and
    its first target run, in one transaction (one commit). Every other target,
    and every target of a redelivered event, runs in a transaction of its own
    with its claim and its done-record.
    """
    targets = registry.targets_for(event)
    names = [target.name for target in targets]
    report = Report() if report is None else report
    rest = targets
    stored = None
    reply = None
    if targets:
        try:
            with transaction.atomic():
                stored = store.record_first(event, names)
                if stored is not None:
                    reply, kept = _run(targets[0], event)
                    if kept:
                        store.keep_reply(stored, targets[0].name, kept)
            if stored is not None:  # committed
                _ran(report, targets[0], reply, stored)
        except TargetFailed as failure:  # rolled back: nothing of it was stored
            stored = store.record(event, names)
            _failed(report, targets[0], event, stored, failure)
        if stored is not None:
            rest = targets[1:]
    if stored is None:
        stored = store.record(event, names)
    _deliver_rest(event, stored, rest, report)
    signals.event_received.send_robust(ReceivedEvent, event=event, report=report)
    return report


def _deliver_rest(
    event: CloudEvent, stored: int, rest: list[registry.Target], report: Report
) -> None:
    """Claim and run each target in a transaction of its own."""
    for target in rest:
        try:
            with transaction.atomic():
                owed, kept = store.claim(stored, target.name)
                if not owed:
                    report.skipped.append(target.name)
                    _still_owed(report, target, stored, kept)
                    continue
                reply, kept = _run(target, event)
                store.done(stored, target.name, kept)
        except TargetFailed as failure:
            _failed(report, target, event, stored, failure)
            continue
        _ran(report, target, reply, stored)


def _run(target: registry.Target, event: CloudEvent) -> tuple[CloudEvent | None, str]:
    """Inside the target's transaction: its reply, and the reply as stored.

    Raises TargetFailed if it failed (a reply that cannot be stored is a
    failure too: it would be lost on a redelivery).
    """
    try:
        reply = target.run(event)
        if transaction.get_rollback():
            # The target caught a database error itself: its writes are being
            # rolled back, so it must not be marked done.
            raise TargetRolledBack("its database work was rolled back")
        kept = "" if reply is None else events.to_json(reply).decode()
    except Exception as err:
        raise TargetFailed(err) from err  # rolls the transaction back
    return reply, kept


def _ran(
    report: Report, target: registry.Target, reply: CloudEvent | None, stored: int
) -> None:
    report.ran.append(target.name)
    if reply is not None:
        report.replies.append(reply)
        report.owed.append(Owed(reply, stored, target.name))


def _still_owed(
    report: Report, target: registry.Target, stored: int, kept: str
) -> None:
    """A done target's kept reply: owed still, unless it went out already."""
    if not kept:
        return
    try:
        reply = events.from_json(kept)
    except Exception:  # an edited row: not worth failing the delivery for
        logger.warning("Ignoring the unreadable reply kept by %s", target.name)
        return
    report.owed.append(Owed(reply, stored, target.name))


def _failed(
    report: Report,
    target: registry.Target,
    event: CloudEvent,
    stored: int,
    failure: TargetFailed,
) -> None:
    """Log and record a target's failure, after its transaction rolled back."""
    logger.error(
        "Target %s failed on CloudEvent %s (%s)",
        target.name,
        event.get_id(),
        event.get_type(),
        exc_info=failure.error,
    )
    # In a transaction of its own: a redelivery that runs the target again
    # meanwhile is a retry, which is what we want.
    store.fail(stored, target.name, failure.error)
    report.failed.append(target.name)
    if isinstance(failure.error, DjangoValidationError):
        report.rejected[target.name] = "; ".join(failure.error.messages)
