"""How the relay's send threads put one group of a claim's rows through the
handler: in order, in chunks, stopping at the first failure.

No database work here: the relay records the ``Outcome``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone

from .. import events, tracing
from ..bindings import jsonformat
from ..exceptions import DeliveryError
from ..models import OutboxEvent
from ..redact import redact
from . import capture
from .handlers import BaseHandler

logger = logging.getLogger("django_cloudevents_bridge")

CHUNK = 10  # rows sent between two checks that the lease still holds


@dataclass
class Outcome:
    """How sending one group of rows went."""

    sent: list[OutboxEvent]
    failed: list[OutboxEvent] = field(default_factory=list)
    error: DeliveryError | None = None
    untried: list[OutboxEvent] = field(default_factory=list)


def send_group(handler: BaseHandler, group: list[OutboxEvent]) -> Outcome:
    """Send rows in order; stop at the first failure (later rows wait for it).

    Rows go out in chunks, and no chunk starts once the claim's lease was lost
    (see ``Relay.send``): another relay may have taken the rows by then.
    """
    batch = getattr(handler, "batch", False)
    step = len(group) if batch else CHUNK
    sent: list[OutboxEvent] = []
    for start in range(0, len(group), step):
        chunk, rest = group[start : start + step], group[start + step :]
        lease = chunk[0].locked_until
        if lease is None or timezone.now() >= lease:
            logger.warning(
                "Lease lost before %d CloudEvent(s) were sent; left to the next claim",
                len(group) - start,
            )
            return Outcome(sent, untried=chunk + rest)
        documents, broken = stored_documents(chunk)
        if broken is not None:  # send the rows before it, then report it
            chunk, rest = chunk[: len(documents)], chunk[len(documents) :] + rest
        try:
            done = send_stored(handler, documents) if documents else 0
        except DeliveryError as err:
            # Those before the failed attempt went out; those in it (one
            # event, or one request of a batch) failed; the rest were not
            # sent at all, so no attempt is counted against them.
            ok = chunk[: err.delivered]
            if err.attempted is not None:
                end = err.delivered + max(err.attempted, 1)
            else:
                end = len(chunk) if batch else err.delivered + 1
            return Outcome(
                sent + ok, chunk[err.delivered : end], err, chunk[end:] + rest
            )
        except Exception as err:  # a bug in a handler must not stop the relay
            reason = redact(f"{type(err).__name__}: {err}")
            logger.exception("Handler %r failed: %s", handler, reason)
            error = DeliveryError(reason)
            return Outcome(sent, chunk[:1], error, chunk[1:] + rest)
        sent += chunk[:done]
        if broken is not None:
            return Outcome(sent, rest[:1], broken, rest[1:])
    return Outcome(sent)


def stored_documents(rows: list[OutboxEvent]) -> tuple[list[str], DeliveryError | None]:
    """The rows' events as sent: a captured row's made by ``capture.document``.

    Stops at the first captured row that cannot become an event (its model is
    gone, say): the documents before it, and a permanent error for it (the row
    is parked with the reason; retrying would not help).
    """
    documents = []
    for row in rows:
        if not capture.is_captured(row):
            documents.append(row.event)
            continue
        try:
            documents.append(capture.document(row))
        except Exception as err:
            reason = redact(f"not a CloudEvent: {type(err).__name__}: {err}")
            logger.exception("Captured outbox row %s: %s", row.pk, reason)
            return documents, DeliveryError(reason, permanent=True)
    return documents, None


def send_stored(handler: BaseHandler, documents: list[str]) -> int:
    """Send stored events (JSON documents); how many went out."""
    with tracing.sending(tracing.stored_attributes(documents), _destination(handler)):
        send = getattr(handler, "send_stored", None)
        if send is not None:
            return int(send(documents))
        # A handler of the protocol's older shape (no BaseHandler): decode here.
        # Knative's overrides belong to the process that sends (SPEC-NOTES 4.2).
        return handler.send_events(
            [events.with_overrides(jsonformat.from_json(d)) for d in documents]
        )


def _destination(handler: BaseHandler) -> str:
    """Where a handler sends, for a span's name (only worked out when tracing)."""
    if not tracing.tracing():
        return ""
    current = getattr(handler, "current_sink", None)
    return str((current() if current is not None else None) or type(handler).__module__)


_RECORDED = (
    "status",
    "attempts",
    "last_error",
    "locked_until",
    "delivered_at",
    "next_attempt_at",
)


def snapshot(outcomes: list[Outcome]) -> list[tuple[OutboxEvent, tuple[Any, ...]]]:
    """What recording ``outcomes`` would change on their rows, as it is now."""
    return [
        (row, tuple(getattr(row, name) for name in _RECORDED))
        for outcome in outcomes
        for row in (*outcome.sent, *outcome.failed)
    ]


def restore(saved: list[tuple[OutboxEvent, tuple[Any, ...]]]) -> None:
    for row, values in saved:
        for name, value in zip(_RECORDED, values, strict=True):
            setattr(row, name, value)
