"""The app's models: the outbox and relay heartbeats (emit), and the received
events with their runs."""

from .inbox import ReceivedEvent, TargetRun
from .outbox import OutboxEvent
from .relay import RelayHeartbeat

__all__ = ["OutboxEvent", "ReceivedEvent", "RelayHeartbeat", "TargetRun"]
