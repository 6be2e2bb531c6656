"""django-cloudevents-bridge: Django model changes as CloudEvents, and back."""

from .emit.sources import send_cloudevent
from .receive.registry import register_group_handler

__version__ = "0.1.0"

__all__ = ["register_group_handler", "send_cloudevent", "__version__"]
