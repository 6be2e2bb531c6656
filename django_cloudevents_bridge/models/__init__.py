"""The app's models: the outbox and relay heartbeats (emit), the received
events with their runs, and watches."""

from .inbox import ReceivedEvent, TargetRun
from .outbox import OutboxEvent
from .relay import RelayHeartbeat
from .watches import Watch

__all__ = ["OutboxEvent", "ReceivedEvent", "RelayHeartbeat", "TargetRun", "Watch"]
