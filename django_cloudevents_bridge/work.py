"""Deferred processing: received events stored now, their targets run on a worker.

In deferred mode (``CLOUDEVENTS_RECEIVER["MODE"] = "deferred"``) the receiver
validates an event, stores it with one due ``TargetRun`` per target in one
transaction and answers 202. The runs are the truth: after the commit a task
carrying only the stored events' ids goes to ``django.tasks`` (if a backend is
configured), and ``manage.py cloudevents_worker`` runs whatever is due with or
without one. A lost task leaves its runs due for the worker; a task run twice
finds them done. Each target runs in one transaction with its claim and its
done-record, as in inline mode (receive/dispatch.py), so it runs exactly once;
a failure is retried alone after a backoff, and parked after ``MAX_ATTEMPTS``
(at once, as rejected, for a ``ValidationError``). An attempt is counted when its
run is claimed, before the target runs, so a target that kills its worker is
parked too. With ``ORDERING`` on, an event waits until the earlier events of its
key have no deferred run left to do (done, parked or rejected).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from types import ModuleType
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DEFAULT_DB_ALIAS, transaction
from django.utils import timezone

from . import conf, signals
from .bindings import jsonformat
from .emit import emit
from .events import CloudEvent
from .models import ReceivedEvent, TargetRun
from .receive.dispatch import Report, TargetFailed, _run
from .targets import Target, named, targets_for

logger = logging.getLogger("django_cloudevents_bridge")


def tasks_api() -> ModuleType | None:
    """``django.tasks`` (Django 6), else the ``django-tasks`` backport, else None."""
    try:
        import django.tasks as api
    except ImportError:
        try:
            import django_tasks as api  # type: ignore[no-redef,unused-ignore]
        except ImportError:
            return None
    return api


def deferred() -> bool:
    """True if the receiver stores events and leaves their targets to a worker."""
    return bool(conf.receiver()["MODE"] == "deferred")


def task_backend() -> str | None:
    """The ``django.tasks`` backend alias to enqueue on; None: the worker polls."""
    alias = conf.receiver()["TASK_BACKEND"]
    if alias is None:
        alias = "default" if conf.tasks_configured() else None
    return alias or None


def check(event: CloudEvent, mode_deferred: bool) -> None:
    """Raise ValidationError if a named event's data is invalid for handlers
    that will run later: all of them in deferred mode, else the always-deferred.
    """
    named.check(event, deferred_only=not mode_deferred)


def store(events: Sequence[CloudEvent]) -> list[int]:
    """Store events and their due runs in one transaction; enqueue after commit.

    Returns the ids of the stored events that owe work (not duplicates). Then
    sends ``event_received`` for each event, its report's ``deferred`` naming
    the targets this delivery gave the worker (none for a duplicate).
    """
    received = []
    # One event: no transaction of ours (its store is atomic on its own, and
    # BEGIN and COMMIT would double its round trips); a batch: all or nothing.
    with transaction.atomic() if len(events) > 1 else contextlib.nullcontext():
        owing = []
        for event in events:
            names = [target.name for target in targets_for(event)]
            stored = ReceivedEvent.objects.store_deferred(event, names)
            if stored is not None and names:
                owing.append(stored)
            received.append((event, Report(deferred=[] if stored is None else names)))
        if owing:
            transaction.on_commit(lambda: enqueue(owing))
    for event, report in received:  # after the store (and its commit, if ours)
        signals.event_received.send_robust(ReceivedEvent, event=event, report=report)
    return owing


def schedule(stored: int, targets: Sequence[str]) -> bool:
    """Inline mode: make an event's always-deferred runs due, and enqueue them.

    Only runs not yet given to the worker: a redelivery enqueues nothing new
    (and returns False).
    """
    if not TargetRun.objects.schedule(stored, targets):
        return False
    transaction.on_commit(lambda: enqueue([stored]))
    return True


def enqueue(events: list[int], at: datetime | None = None) -> bool:
    """Hand the events' due runs to ``django.tasks``; False if not enqueued.

    Never raises: a lost enqueue only delays the work until the worker's sweep.
    """
    alias = task_backend()
    if alias is None:
        return False
    try:
        from .tasks import process_events

        task = process_events.using(backend=alias)
        if at is not None:
            if not task.get_backend().supports_defer:
                return False  # the worker's sweep retries it when due
            task = task.using(run_after=at)
        task.enqueue(events)
    except Exception as err:
        logger.warning(
            "Could not enqueue deferred CloudEvents %s (cloudevents_worker will "
            "run them): %s",
            events,
            err,
        )
        return False
    return True


def backoff(attempts: int, options: dict[str, Any] | None = None) -> timedelta:
    """The delay before attempt ``attempts + 1``: doubled each time, capped
    (``BACKOFF`` and ``BACKOFF_MAX`` of ``options``, or of the receiver)."""
    options = options or conf.receiver()
    delay = options["BACKOFF"] * 2 ** min(max(attempts - 1, 0), 32)
    return timedelta(seconds=min(delay, options["BACKOFF_MAX"]))


def process(
    events: Sequence[int] | None = None,
    *,
    stop: threading.Event | None = None,
    using: str = DEFAULT_DB_ALIAS,
    after_each: Callable[[], object] | None = None,
) -> Counter[str]:
    """Run due target runs (of ``events``, or all) until none is due, or ``stop``.

    Counts the outcomes: "done", "failed" (due again later), "parked",
    "rejected", and "skipped" (a run another worker or a replay took meanwhile).
    """
    outcomes: Counter[str] = Counter()
    while stop is None or not stop.is_set():
        outcome = run_one(events, using=using)
        if outcome is None:
            break
        outcomes[outcome] += 1
        if after_each is not None:  # the worker command's heartbeat
            after_each()
    return outcomes


def run_one(
    events: Sequence[int] | None = None, using: str = DEFAULT_DB_ALIAS
) -> str | None:
    """Claim one due run and run its target; its outcome, or None if none is due.

    The claim counts the attempt and commits first (see ``TargetRunQuerySet.
    start``); the target then runs in one transaction with the run's lock and
    its done-record, so a worker killed inside it leaves nothing done and the
    run due again (after its backoff), with one attempt fewer left.
    """
    options = conf.receiver()
    runs = TargetRun.objects.using(using)
    run = runs.start(
        timezone.now(),
        events,
        ordered=bool(options["ORDERING"]),
        backoff=(float(options["BACKOFF"]), float(options["BACKOFF_MAX"])),
    )
    if run is None:
        return None
    outcome = _attempt(run, using, options["MAX_ATTEMPTS"])
    if options["ORDERING"] and outcome != "failed" and task_backend() is not None:
        # A task of the next event of this key found it held back: enqueue
        # it again now that this one may have let it go.
        after = ReceivedEvent.objects.using(using).next_of_key(run.event_id)
        if after is not None:
            enqueue([after])
    return outcome


def _attempt(run: TargetRun, using: str, max_attempts: int) -> str:
    """Run a started run's target; its outcome."""
    if run.attempts > max_attempts:
        # Its last attempt ended with no outcome: the worker died inside it.
        return _failed(run, WorkerDied(), using)
    runs = TargetRun.objects.using(using)
    try:
        with transaction.atomic(using=using):
            if not runs.hold(run):  # taken over, or done by a replay meanwhile
                return "skipped"
            event, target = _target_of(run)
            reply, kept = _run(target, event)
            if reply is not None:
                kept = _send(reply, event, kept)
            runs.finish(run, kept)
    except TargetFailed as failure:  # rolled back: nothing of the target's work
        return _failed(run, failure.error, using)
    return "done"


