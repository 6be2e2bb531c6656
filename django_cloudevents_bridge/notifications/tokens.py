"""Secret tokens for links in messages: only their digest is stored.

A token is 32 random bytes from ``secrets`` (URL-safe text); the database keeps
its SHA-256, so a leaked table gives no working link; a token presented later
is hashed and compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets


def new() -> tuple[str, str]:
    """A new token and its digest to store: ``(token, digest)``."""
    token = secrets.token_urlsafe(32)
    return token, digest(token)


def digest(token: str) -> str:
    """The SHA-256 hex digest of a token (what is stored)."""
    return hashlib.sha256(token.encode()).hexdigest()


def matches(token: str, stored_digest: str) -> bool:
    """True if ``token`` is the one whose digest was stored (constant time).

    An empty stored digest (revoked, or never issued) matches nothing.
    """
    if not stored_digest or not isinstance(token, str):
        return False
    return hmac.compare_digest(digest(token), stored_digest)
