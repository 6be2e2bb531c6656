"""The app's models: the outbox and relay heartbeats (emit), the received
events with their runs, the notifications' delivery ledger, watches and
subscriptions."""

from .inbox import ReceivedEvent, TargetRun
from .notifications import Delivery
from .outbox import OutboxEvent
from .relay import RelayHeartbeat
from .subscriptions import (
    ContextRenderer,
    Event,
    EventActor,
    EventSeen,
    Medium,
    RenderingStyle,
    Source,
    SourceGroup,
    Subscription,
    Unsubscription,
)
from .watches import Watch

__all__ = [
    "ContextRenderer",
    "Delivery",
    "Event",
    "EventActor",
    "EventSeen",
    "Medium",
    "OutboxEvent",
    "ReceivedEvent",
    "RelayHeartbeat",
    "RenderingStyle",
    "Source",
    "SourceGroup",
    "Subscription",
    "TargetRun",
    "Unsubscription",
    "Watch",
]
