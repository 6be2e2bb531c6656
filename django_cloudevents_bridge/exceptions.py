"""Exceptions. Each also inherits the matching Django or built-in class."""

from __future__ import annotations

import math

from django.core.exceptions import (
    ImproperlyConfigured,
    PermissionDenied,
    SuspiciousOperation,
)
from django.core.exceptions import ValidationError as DjangoValidationError


class BridgeError(Exception):
    """Base class of every error raised by django-cloudevents-bridge."""


class ImproperlyInstalled(BridgeError, ImproperlyConfigured):
    """An optional dependency (an extra) is missing."""

    def __init__(self, message: str, *, extra: str) -> None:
        self.extra = extra
        super().__init__(
            f"{message}: install it with "
            f"pip install 'django-cloudevents-bridge[{extra}]'"
        )


class DeliveryError(BridgeError, OSError):
    """A handler could not deliver an event; ``reason`` says why in one line."""

    def __init__(
        self,
        reason: str,
        *,
        event_id: str | None = None,
        retry_after: float | None = None,
        delivered: int = 0,
        permanent: bool = False,
        attempted: int | None = None,
    ) -> None:
        self.reason = reason
        self.permanent = permanent  # the sink refuses it for good: don't retry
        self.event_id = event_id
        self.retry_after = retry_after
        self.delivered = delivered  # events sent before the failed attempt
        # Events in the failed attempt: one, or a batch's request; None: not said
        # (a batch handler's whole call failed).
        self.attempted = attempted
        super().__init__(reason if event_id is None else f"{event_id}: {reason}")


# Malformed input (the receiver's parsing, the bindings' from_* functions).


class BadEvent(BridgeError, SuspiciousOperation):
    """The request is not a valid CloudEvent: 400, a retry will not fix it."""

    status = 400


class UnsupportedFormat(BadEvent):
    """An event format this receiver does not read (e.g. cloudevents+avro)."""

    status = 415


class TooLarge(BadEvent):
    status = 413


class LengthRequired(BadEvent):
    status = 411


# Receiving: authentication (receive/auth.py) and named events (targets/named.py)


class NotAuthenticated(BridgeError, PermissionDenied):
    """Missing or invalid credentials: 401 (403 where only PermissionDenied maps)."""

    status = 401

    def __init__(self, reason: str, *, challenge: str = "Bearer") -> None:
        self.challenge = challenge  # the WWW-Authenticate header of the 401
        super().__init__(reason)


class AuthUnavailable(BridgeError, OSError):
    """The issuer's discovery document or keys could not be fetched: 503, retry."""

    status = 503

    def __init__(self, reason: str, *, retry_after: float = 5) -> None:
        self.retry_after = max(1, math.ceil(retry_after))  # whole seconds, for HTTP
        super().__init__(reason)


class ValidationError(BridgeError, DjangoValidationError):
    """Event data failed its event's ``clean()``."""


class EventNotFound(BridgeError, LookupError):
    """No event class is registered under that name."""
