"""POST through requests, for a sink behind a proxy (the HTTP handler's).

Sinks reached directly go through our own client (``_http11``); requests knows
proxies, ``HTTP_PROXY`` and friends, and their credentials.
"""

from __future__ import annotations

import http.client
import ssl
from typing import Any

import requests
from requests.adapters import HTTPAdapter

POOL_SIZE = 64


def session(context: ssl.SSLContext | None) -> requests.Session:
    """A session whose https connections verify against ``context``, if given."""
    session = requests.Session()
    session.trust_env = False  # the environment is read once per sink
    session.mount("http://", HTTPAdapter(pool_maxsize=POOL_SIZE))
    session.mount(
        "https://",
        HTTPAdapter(pool_maxsize=POOL_SIZE)
        if context is None
        else ContextAdapter(context),
    )
    return session


def post(
    session: requests.Session,
    request: requests.PreparedRequest,
    headers: dict[str, str],
    body: bytes,
    timeout: float | tuple[float, float],
    environment: dict[str, Any],
) -> tuple[int, str, str | None, str]:
    """(status, reason, Retry-After, body text) of one POST of ``request``."""
    assert request.url is not None
    prepared = request.copy()
    prepared.prepare_headers(headers)
    prepared.prepare_body(body, None)
    # Straight to the adapter: Session.request would follow redirects, which
    # http-webhook.md forbids (the adapter never does).
    response = session.get_adapter(request.url).send(
        prepared, timeout=timeout, **environment
    )
    if response.status_code < 200:
        # http.client takes an interim answer (103 Early Hints, ...) for the
        # answer and leaves the real one on the connection, where the next
        # request would read it: that connection is closed, not reused.
        response.close()
        raise http.client.HTTPException(
            f"unexpected {response.status_code} answer through the proxy"
        )
    return (
        response.status_code,
        (response.reason or "")[:100],
        response.headers.get("Retry-After"),
        response.text,
    )


class ContextAdapter(HTTPAdapter):
    """An adapter whose connections verify against our own SSL context."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        super().__init__(pool_maxsize=POOL_SIZE)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self.context
        super().init_poolmanager(*args, **kwargs)


def describe(err: requests.RequestException) -> str:
    """A requests error in one line, its kind first (``read timeout: ...``)."""
    kind = {
        requests.ConnectTimeout: "connect timeout",
        requests.ReadTimeout: "read timeout",
        requests.exceptions.SSLError: "TLS error",
        requests.ConnectionError: "connection error",
    }
    for cls, label in kind.items():
        if isinstance(err, cls):
            return f"{label}: {err}"
    return f"{type(err).__name__}: {err}"
