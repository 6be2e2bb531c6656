"""Subscriptions as a dispatch target (django-entity-event on CloudEvents).

An event whose type is a ``Source``'s ``event_type`` and which passes the
source's ``filter`` gets one target, ``subscriptions``, that always runs on the
worker (``deferred=True``, in inline and deferred receive modes alike: the
fan-out to thousands of people is no work for a request). It stores the event
once (``Event``, INSERT ... ON CONFLICT DO NOTHING on its CloudEvent source and
id: concurrent duplicate deliveries give one row) with its actors and expiry,
then writes the people it reaches on every medium whose channel is not
``"feed"`` to the notification ledger, all in the target's transaction. The
ledger's unique key (event source, event id, recipient, channel) is shared with
watches: a person reached through two groups, and also watching, gets one
message per channel.

Which types have a source is read from the database at most every
``SOURCES_TTL`` seconds per process (and at once after a ``Source`` is saved or
deleted in this process), so the receiver does not query it per event.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import OperationalError, ProgrammingError, router, transaction
from django.db.models.signals import post_delete, post_save

from .. import filters
from ..events import CloudEvent, parse_time
from ..models import Event, EventActor, Medium, Source, Unsubscription
from ..subscriptions import queries, resolvers
from . import Target, register_provider

logger = logging.getLogger("django_cloudevents_bridge")

NAME = "subscriptions"  # the target's stored name: fixed for ever
ACTORS = "actors"  # the extension attribute: app_label.model/pk, comma-separated
EXPIRY = "expirytime"
FEED = "feed"  # a medium read by the feed only: nothing to send
SOURCES_TTL = 5.0  # seconds a process trusts its list of sources' event types

_lock = threading.Lock()
_sources: tuple[float, dict[str, Any]] = (0.0, {})


def _forget(**kwargs: Any) -> None:
    global _sources
    _sources = (0.0, {})


post_save.connect(_forget, sender=Source, dispatch_uid="cloudevents_bridge.sources")
post_delete.connect(_forget, sender=Source, dispatch_uid="cloudevents_bridge.sources-")


def _filter(source_filter: Any, label: str) -> filters.Filter | None:
    """The compiled filter (None: every event passes); InvalidFilter if bad."""
    if source_filter in (None, [], {}):
        return None
    try:
        return filters.compile(source_filter)
    except filters.InvalidFilter:
        logger.error("Source %s has an invalid filter: no event passes it", label)
        raise


def _passes(spec: Any, event: CloudEvent, label: str) -> bool:
    try:
        compiled = _filter(spec, label)
    except filters.InvalidFilter:
        return False
    return compiled is None or compiled.matches(event)


def _compiled(spec: Any, label: str) -> filters.Filter | bool:
    """A source's filter as the provider keeps it: compiled, True (no filter:
    every event passes) or False (invalid: none does; logged once a refresh)."""
    try:
        return _filter(spec, label) or True
    except filters.InvalidFilter:
        return False


def source_types() -> dict[str, filters.Filter | bool]:
    """{event type: its source's filter, see ``_compiled``}, refreshed every
    SOURCES_TTL seconds; empty while the tables are not migrated."""
    global _sources
    with _lock:
        expires, types = _sources
        if time.monotonic() < expires:
            return types
    try:
        with transaction.atomic():  # a savepoint inside the caller's transaction
            rows = list(Source.objects.values_list("event_type", "name", "filter"))
    except (ProgrammingError, OperationalError) as err:  # no table (yet)
        logger.warning("Subscription sources unavailable: %s", err)
        rows = []
    types = {event_type: _compiled(spec, name) for event_type, name, spec in rows}
    with _lock:
        _sources = (time.monotonic() + SOURCES_TTL, types)
    return types


@register_provider
def subscription_targets(event: CloudEvent) -> Iterator[Target]:
    """The subscriptions target, for events of a source's type that pass its filter."""
    test = source_types().get(event.get_type(), False)
    if test is True or (test is not False and test.matches(event)):
        yield Target(NAME, notify_subscribers, deferred=True)


def actors(event: CloudEvent, source: Source, using: str) -> list[tuple[Any, str]]:
    """(model, key text) of each actor: the ``actors`` extension, or the data at
    the source's ``actors_path``; a reference that names no model is logged and
    left out (the event is kept)."""
    if source.actors_path:
        value: Any = event.get_data()
        for part in source.actors_path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
    else:
        value = event.get_attributes().get(ACTORS)
    if isinstance(value, str):
        references = value.split(",")
    elif isinstance(value, list):
        references = [item for item in value if isinstance(item, str)]
    else:
        references = []
    found = []
    for reference in references:
        if not reference.strip():
            continue
        try:
            actor = resolvers.parse_entity(reference, using)
        except ValueError as err:
            logger.warning("CloudEvent %s: actor left out: %s", event.get_id(), err)
            continue
        if actor not in found:
            found.append(actor)
    return found


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else None
    try:
        return parse_time(value) if isinstance(value, str) else None
    except ValueError:
        return None


def store(event: CloudEvent, source: Source, *, using: str | None = None) -> Event:
    """The stored event (stored now, or by an earlier or concurrent delivery)."""
    from django.contrib.contenttypes.models import ContentType

    using = using or router.db_for_write(Event)
    attributes = event.get_attributes()
    when = _time(attributes.get("time"))
    expiry = _time(attributes.get(EXPIRY))
    row = Event(
        source=source,
        event_source=event.get_source(),
        event_id=event.get_id(),
        subject=str(attributes.get("subject") or "")[:1024],
        context=event.get_data(),
    )
    if when is not None:
        row.time = when
    if expiry is not None:
        row.expires_at = expiry
    elif source.lifetime is not None:
        row.expires_at = row.time + source.lifetime
    if row.context is None or isinstance(row.context, bytes | bytearray):
        row.context = {}  # binary data is no JSON context
    # ON CONFLICT DO NOTHING: a concurrent duplicate waits for the first one's
    # commit, then reads its row.
    Event.objects.using(using).bulk_create([row], ignore_conflicts=True)
    stored = Event.objects.using(using).get(
        event_source=row.event_source, event_id=row.event_id
    )
    rows = [
        EventActor(
            event=stored,
            entity_type=ContentType.objects.db_manager(using).get_for_model(model),
            entity_id=key,
        )
        for model, key in actors(event, source, using)
    ]
    EventActor.objects.using(using).bulk_create(rows, ignore_conflicts=True)
    return stored


def notify_subscribers(event: CloudEvent) -> int:
    """Store the event and record its people on every sending medium; how many
    ledger rows are new."""
    from .. import notifications
    from ..notifications.channels import get_channel
    from ..notifications.channels.email import Channel as EmailChannel

    source = Source.objects.filter(event_type=event.get_type()).first()
    if source is None or not _passes(source.filter, event, source.name):
        return 0
    using = router.db_for_write(Event)
    stored = store(event, source, using=using)
    mediums = {m.pk: m for m in Medium.objects.using(using).exclude(channel=FEED)}
    if not mediums:
        return 0
    new = 0
    reached = queries.resolve([stored.pk], list(mediums), using=using)
    for medium_pk, group in _by_medium(reached):
        medium = mediums[medium_pk]
        channel = get_channel(medium.channel)
        items: Iterator[tuple[Any, Any]]
        if isinstance(channel, EmailChannel):
            text, html = medium.render([stored])[stored]
            subject = " ".join(str(source).split())[:200]
            items = (
                (person, _email(subject, text, html, person.email))
                for person in group
                if person.email
            )
        else:  # the webhook channel (or any other): the CloudEvent, addressed
            items = ((person, addressed(event, person.key)) for person in group)
        new += notifications.record(event, medium.channel, items, using=using)
    return new


RECIPIENT = "recipient"  # the extension naming whom a webhook POST is for


def addressed(event: CloudEvent, key: str) -> CloudEvent:
    """The event with the ``recipient`` extension set to a person's key
    (``user:<pk>`` or ``email:<address>``): each person is one POST of the same
    event, and the endpoint has to know whom each is for."""
    return CloudEvent({**event.get_attributes(), RECIPIENT: key}, event.get_data())


def _by_medium(
    reached: Iterator[tuple[int, int, Any]],
) -> Iterator[tuple[int, Iterator[Any]]]:
    import itertools

    for medium, rows in itertools.groupby(reached, key=lambda row: row[1]):
        yield medium, (person for _, _, person in rows)


def _email(subject: str, text: str, html: str, address: str) -> EmailMultiAlternatives:
    mail = EmailMultiAlternatives(subject, text, settings.DEFAULT_FROM_EMAIL, [address])
    if html:
        mail.attach_alternative(html, "text/html")
    return mail


def unsubscribe(reason: dict[str, Any], recipient: str) -> None:
    """One-click unsubscribe (the ledger's reason kind "subscription"): the
    subscriber entity the reason names opts out of the subscription's source
    on its medium (an ``Unsubscription``; idempotent)."""
    from django.apps import apps
    from django.contrib.contenttypes.models import ContentType

    from ..models import Subscription

    subscription = Subscription.objects.filter(pk=int(reason.get("id") or 0)).first()
    if subscription is None:
        return
    try:
        model = apps.get_model(str(reason.get("entity")))
    except (LookupError, ValueError):
        return
    Unsubscription.objects.bulk_create(
        [
            Unsubscription(
                medium_id=subscription.medium_id,
                source_id=subscription.source_id,
                entity_type=ContentType.objects.get_for_model(model),
                entity_id=str(reason.get("entity_id")),
            )
        ],
        ignore_conflicts=True,
    )
