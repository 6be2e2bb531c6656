"""The app's models: the outbox and relay heartbeats (emit), the received
events with their runs, the notifications' delivery ledger, and watches."""

from .inbox import ReceivedEvent, TargetRun
from .notifications import Delivery
from .outbox import OutboxEvent
from .relay import RelayHeartbeat
from .watches import Watch

__all__ = [
    "Delivery",
    "OutboxEvent",
    "ReceivedEvent",
    "RelayHeartbeat",
    "TargetRun",
    "Watch",
]
