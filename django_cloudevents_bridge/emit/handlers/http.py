"""POST events to the sink (``K_SINK``) per the CloudEvents HTTP binding."""

from __future__ import annotations

import logging
import os
import ssl
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import requests
from django.core.exceptions import ImproperlyConfigured
from requests.adapters import HTTPAdapter

from ... import conf
from ... import events as ce
from ...events import CloudEvent
from ...exceptions import DeliveryError
from .base import BaseHandler

logger = logging.getLogger("django_cloudevents_bridge")

MODES = ("binary", "structured")
CA_CERTS_VAR = "K_CA_CERTS"
POOL_SIZE = 64
# What Knative's senders retry (data-plane spec): 5xx and these. 3xx and other
# 4xx are permanent: the same request would be refused again.
RETRIED = frozenset((404, 408, 409, 429, *range(500, 600)))
_warned_no_sink = False


class Handler(BaseHandler):
    """Binary mode by default; one keep-alive session; a timeout on every request.

    Options (``CLOUDEVENTS_HANDLER_OPTIONS``): ``sink`` (else the env var named by
    ``CLOUDEVENTS_ENV["SINK_VAR"]``), ``mode`` (``"binary"`` or ``"structured"``),
    ``timeout`` (seconds, or a ``(connect, read)`` pair), ``oidc_token_path``,
    ``ca_certs_dir`` (Knative trust bundles), ``headers`` (sent with each request)
    and ``batch`` (send each call's events as one ``application/cloudevents-batch+json``
    request: only for a sink that asked for batches; Knative's broker does not).
    """

    def __init__(
        self,
        *,
        sink: str | None = None,
        mode: str = "binary",
        timeout: float | tuple[float, float] = (3.05, 10.0),
        oidc_token_path: str | None = "/oidc/token",
        ca_certs_dir: str | None = "/knative-custom-certs",
        headers: dict[str, str] | None = None,
        batch: bool = False,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        if mode not in MODES:
            raise ImproperlyConfigured(f"http handler: mode must be one of {MODES}")
        self.sink = sink
        self.structured = mode == "structured"
        self.timeout: float | tuple[float, float] = (
            (timeout[0], timeout[1]) if isinstance(timeout, list | tuple) else timeout
        )
        self.oidc_token_path = oidc_token_path
        self.ca_certs_dir = ca_certs_dir
        self.headers = dict(headers or {})
        self.batch = bool(batch)
        self.session: requests.Session | None = None
        self._environ: dict[str, dict[str, Any]] = {}
        self._templates: dict[str, requests.PreparedRequest] = {}
        self._lock = threading.Lock()

    def open(self) -> bool:
        with self._lock:
            if self.session is not None:
                return False
            session = requests.Session()
            # Proxies and CA bundle come from the environment once per sink (see
            # _environment), not on every request as requests would do.
            session.trust_env = False
            # Room for a relay's concurrent sends to keep their connections alive.
            session.mount("http://", HTTPAdapter(pool_maxsize=POOL_SIZE))
            context = self._ssl_context()
            session.mount(
                "https://",
                HTTPAdapter(pool_maxsize=POOL_SIZE)
                if context is None
                else _ContextAdapter(context),
            )
            self._environ.clear()
            self.session = session
            return True

    def close(self) -> None:
        with self._lock:
            session, self.session = self.session, None
        if session is not None:
            session.close()

    def send_events(self, events: Sequence[CloudEvent]) -> int:
        sink = self.sink or conf.sink()
        if not sink:
            _warn_no_sink()
            raise DeliveryError(f"no sink: {conf.env()['SINK_VAR']} is not set")
        self.open()
        if self.batch:
            if events:
                headers, body = ce.to_http_batch(events)
                self._post(sink, headers, body, events[0].get_id())
            return len(events)
        for sent, event in enumerate(events):
            try:
                self.send(sink, event)
            except DeliveryError as err:
                err.delivered = sent
                raise
        return len(events)

    def send(self, sink: str, event: CloudEvent) -> None:
        """POST one event; raise DeliveryError on a transport error or non-2xx."""
        headers, body = ce.to_http(event, structured=self.structured)
        self._post(sink, headers, body, event.get_id())

    def _post(
        self, sink: str, headers: dict[str, str], body: bytes, event_id: str
    ) -> None:
        headers.update(self.headers)
        token = self._oidc_token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if self.session is None:
            self.open()
        assert self.session is not None
        try:
            # Straight to the transport adapter: Session.request would merge
            # settings, cookies and hooks we never use on every event, and it
            # would follow redirects, which http-webhook.md forbids (the adapter
            # never does).
            request = self._template(sink).copy()
            request.prepare_headers(headers)
            request.prepare_body(body, None)
            response = self.session.get_adapter(sink).send(
                request, timeout=self.timeout, **self._environment(sink)
            )
            response.content  # noqa: B018 - read it all: the connection goes back to the pool
        except requests.RequestException as err:
            raise DeliveryError(_describe(err), event_id=event_id) from err
        if not 200 <= response.status_code < 300:
            raise DeliveryError(
                f"HTTP {response.status_code} {response.reason or ''}".rstrip()
                + _excerpt(response.text),
                event_id=event_id,
                retry_after=retry_after(response.headers.get("Retry-After")),
                permanent=response.status_code not in RETRIED,
            )

    def _template(self, sink: str) -> requests.PreparedRequest:
        """A prepared POST to ``sink`` (URL parsed once), copied for each event."""
        template = self._templates.get(sink)
        if template is None:
            template = requests.PreparedRequest()
            template.prepare_method("POST")
            template.prepare_url(sink, None)
            self._templates[sink] = template
        return template

    def _environment(self, sink: str) -> dict[str, Any]:
        """Proxies and CA bundle for ``sink`` from the environment, read once."""
        found = self._environ.get(sink)
        if found is None:
            verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get(
                "CURL_CA_BUNDLE"
            )
            found = {"proxies": requests.utils.get_environ_proxies(sink)}
            if verify:
                found["verify"] = verify
            self._environ[sink] = found
        return found

    def _oidc_token(self) -> str | None:
        # Read on every request: Knative refreshes the file in place.
        if not self.oidc_token_path:
            return None
        try:
            return Path(self.oidc_token_path).read_text().strip() or None
        except FileNotFoundError:
            return None
        except OSError as err:
            logger.warning("Cannot read the OIDC token file: %s", err.strerror)
            return None

    def _ssl_context(self) -> ssl.SSLContext | None:
        """System roots plus K_CA_CERTS and Knative trust bundles, if there are any."""
        bundles: list[tuple[str, str]] = []  # (where from, PEM text)
        if os.environ.get(CA_CERTS_VAR, "").strip():
            bundles.append((CA_CERTS_VAR, os.environ[CA_CERTS_VAR]))
        for path in self._trust_bundle_files():
            try:
                bundles.append((str(path), path.read_text()))
            except (OSError, ValueError) as err:
                logger.warning("Ignoring the CA certificates in %s: %s", path, err)
        if not bundles:
            return None
        context = ssl.create_default_context()
        for origin, pem in bundles:
            # As Knative's loadCertPool: a bad bundle is skipped, not fatal.
            try:
                context.load_verify_locations(cadata=pem)
            except (ssl.SSLError, ValueError) as err:
                logger.warning("Ignoring the CA certificates in %s: %s", origin, err)
        return context

    def _trust_bundle_files(self) -> list[Path]:
        # Knative mounts every key of every trust-bundle ConfigMap as a file, whatever
        # its name (ca.crt as well as *.pem); skip Kubernetes' hidden ..data entries.
        if not self.ca_certs_dir:
            return []
        try:
            entries = sorted(Path(self.ca_certs_dir).iterdir())
        except OSError:  # usually: not mounted
            return []
        return [p for p in entries if not p.name.startswith(".") and p.is_file()]


class _ContextAdapter(HTTPAdapter):
    """An adapter whose connections verify against our own SSL context."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        super().__init__(pool_maxsize=POOL_SIZE)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self.context
        super().init_poolmanager(*args, **kwargs)


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000" parses naive; HTTP dates are always UTC
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _describe(err: requests.RequestException) -> str:
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


def _excerpt(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    if not text:
        return ""
    return ": " + (text if len(text) <= limit else text[:limit] + "...")


def _warn_no_sink() -> None:
    global _warned_no_sink
    if not _warned_no_sink:
        _warned_no_sink = True
        logger.warning(
            "%s is not set: CloudEvents are not delivered", conf.env()["SINK_VAR"]
        )
