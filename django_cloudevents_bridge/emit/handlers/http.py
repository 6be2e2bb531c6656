"""POST events to the sink (``K_SINK``) per the CloudEvents HTTP binding."""

from __future__ import annotations

import http.client
import logging
import os
import ssl
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import certifi
import requests
from django.core.exceptions import ImproperlyConfigured

from ... import conf
from ... import events as ce
from ...bindings import _proxy
from ...bindings._http11 import DIGITS, UNSAFE_HEADER, BadHeader, Pool, describe
from ...bindings.http import to_http
from ...bindings.jsonformat import BATCH_JSON, from_json, to_json
from ...events import CloudEvent
from ...exceptions import DeliveryError
from ...redact import redact, sent_credentials
from .base import BaseHandler

logger = logging.getLogger("django_cloudevents_bridge")

MODES = ("binary", "structured")
CA_CERTS_VAR = "K_CA_CERTS"
BATCH_MAX_BYTES = 1024 * 1024  # the receiver's own default MAX_BYTES
BATCH_MAX_EVENTS = 100  # and its default MAX_BATCH
# What Knative's senders retry (data-plane spec): 5xx and these. 3xx and other
# 4xx are permanent: the same request would be refused again.
RETRIED = frozenset((404, 408, 409, 429, *range(500, 600)))
_warned_no_sink = False


