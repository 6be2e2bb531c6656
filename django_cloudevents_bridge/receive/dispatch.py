"""Fan a received event out to its targets, each exactly once.

Each target's work commits together with the record that it is done, so a
redelivered event runs only the targets that have not succeeded yet, and two
concurrent deliveries of one event never run a target twice. A target runs in
one transaction with its claim and its done-record (no savepoint); a failure
rolls that transaction back and is recorded after. On an event's first delivery
the first target's transaction also stores the event: on PostgreSQL that is
BEGIN, one INSERT, the target's own work, COMMIT. The bookkeeping (record,
claim, done, fail) is the inbox's QuerySet methods, in models/inbox.py.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction

from .. import events, signals, tracing
from ..bindings import jsonformat
from ..events import CloudEvent
from ..models import ReceivedEvent, TargetRun
from ..targets import Target, targets_for

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
    # Left to the worker by this delivery (deferred mode, or always-deferred
    # targets): stored as due runs, not run yet.
    deferred: list[str] = field(default_factory=list)
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

    Each target runs in a transaction of its own with its claim and its
    done-record. An event seen for the first time takes a short path for its
    first target: the event is stored, and that target run, in one transaction
    (one commit).
    """
    targets = targets_for(event)
    later = [target.name for target in targets if target.deferred]
    if later:  # declared always deferred: stored as due runs for the worker
        targets = [target for target in targets if not target.deferred]
    names = [target.name for target in targets] + later
    report = Report() if report is None else report
    stored = _first_delivery(event, targets, names, report)
    if stored is not None:  # the first target ran (or failed) as the event was stored
        targets = targets[1:]
    else:  # delivered before, or no short path: every target claims its run
        stored = ReceivedEvent.objects.record(event, names)
    for target in targets:
        try:
            with transaction.atomic():
                owed, kept = TargetRun.objects.claim(stored, target.name)
                if not owed:  # done on an earlier delivery
                    report.skipped.append(target.name)
                    _still_owed(report, target, stored, kept)
                    continue
                reply, kept = _run(target, event)
                TargetRun.objects.done(stored, target.name, kept)
        except TargetFailed as failure:
            _failed(report, target, event, stored, failure)
            continue
        _ran(report, target, reply, stored)
    if later:
        from .. import work  # work imports this module

        if work.schedule(stored, later):
            report.deferred.extend(later)
    signals.event_received.send_robust(ReceivedEvent, event=event, report=report)
    return report


def _first_delivery(
    event: CloudEvent, targets: list[Target], names: list[str], report: Report
) -> int | None:
    """Store a new event and run its first target in one transaction (one commit).

    The stored event's id once that first target ran or failed; None, having
    done nothing, if the event was stored before (or there is no target, or the
    database has no one-statement upsert).
    """
    if not targets:
        return None
    first = targets[0]
    try:
        with transaction.atomic():
            stored = ReceivedEvent.objects.record_first(event, names)
            if stored is None:
                return None
            reply, kept = _run(first, event)
            if kept:
                TargetRun.objects.keep_reply(stored, first.name, kept)
    except TargetFailed as failure:  # rolled back: nothing of it was stored
        stored = ReceivedEvent.objects.record(event, names)
        _failed(report, first, event, stored, failure)
        return stored
    _ran(report, first, reply, stored)  # committed
    return stored


def _run(target: Target, event: CloudEvent) -> tuple[CloudEvent | None, str]:
    """Inside the target's transaction: its reply, and the reply as stored.

    Raises TargetFailed if it failed (a reply that cannot be stored is a
    failure too: it would be lost on a redelivery).
    """
    try:
        with (
            tracing.processing(event.get_attributes(), target.name),
            events.caused_by(event),
        ):
            reply = target.run(event)
        if transaction.get_rollback():
            # The target caught a database error itself: its writes are being
            # rolled back, so it must not be marked done.
            raise TargetRolledBack("its database work was rolled back")
        kept = "" if reply is None else jsonformat.to_json(reply).decode()
    except Exception as err:
        raise TargetFailed(err) from err  # rolls the transaction back
    return reply, kept


def _ran(report: Report, target: Target, reply: CloudEvent | None, stored: int) -> None:
    report.ran.append(target.name)
    if reply is not None:
        report.replies.append(reply)
        report.owed.append(Owed(reply, stored, target.name))


def _still_owed(report: Report, target: Target, stored: int, kept: str) -> None:
    """A done target's kept reply: owed still, unless it went out already."""
    if not kept:
        return
    try:
        reply = jsonformat.from_json(kept)
    except Exception:  # an edited row: not worth failing the delivery for
        logger.warning("Ignoring the unreadable reply kept by %s", target.name)
        return
    report.owed.append(Owed(reply, stored, target.name))


def _failed(
    report: Report,
    target: Target,
    event: CloudEvent,
    stored: int,
    failure: TargetFailed,
) -> None:
    """Log and record a target's failure, after its transaction rolled back."""
    if isinstance(failure.error, DjangoValidationError):
        # The sender's data, refused with a 400: not our error, no traceback.
        logger.warning(
            "Target %s rejected CloudEvent %s (%s): %s",
            target.name,
            event.get_id(),
            event.get_type(),
            "; ".join(failure.error.messages),
        )
    else:
        logger.error(
            "Target %s failed on CloudEvent %s (%s)",
            target.name,
            event.get_id(),
            event.get_type(),
            exc_info=failure.error,
        )
    # In a transaction of its own: a redelivery that runs the target again
    # meanwhile is a retry, which is what we want.
    TargetRun.objects.fail(stored, target.name, failure.error)
    report.failed.append(target.name)
    if isinstance(failure.error, DjangoValidationError):
        report.rejected[target.name] = "; ".join(failure.error.messages)
