"""Who watches a received event: one query, streamed, grouped per person.

The event's candidate match keys (2**k per class and subject, k <= 4 filters,
across every class registered for its type) are looked up by their digests in
one statement, ordered by the person's normalised address, and read in chunks
(a server-side cursor on PostgreSQL): the cost follows the matches, never the
number of watches of the type, and memory stays flat however many match. Rows
of one address arrive together, users first, so the grouping needs only the
current address: a user wins over an anonymous watch with the same address.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist
from django.db.models import F, Q, QuerySet, Value
from django.db.models.functions import Coalesce, Lower, NullIf, Trim

from ..events import CloudEvent
from ..models import Watch
from . import keys
from .base import WatchEvent, _user_email, registered

CHUNK = 500  # rows per fetch, and people per mails() call


@dataclass
class Person:
    """One recipient of an event: a user, or an address nobody's account has."""

    key: str  # "user:<pk>" or "email:<normalised address>"
    email: str
    user: Any | None
    watches: list[Watch] = field(default_factory=list)
    classes: list[type[WatchEvent]] = field(default_factory=list)  # per watch

    @property
    def watch_class(self) -> type[WatchEvent]:
        """The class whose ``mails()`` builds this person's message."""
        return self.classes[0]

    @property
    def reasons(self) -> tuple[dict[str, Any], ...]:
        """Why this person is notified (JSON-safe, for unsubscribe links)."""
        return tuple(
            {"kind": "watch", "id": watch.pk, "class": cls.label()}
            for watch, cls in zip(self.watches, self.classes, strict=True)
        )

    def add(self, watch: Watch, cls: type[WatchEvent], rank: dict[Any, int]) -> None:
        """Add a matched watch; the first class in definition order comes first."""
        at = 0 if self.classes and rank[cls] < rank[self.classes[0]] else None
        if at is None:
            self.watches.append(watch)
            self.classes.append(cls)
        else:
            self.watches.insert(at, watch)
            self.classes.insert(at, cls)


def candidates(cloudevent: CloudEvent) -> dict[str, list[type[WatchEvent]]]:
    """{key digest: the classes, in definition order, whose watches it matches}."""
    found: dict[str, list[type[WatchEvent]]] = {}
    for cls in registered(cloudevent.get_type()):
        for key in cls.candidate_keys(cloudevent):
            classes = found.setdefault(keys.digest(key), [])
            if cls not in classes:
                classes.append(cls)
    return found


def matching(digests: Iterable[str]) -> QuerySet[Watch]:
    """Active watches with these key digests, of active users, ordered by person."""
    user_model = get_user_model()
    email = user_model.get_email_field_name()
    watches = Watch.objects.filter(key_digest__in=list(digests), active=True)
    try:
        user_model._meta.get_field("is_active")
    except FieldDoesNotExist:  # a custom user model without the flag
        pass
    else:
        watches = watches.filter(Q(user__isnull=True) | Q(user__is_active=True))
    address = Lower(
        Trim(
            Coalesce(
                NullIf(F(f"user__{email}"), Value("")),
                NullIf(F("email"), Value("")),
            )
        )
    )
    return (
        watches.select_related("user")
        .defer("key", "secret_digest", "user__password")  # not needed, not loaded
        .annotate(address=address)
        .filter(address__isnull=False)  # nowhere to send to
        .order_by("address", F("user_id").asc(nulls_last=True), "id")
    )


def people(cloudevent: CloudEvent, *, chunk: int = CHUNK) -> Iterator[Person]:
    """The people watching this event, each once, with all their matched watches."""
    found = candidates(cloudevent)
    if not found:
        return
    rank = {cls: i for i, cls in enumerate(registered(cloudevent.get_type()))}
    rows = matching(found).iterator(chunk_size=chunk)
    for address, group in itertools.groupby(rows, key=_address):
        users: dict[int, Person] = {}
        anonymous: list[Watch] = []
        for watch in group:
            if watch.user_id is None:
                anonymous.append(watch)
                continue
            person = users.get(watch.user_id)
            if person is None:
                person = users[watch.user_id] = Person(
                    keys.owner_of(watch.user), _user_email(watch.user), watch.user
                )
            person.add(watch, found[watch.key_digest][0], rank)
        if anonymous and not users:
            users[0] = Person(f"email:{address}", anonymous[0].email, None)
        # A user wins: the first one with this address also gets its watches.
        first = next(iter(users.values()), None)
        for watch in anonymous:
            assert first is not None
            first.add(watch, found[watch.key_digest][0], rank)
        yield from users.values()


def mails(
    cloudevent: CloudEvent, *, chunk: int = CHUNK
) -> Iterator[tuple[Person, Any]]:
    """(person, message) for everyone watching this event, built in chunks.

    The message is what the first class (in definition order) among those
    whose watches matched the person builds with ``mails()`` from all of that
    person's matched watches; one message per person, in the pairs' order.
    """
    received: dict[type[WatchEvent], WatchEvent] = {}
    batch = iter(people(cloudevent, chunk=chunk))
    while True:
        persons = list(itertools.islice(batch, chunk))
        if not persons:
            return
        by_class: dict[type[WatchEvent], list[Person]] = {}
        for person in persons:
            by_class.setdefault(person.watch_class, []).append(person)
        for cls, group in by_class.items():
            event = received.get(cls)
            if event is None:
                event = received[cls] = cls.received(cloudevent)
            pairs = [
                (p.user if p.user is not None else p.email, p.watches) for p in group
            ]
            built = list(event.mails(pairs))
            if len(built) != len(group):
                raise ValueError(
                    f"{cls.label()}.mails() built {len(built)} messages for "
                    f"{len(group)} recipients: it must build one per pair"
                )
            yield from zip(group, built, strict=True)


def _address(watch: Any) -> str:
    return str(watch.address)  # annotated by matching()
