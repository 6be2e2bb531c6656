"""The app's models: the outbox and relay heartbeats (emit), the received
events with their runs, and the notifications' delivery ledger."""

from .inbox import ReceivedEvent, TargetRun
from .notifications import Delivery
from .outbox import OutboxEvent
from .relay import RelayHeartbeat

__all__ = ["Delivery", "OutboxEvent", "ReceivedEvent", "RelayHeartbeat", "TargetRun"]
