"""Fan a received event out to its targets, each exactly once.

Each target's work commits together with the record that it is done, so a
redelivered event runs only the targets that have not succeeded yet, and two
concurrent deliveries of one event never run a target twice. A target runs in
one transaction with its claim and its done-record (no savepoint: four round
trips on success); a failure rolls that transaction back and is recorded after.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction

from .. import signals
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


@dataclass
class Report:
    """What dispatching one event did."""

    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # done on an earlier delivery
    failed: list[str] = field(default_factory=list)
    # Failed targets that rejected the event's data (a ValidationError): a
    # retry cannot help, so the sender gets a 400, not a 500.
    rejected: dict[str, str] = field(default_factory=dict)
    replies: list[CloudEvent] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def deliver(event: CloudEvent) -> Report:
    """Run every target that still owes work for this event.

    A failing target does not stop the others; its error is recorded and the
    report says so. Database errors of our own propagate (the caller answers
    503 so the sender retries).
    """
    targets = registry.targets_for(event)
    stored = store.record(event, [target.name for target in targets])
    report = Report()
    for target in targets:
        try:
            with transaction.atomic():
                if not store.claim(stored, target.name):
                    report.skipped.append(target.name)
                    continue
                try:
                    reply = target.run(event)
                    if transaction.get_rollback():
                        # The target caught a database error itself: its writes
                        # are being rolled back, so it must not be marked done.
                        raise TargetRolledBack("its database work was rolled back")
                except Exception as err:
                    raise TargetFailed(err) from err  # rolls the transaction back
                store.done(stored, target.name)
        except TargetFailed as failure:
            logger.error(
                "Target %s failed on CloudEvent %s (%s)",
                target.name,
                event.get_id(),
                event.get_type(),
                exc_info=failure.error,
            )
            # After the rollback, in a transaction of its own: a redelivery that
            # runs the target again meanwhile is a retry, which is what we want.
            store.fail(stored, target.name, failure.error)
            report.failed.append(target.name)
            if isinstance(failure.error, DjangoValidationError):
                report.rejected[target.name] = "; ".join(failure.error.messages)
            continue
        report.ran.append(target.name)
        if reply is not None:
            report.replies.append(reply)
    signals.event_received.send_robust(ReceivedEvent, event=event, report=report)
    return report
