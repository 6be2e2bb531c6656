"""Receiver authentication: OIDC bearer tokens (Knative) and/or a shared secret."""

from __future__ import annotations

from django.http import HttpRequest


def authenticate(request: HttpRequest) -> None:
    """Return if the request may deliver events; raise (401/403) if not."""
