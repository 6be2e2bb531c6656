"""Subscriptions: django-entity-event's sources, mediums and subscribers on CloudEvents.

``from django_cloudevents_bridge.subscriptions import Source, Medium, ...`` gives
the models (loaded on first use, so importing this package needs no app
registry), and, loaded the same way: ``subscribe``, ``unsubscribe``,
``mark_seen``, ``entity_events``, ``events``, ``events_targets``,
``serialized_context`` and the resolver
registrations (``register_membership``, ``register_follows``,
``register_people``, ``register_identities``). How each entity-event name maps
is in the README, "Subscriptions".
"""

from __future__ import annotations

from typing import Any

_MODELS = (
    "ContextRenderer",
    "Event",
    "EventActor",
    "EventSeen",
    "Medium",
    "RenderingStyle",
    "Source",
    "SourceGroup",
    "Subscription",
    "Unsubscription",
)

_FUNCTIONS = {
    "entity_events": "feed",
    "events": "queries",
    "events_targets": "queries",
    "mark_seen": "feed",
    "register_follows": "resolvers",
    "register_identities": "resolvers",
    "register_membership": "resolvers",
    "register_people": "resolvers",
    "serialized_context": "rendering",
    "subscribe": "entities",
    "unsubscribe": "entities",
}

__all__ = [*_MODELS, *_FUNCTIONS]


def __getattr__(name: str) -> Any:
    if name in _MODELS:
        from .. import models

        return getattr(models, name)
    if name in _FUNCTIONS:
        from importlib import import_module

        return getattr(import_module(f"{__name__}.{_FUNCTIONS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
