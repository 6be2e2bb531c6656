"""The webhook channel: the CloudEvent POSTed to a URL, signed as Standard Webhooks.

The message is the received ``CloudEvent``; the ledger stores its structured
JSON form (``application/cloudevents+json``), and every attempt POSTs exactly
those bytes, with the Standard Webhooks headers:

- ``webhook-id``: the delivery's ledger key (the same on every retry, so the
  receiver can drop a duplicate);
- ``webhook-timestamp``: seconds since the epoch, at the attempt;
- ``webhook-signature``: ``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``
  under the secret, given as ``whsec_<base64 key>``.

A 2xx answer is sent; 408, 429, 5xx, a timeout (``timeout`` seconds, default
10) or a connection error is retried with the ledger's backoff; any other 4xx
(and a redirect, which is not followed) is parked at once. Configured under
``CLOUDEVENTS_NOTIFICATIONS["CHANNELS"]`` with ``{"BACKEND": ..., "OPTIONS":
{"url": ..., "secret": ..., "timeout": ...}}``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests

from ...bindings.jsonformat import STRUCTURED_JSON, to_json
from ...events import CloudEvent
from . import BaseChannel, Outcome, PermanentFailure

if TYPE_CHECKING:
    from ...models import Delivery

PREFIX = "whsec_"
RETRIED = frozenset({408, 429})  # client errors a later attempt can mend


def decode_secret(secret: str) -> bytes:
    """The key of a ``whsec_<base64>`` secret; ValueError if it is not one."""
    if not isinstance(secret, str) or not secret.startswith(PREFIX):
        raise ValueError(f"a webhook secret is {PREFIX}<base64 key>")
    try:
        key = base64.b64decode(secret[len(PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"a webhook secret is {PREFIX}<base64 key>") from None
    if len(key) < 24:
        raise ValueError("a webhook secret's key must be at least 24 bytes")
    return key


def new_secret() -> str:
    """A fresh ``whsec_`` secret (32 random bytes from ``secrets``)."""
    import secrets

    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def signature(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def _shown(url: str) -> str:
    """The URL without credentials or query (which may hold a token), for errors."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class Channel(BaseChannel):
    """POST each delivery's CloudEvent to ``url``, signed with ``secret``."""

    def __init__(self, url: str, secret: str, timeout: float = 10.0) -> None:
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("the webhook url must be an absolute http(s) URL")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise ValueError("the webhook timeout is a number of seconds")
        if timeout <= 0:
            raise ValueError("the webhook timeout is a number of seconds")
        self.url = url
        self.key = decode_secret(secret)
        self.timeout = float(timeout)

    def dump(self, message: Any) -> dict[str, Any]:
        if not isinstance(message, CloudEvent):
            raise TypeError(f"the webhook channel sends a CloudEvent, not {message!r}")
        return {"content_type": STRUCTURED_JSON, "body": to_json(message).decode()}

    def load(self, data: dict[str, Any]) -> tuple[str, bytes]:
        """(content type, body) of the request."""
        return str(data["content_type"]), str(data["body"]).encode()

    def send(
        self, deliveries: Sequence[Delivery]
    ) -> Iterator[tuple[Delivery, Outcome]]:
        with requests.Session() as session:
            for delivery in deliveries:
                try:
                    content_type, body = self.load(delivery.message)
                except Exception as err:  # an edited row: no retry mends it
                    yield delivery, PermanentFailure(f"{type(err).__name__}: {err}")
                    continue
                yield delivery, self.post(session, delivery.key, content_type, body)

    def headers(
        self, webhook_id: str, content_type: str, body: bytes
    ) -> dict[str, str]:
        """The request's headers, signed now."""
        timestamp = int(time.time())
        return {
            "Content-Type": content_type,
            "webhook-id": webhook_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(self.key, webhook_id, timestamp, body),
        }

    def post(
        self,
        session: requests.Session,
        webhook_id: str,
        content_type: str,
        body: bytes,
    ) -> Outcome:
        """One attempt: None if sent, else the error (PermanentFailure: parked)."""
        try:
            response = session.post(
                self.url,
                data=body,
                headers=self.headers(webhook_id, content_type, body),
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.Timeout:
            return TimeoutError(f"{_shown(self.url)} did not answer in {self.timeout}s")
        except requests.RequestException as err:
            return ConnectionError(f"{_shown(self.url)}: {type(err).__name__}")
        status = response.status_code
        response.close()
        if 200 <= status < 300:
            return None
        error = f"HTTP {status} from {_shown(self.url)}"
        if 300 <= status < 500 and status not in RETRIED:
            return PermanentFailure(error)
        return ConnectionError(error)
