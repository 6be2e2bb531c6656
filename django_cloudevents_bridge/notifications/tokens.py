"""Secret tokens for links in mails: only a digest is stored, compared in
constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets


def new() -> tuple[str, str]:
    """(token from secrets.token_urlsafe(32), its digest to store)"""
    token = secrets.token_urlsafe(32)
    return token, digest(token)


def digest(token: str) -> str:
    """sha256 hex of the token"""
    return hashlib.sha256(token.encode()).hexdigest()


def matches(token: str, stored_digest: str) -> bool:
    """constant-time comparison"""
    return bool(stored_digest) and hmac.compare_digest(digest(token), stored_digest)
