"""django-cloudevents-bridge: Django model changes as CloudEvents, and back."""

from .emit.sources import send_cloudevent

__version__ = "0.1.0"

__all__ = ["send_cloudevent", "__version__"]
