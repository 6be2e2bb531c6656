"""Named events (eventlib's API on CloudEvents): BaseEvent, handler, log."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError

from ..exceptions import BridgeError


class ValidationError(BridgeError, DjangoValidationError):
    """Event data failed its event's ``clean()``."""


class EventNotFound(BridgeError, LookupError):
    """No event class is registered under that name."""


class BaseEvent:
    """Subclass in an app's ``events.py``; the type is ``app_label.ClassName``."""


def handler(name: str) -> Any:
    raise NotImplementedError


def log(name: str, data: Any) -> Any:
    raise NotImplementedError


def autodiscover() -> None:
    """Import every installed app's ``events`` module."""


class LogView:
    """``POST <prefix>/log?__event__=app.EventName&k=v`` (stub)."""

    @classmethod
    def as_view(cls) -> Any:
        from django.http import HttpResponse

        return lambda request: HttpResponse(status=501)
