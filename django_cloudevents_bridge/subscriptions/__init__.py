"""Subscriptions: django-entity-event's sources, mediums and subscribers on CloudEvents.

``from django_cloudevents_bridge.subscriptions import Source, Medium, ...`` gives
the models (loaded on first use, so importing this package needs no app
registry). How each entity-event name maps is in the README, "Subscriptions".
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

__all__ = [*_MODELS]


def __getattr__(name: str) -> Any:
    if name in _MODELS:
        from .. import models

        return getattr(models, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