class Handler(BaseHandler):
    """Binary mode by default; keep-alive connections; a timeout on every request.

    Options (``CLOUDEVENTS_HANDLER_OPTIONS``): ``sink`` (else the env var named by
    ``CLOUDEVENTS_ENV["SINK_VAR"]``), ``mode`` (``"binary"`` or ``"structured"``),
    ``timeout`` (seconds, or a ``(connect, read)`` pair), ``oidc_token_path``,
    ``ca_certs_dir`` (Knative trust bundles), ``headers`` (sent with each request)
    ``batch`` (send each call's events in ``application/cloudevents-batch+json``
    requests: only for a sink that asked for batches; Knative's broker does not)
    ``batch_max_bytes`` (the largest batch body; ``None``: no limit) and
    ``batch_max_events`` (the most events in one batch; ``None``: no limit).
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
        batch_max_bytes: int | None = BATCH_MAX_BYTES,
        batch_max_events: int | None = BATCH_MAX_EVENTS,
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
        self.headers = _checked_headers(headers or {})
        self.batch = bool(batch)
        for name, limit in (
            ("batch_max_bytes", batch_max_bytes),
            ("batch_max_events", batch_max_events),
        ):
            if limit is not None and (
                not isinstance(limit, int) or isinstance(limit, bool) or limit < 1
            ):
                raise ImproperlyConfigured(
                    f"http handler: {name} must be a positive int or None"
                )
        self.batch_max_bytes = batch_max_bytes
        self.batch_max_events = batch_max_events
        # Sinks reached directly: a pool of our own connections each
        # (bindings._http11). A sink behind a proxy (HTTP_PROXY and friends) goes
        # through a requests session instead (bindings._proxy), which knows proxies.
        self._pools: dict[str, Pool] | None = None
        self.session: requests.Session | None = None
        self._context: ssl.SSLContext | None = None
        self._environ: dict[str, dict[str, Any]] = {}
        self._templates: dict[str, requests.PreparedRequest] = {}
        self._lock = threading.Lock()

    def open(self) -> bool:
        with self._lock:
            if self._pools is not None:
                return False
            self._context = None  # built again on first https use: fresh bundles
            self._environ.clear()
            self._templates.clear()
            self._pools = {}
            return True

    def close(self) -> None:
        with self._lock:
            pools, self._pools = self._pools, None
            session, self.session = self.session, None
        for pool in (pools or {}).values():
            pool.close()
        if session is not None:
            session.close()

    def current_sink(self) -> str | None:
        """The URL to POST to: the ``sink`` option, else the environment's."""
        return self.sink or conf.sink()

    def send_events(self, events: Sequence[CloudEvent]) -> int:
        sink = self.current_sink()
        if not sink:
            _warn_no_sink()
            raise DeliveryError(f"no sink: {conf.env()['SINK_VAR']} is not set")
        self.open()
        if self.batch:
            ids = [event.get_id() for event in events]
            return self._post_batches(sink, [to_json(e) for e in events], ids)
        for sent, event in enumerate(events):
            try:
                self.send(sink, event)
            except DeliveryError as err:
                err.delivered = sent
                raise
        return len(events)

    def send_stored(self, documents: Sequence[str]) -> int:
        """In batched mode the stored JSON is the batch's elements, as it is."""
        if not self.batch or not documents or ce.overrides():
            return super().send_stored(documents)
        sink = self.current_sink()
        if not sink:
            return super().send_stored(documents)  # the error, as send_events has it
        encoded = [document.encode("utf-8") for document in documents]
        return self._post_batches(sink, encoded, None)

    def _post_batches(
        self, sink: str, documents: list[bytes], ids: list[str] | None
    ) -> int:
        """POST events in JSON as batches within the two limits, in order.

        A failed request raises with ``delivered`` counting the events of the
        requests before it and ``attempted`` those of the failed one. ``ids`` are
        the events' ids (else read when needed).
        """
        sent = 0
        sizes = _batch_sizes(documents, self.batch_max_bytes, self.batch_max_events)
        for size in sizes:
            part = documents[sent : sent + size]
            body = b"[" + b",".join(part) + b"]"
            first = ids[sent] if ids else from_json(part[0]).get_id()
            try:
                self._post(sink, {"Content-Type": BATCH_JSON}, body, first)
            except DeliveryError as err:
                err.delivered, err.attempted = sent, size
                raise
            sent += size
        return sent

    def send(self, sink: str, event: CloudEvent) -> None:
        """POST one event; raise DeliveryError on a transport error or non-2xx."""
        headers, body = to_http(event, structured=self.structured)
        self._post(sink, headers, body, event.get_id())

    def _post(
        self, sink: str, headers: dict[str, str], body: bytes, event_id: str
    ) -> None:
        if self.headers:  # configured values win, whatever their case
            names = {name.lower() for name in self.headers}
            headers = {k: v for k, v in headers.items() if k.lower() not in names}
            headers.update(self.headers)
        token = self._oidc_token()
        if token:
            if UNSAFE_HEADER.search(token):
                raise DeliveryError(
                    "the OIDC token file holds an invalid token", event_id=event_id
                )
            headers["Authorization"] = f"Bearer {token}"
        # What this request carries that a sink's error page may echo: never in
        # a reason, which is logged and stored (last_error).
        secrets = [token, *sent_credentials(self.headers)]
        try:
            request = self._template(sink)
            pool = self._pool(request)
            if pool is not None:
                status, reason, retry, text = pool.post(headers, body)
            else:
                status, reason, retry, text = self._post_via_proxy(
                    request, headers, body
                )
        except requests.RequestException as err:
            raise DeliveryError(
                redact(_proxy.describe(err), secrets), event_id=event_id
            ) from err
        except BadHeader as err:
            raise DeliveryError(
                redact(str(err), secrets), event_id=event_id, permanent=True
            ) from err
        except (OSError, http.client.HTTPException) as err:
            raise DeliveryError(
                redact(describe(err), secrets), event_id=event_id
            ) from err
        if not 200 <= status < 300:
            raise DeliveryError(
                f"HTTP {status} {redact(reason or '', secrets)}".rstrip()
                + _excerpt(text, secrets),
                event_id=event_id,
                # Retry-After means "later" only on these (RFC 9110 10.2.3).
                retry_after=retry_after(retry) if status in (429, 503) else None,
                permanent=status not in RETRIED,
            )

    def _pool(self, request: requests.PreparedRequest) -> Pool | None:
        """The connection pool for a sink reached directly; None behind a proxy."""
        assert request.url is not None
        pools = self._pools
        if pools is None:  # not opened yet, or closed meanwhile by another thread
            self.open()
            pools = self._pools
            assert pools is not None
        pool = pools.get(request.url)
        if pool is None:
            environment = self._environment(request.url)
            if requests.utils.select_proxy(request.url, environment["proxies"]):
                return None
            context = None
            if request.url.startswith("https:"):
                context = self._ssl_context_once(environment.get("verify"))
            with self._lock:
                pool = pools.setdefault(
                    request.url, Pool(request.url, self.timeout, context)
                )
        return pool

    def _post_via_proxy(
        self, request: requests.PreparedRequest, headers: dict[str, str], body: bytes
    ) -> tuple[int, str, str | None, str]:
        """POST through requests, which knows proxies (and their credentials)."""
        with self._lock:
            if self.session is None:
                self.session = _proxy.session(self._ssl_context())
            session = self.session
        assert request.url is not None
        return _proxy.post(
            session,
            request,
            headers,
            body,
            self.timeout,
            self._environment(request.url),
        )

    def _template(self, sink: str) -> requests.PreparedRequest:
        """``sink`` parsed and checked once (requests' URL rules: IDNA, schemes)."""
        template = self._templates.get(sink)
        if template is None:
            template = requests.PreparedRequest()
            template.prepare_method("POST")
            template.prepare_url(sink, None)
            self._templates[sink] = template
        return template

    def _ssl_context_once(self, verify: str | None) -> ssl.SSLContext:
        with self._lock:
            if self._context is None:
                self._context = self._ssl_context(verify) or ssl.create_default_context(
                    cafile=verify or certifi.where()
                )
            return self._context

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

    def _ssl_context(self, verify: str | None = None) -> ssl.SSLContext | None:
        """Default roots plus K_CA_CERTS and Knative trust bundles, if there are any.

        The default roots are requests' (certifi), or the bundle named by
        REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE (``verify``) as requests reads them.
        """
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
        context = ssl.create_default_context(cafile=verify or certifi.where())
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


