"""Subscribing and unsubscribing any model row, idempotent under concurrency.

The rows are unique (two partial unique constraints for subscriptions, which
hold for a blank ``sub_entity_type`` on PostgreSQL and SQLite alike), and the
keys are written as the resolution compares them (``resolvers.entity_id``: a
UUID key is its hex digits on SQLite): use these rather than creating rows by
hand.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib.contenttypes.models import ContentType

from . import resolvers

if TYPE_CHECKING:
    from ..models import Medium, Source, Subscription, Unsubscription


def subscribe(
    medium: Medium,
    source: Source,
    entity: Any,
    *,
    sub_entity_type: Any = None,
    only_following: bool = True,
) -> Subscription:
    """``entity`` (or, with ``sub_entity_type``, a model whose rows are members
    of it, each of them) subscribes to ``source`` on ``medium``. A second call
    (also a concurrent one) returns the same row, with ``only_following`` as
    given now."""
    from ..models import Subscription

    content_type, key = resolvers.entity_of(entity)
    kind = None
    if sub_entity_type is not None:
        kind = (
            sub_entity_type
            if isinstance(sub_entity_type, ContentType)
            else ContentType.objects.get_for_model(sub_entity_type)
        )
    subscription, _ = Subscription.objects.update_or_create(
        medium=medium,
        source=source,
        entity_type=content_type,
        entity_id=key,
        sub_entity_type=kind,
        defaults={"only_following": only_following},
    )
    return subscription


def unsubscribe(medium: Medium, source: Source, entity: Any) -> Unsubscription:
    """``entity`` opts out of ``source`` on ``medium`` (whatever subscription,
    its own or a group's, reaches it); idempotent."""
    from ..models import Unsubscription

    content_type, key = resolvers.entity_of(entity)
    unsubscription, _ = Unsubscription.objects.get_or_create(
        medium=medium, source=source, entity_type=content_type, entity_id=key
    )
    return unsubscription
