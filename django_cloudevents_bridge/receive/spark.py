"""Model event sources (django-spark's API on CloudEvents)."""

from __future__ import annotations

from typing import Any


def register_model_event_source(*, sender: Any, source: Any) -> None:
    raise NotImplementedError