class WorkerDied(Exception):
    """A run's last attempt recorded no outcome: its worker died inside it."""

    def __str__(self) -> str:
        return "the worker died during the last attempt (killed or crashed)"


def _target_of(run: TargetRun) -> tuple[CloudEvent, Target]:
    """The run's stored event and its target; TargetFailed if either is gone."""
    try:
        event = jsonformat.from_json(run.event.event)
    except Exception as err:  # an edited row: a failure to record, not a crash
        raise TargetFailed(err) from err
    for target in targets_for(event):
        if target.name == run.target:
            return event, target
    # Not registered (any more, or not yet in this process): retried, then parked.
    raise TargetFailed(LookupError(f"no target {run.target} is registered"))


def _send(reply: CloudEvent, event: CloudEvent, kept: str) -> str:
    """A reply goes out through the emit path (in this transaction, with the
    outbox); with no sink it stays on the run, with a warning. What to keep."""
    if (reply.get_source(), reply.get_id()) == (event.get_source(), event.get_id()):
        return ""  # the received event handed back: a loop through the broker
    if conf.sink() is None and conf.handler() == "http":
        logger.warning(
            "Reply %s to CloudEvent %s kept on its target run: no sink (%s) to "
            "send it to in deferred mode",
            reply.get_id(),
            event.get_id(),
            conf.env()["SINK_VAR"],
        )
        return kept
    emit([reply])
    return ""


def _failed(run: TargetRun, error: BaseException, using: str) -> str:
    """Record a started run's failure: retried after a backoff, parked, rejected."""
    # The claim that found a dead worker's run counted no real attempt.
    attempts = run.attempts - 1 if isinstance(error, WorkerDied) else run.attempts
    if isinstance(error, DjangoValidationError):
        status, at = TargetRun.Status.REJECTED, None
    elif attempts >= conf.receiver()["MAX_ATTEMPTS"]:
        status, at = TargetRun.Status.PARKED, None
    else:
        status, at = TargetRun.Status.FAILED, timezone.now() + backoff(attempts)
    logger.error(
        "Target %s failed on CloudEvent %s (%s), attempt %d: %s",
        run.target,
        run.event.event_id,
        run.event.type,
        attempts,
        status,
        exc_info=None if isinstance(error, WorkerDied) else error,
    )
    TargetRun.objects.using(using).retry(run, error, status, at, attempts)
    if at is not None:
        enqueue([run.event_id], at)
    return str(status)


def run_task(events: list[Any]) -> int:
    """The task's body: run the due runs of these stored events; how many ran."""
    return sum(process([int(stored) for stored in events]).values())