def _batch_sizes(
    documents: Sequence[bytes], limit: int | None, max_events: int | None = None
) -> list[int]:
    """How many documents go in each batch so that a body (``[a,b]``) stays
    within ``limit`` bytes and ``max_events`` documents; a document larger than
    ``limit`` goes alone."""
    sizes: list[int] = []
    count, length = 0, 1  # "["
    for document in documents:
        extra = len(document) + 1  # "," or "]"
        if count and (
            (limit is not None and length + extra > limit)
            or (max_events is not None and count >= max_events)
        ):
            sizes.append(count)
            count, length = 0, 1
        count, length = count + 1, length + extra
    if count:
        sizes.append(count)
    return sizes


def _checked_headers(headers: dict[str, str]) -> dict[str, str]:
    """The ``headers`` option, refused at start-up when it could not be sent."""
    for name, value in headers.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise ImproperlyConfigured("http handler: headers must map str to str")
        if not name or UNSAFE_HEADER.search(name) or UNSAFE_HEADER.search(value):
            raise ImproperlyConfigured(
                f"http handler: header {name[:40]!r} holds CR, LF or NUL"
            )
        if name.lower() in _FRAMING:
            raise ImproperlyConfigured(
                f"http handler: header {name!r} is the handler's own to set"
            )
    return dict(headers)


# Headers that frame the message: a configured value would corrupt it.
_FRAMING = frozenset(("content-length", "transfer-encoding", "connection"))


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if DIGITS.match(value):
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000" parses naive; HTTP dates are always UTC
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _excerpt(text: str, secrets: Sequence[str | None], limit: int = 200) -> str:
    """The start of a sink's error page, on one line, without credentials."""
    # Redacted before it is cut: a cut could leave a credential's start behind.
    text = redact(" ".join(text[: limit * 20].split()), secrets)
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
