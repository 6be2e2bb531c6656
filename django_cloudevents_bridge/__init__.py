"""django-cloudevents-bridge: Django model changes as CloudEvents, and back.

The public names are loaded on first use (PEP 562), so importing the package
never imports models before Django's app registry is ready.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "emit": "",  # the emit package, callable as emit(events): see emit/__init__.py
    "BaseHandler": ".emit.handlers",
    "CapturingManager": ".emit.bulk",
    "CapturingQuerySet": ".emit.bulk",
    "DeliveryError": ".exceptions",
    "send_cloudevent": ".emit.sources",
    "register_group_handler": ".targets.groups",
    "register_model_event_source": ".targets.groups",
    "process_events": ".targets.groups",
    "only_new_events": ".targets.groups",
    "BaseEvent": ".targets.named",
    "EventNotFound": ".exceptions",
    "ValidationError": ".exceptions",
    "handler": ".targets.named",
    "log": ".targets.named",
    "WatchEvent": ".watches",
    "InstanceWatchEvent": ".watches",
    "EventUnion": ".watches",
    "claim_watches": ".watches",
}

__all__ = [
    "BaseEvent",
    "BaseHandler",
    "CapturingManager",
    "CapturingQuerySet",
    "DeliveryError",
    "EventNotFound",
    "EventUnion",
    "InstanceWatchEvent",
    "ValidationError",
    "WatchEvent",
    "__version__",
    "claim_watches",
    "emit",
    "handler",
    "log",
    "only_new_events",
    "process_events",
    "register_group_handler",
    "register_model_event_source",
    "send_cloudevent",
]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .emit import emit
    from .emit.bulk import CapturingManager, CapturingQuerySet
    from .emit.handlers import BaseHandler
    from .emit.sources import send_cloudevent
    from .exceptions import DeliveryError, EventNotFound, ValidationError
    from .targets.groups import (
        only_new_events,
        process_events,
        register_group_handler,
        register_model_event_source,
    )
    from .targets.named import BaseEvent, handler, log
    from .watches import EventUnion, InstanceWatchEvent, WatchEvent, claim_watches


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if not module:  # a subpackage that is itself the public name
        return importlib.import_module(f".{name}", __name__)
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # next time, a plain attribute
    return value
