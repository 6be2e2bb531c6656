"""The app's models: the outbox (emit) and the received events with their runs."""

from .inbox import ReceivedEvent, TargetRun
from .outbox import OutboxEvent

__all__ = ["OutboxEvent", "ReceivedEvent", "TargetRun"]
