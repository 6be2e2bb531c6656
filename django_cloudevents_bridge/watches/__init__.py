"""Watches: django-tidings' API on CloudEvents.

``WatchEvent`` (tidings' ``Event``), ``InstanceWatchEvent`` (``InstanceEvent``),
``EventUnion`` and ``claim_watches``. Loaded on first use (PEP 562), like the
package's top level, so importing this package never imports models early.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "WatchEvent": ".base",
    "InstanceWatchEvent": ".base",
    "EventUnion": ".base",
    "claim_watches": ".activation",
}

__all__ = ["EventUnion", "InstanceWatchEvent", "WatchEvent", "claim_watches"]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .activation import claim_watches
    from .base import EventUnion, InstanceWatchEvent, WatchEvent


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
