"""django-cloudevents-bridge: Django model changes as CloudEvents, and back."""

from .emit.sources import send_cloudevent
from .receive.named import BaseEvent, EventNotFound, ValidationError, handler, log
from .receive.registry import register_group_handler
from .receive.spark import register_model_event_source

__version__ = "0.1.0"

__all__ = [
    "BaseEvent",
    "EventNotFound",
    "ValidationError",
    "__version__",
    "handler",
    "log",
    "register_group_handler",
    "register_model_event_source",
    "send_cloudevent",
]
