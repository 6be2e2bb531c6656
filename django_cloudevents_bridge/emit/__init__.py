"""Emit: hand events to the configured handler once the transaction commits.

This package is also the public ``emit`` function: ``from django_cloudevents_bridge
import emit`` gives this module, and calling it calls :func:`emit`. So the
documented import strings (``django_cloudevents_bridge.emit.handlers.http``, ...)
and ``emit(events)`` both work, whichever was imported first.
"""

from __future__ import annotations

import logging
import sys
import threading
import types
from collections.abc import Sequence
from functools import partial

from django.db import DEFAULT_DB_ALIAS, connections, transaction

from .. import conf, tracing
from .. import events as ce
from ..events import CloudEvent
from ..exceptions import DeliveryError
from ..redact import redact
from .handlers import BaseHandler, get_handler

logger = logging.getLogger("django_cloudevents_bridge")

_lock = threading.Lock()
_handler: BaseHandler | None = None


def emit(events: Sequence[CloudEvent], *, using: str | None = None) -> None:
    """Deliver events once the current transaction on ``using`` commits.

    ``outbox`` (default): INSERT the events in the caller's transaction, then try
    them in the background after the commit; the relay retries what fails.
    ``on_commit``: hand them to the handler after the commit, no retries.
    A rolled-back transaction sends nothing. Never raises (failures are logged)
    unless writing the outbox row aborted the transaction (PostgreSQL).
    """
    using = using or DEFAULT_DB_ALIAS
    if tracing.metering():  # counted once the events are committed
        transaction.on_commit(
            partial(tracing.count, "emitted", "out", len(events)), using=using
        )
    if conf.delivery() == "outbox":
        from . import outbox  # imports the model: not at app-loading time

        outbox.store(events, using)
    else:
        transaction.on_commit(partial(deliver, list(events)), using=using, robust=True)


def transaction_aborted(using: str | None = None) -> bool:
    """True if the database refuses the rest of the current transaction.

    PostgreSQL does after any failed statement, and a COMMIT then rolls back
    without an error: a failure that left the caller's transaction so must not be
    hidden, or the caller's rows would be lost without a word. When True, the
    ``atomic()`` block is also marked for rollback, as Django marks it after a
    failed query of its own: even if the caller catches the error, the block
    ends in a rollback and its ``on_commit`` callbacks do not run.
    """
    alias = using or DEFAULT_DB_ALIAS
    connection = connections[alias]
    if connection.vendor != "postgresql" or connection.connection is None:
        return False
    info = getattr(connection.connection, "info", None)
    status = getattr(info, "transaction_status", None)
    aborted = getattr(status, "name", status) in ("INERROR", 3)  # psycopg 3, 2
    if aborted and connection.in_atomic_block:
        transaction.set_rollback(True, using=alias)
    return aborted


def deliver(events: Sequence[CloudEvent]) -> int:
    """Send events through the shared handler now; log, don't raise, on failure."""
    try:
        handler = shared_handler()
        handler.open()
        return handler.send_events([ce.with_overrides(event) for event in events])
    except DeliveryError as err:
        failed = events[err.delivered] if err.delivered < len(events) else None
        for event in events[err.delivered :]:
            logger.error(
                "CloudEvent %s (%s) not delivered: %s",
                event.get_id(),
                event.get_type(),
                redact(err.reason) if event is failed else "an earlier event failed",
            )
    except Exception:
        logger.exception(
            "CloudEvents %s not delivered", ", ".join(e.get_id() for e in events)
        )
    return 0


def shared_handler() -> BaseHandler:
    """The process-wide handler, so connections (keep-alive) are reused."""
    global _handler
    with _lock:
        if _handler is None:
            _handler = get_handler(**conf.handler_options())
        return _handler


def reset_handler(**kwargs: object) -> None:
    """Close and forget the shared handler (settings changed, or in tests)."""
    global _handler
    setting = kwargs.get("setting")
    if setting is not None and not str(setting).startswith("CLOUDEVENTS_"):
        return
    with _lock:
        handler, _handler = _handler, None
    if handler is not None:
        handler.close()


class _EmitModule(types.ModuleType):
    """This module, callable as :func:`emit`."""

    def __call__(
        self, events: Sequence[CloudEvent], *, using: str | None = None
    ) -> None:
        emit(events, using=using)


sys.modules[__name__].__class__ = _EmitModule
