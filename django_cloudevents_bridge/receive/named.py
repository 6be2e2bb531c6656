"""Moved to ``django_cloudevents_bridge.targets.named``."""

from ..exceptions import EventNotFound, ValidationError
from ..targets.named import (
    EVENT_PARAM,
    BaseEvent,
    LogView,
    as_json,
    autodiscover,
    find_event,
    handler,
    log,
    named_targets,
    unregister_handler,
)

__all__ = [
    "EVENT_PARAM",
    "BaseEvent",
    "EventNotFound",
    "LogView",
    "ValidationError",
    "as_json",
    "autodiscover",
    "find_event",
    "handler",
    "log",
    "named_targets",
    "unregister_handler",
]
