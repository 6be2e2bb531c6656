"""POST events to the sink (``K_SINK``) per the CloudEvents HTTP binding."""

from __future__ import annotations

import contextlib
import http.client
import io
import logging
import os
import re
import select
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import certifi
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
BATCH_MAX_BYTES = 1024 * 1024  # the receiver's own default MAX_BYTES
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
    and ``batch_max_bytes`` (the largest batch body; ``None``: no limit).
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
        if batch_max_bytes is not None and (
            not isinstance(batch_max_bytes, int)
            or isinstance(batch_max_bytes, bool)
            or batch_max_bytes < 1
        ):
            raise ImproperlyConfigured(
                "http handler: batch_max_bytes must be a positive int or None"
            )
        self.batch_max_bytes = batch_max_bytes
        # Sinks reached directly: a pool of http.client connections each. A sink
        # behind a proxy (HTTP_PROXY and friends) goes through a requests
        # session instead, which knows proxies.
        self._pools: dict[str, _Pool] | None = None
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
            return self._post_batches(sink, [ce.to_json(e) for e in events], ids)
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
        """POST events in JSON as batches of at most ``batch_max_bytes``, in order.

        A failed request raises with ``delivered`` counting the events of the
        requests before it and ``attempted`` those of the failed one. ``ids`` are
        the events' ids (else read when needed).
        """
        sent = 0
        for size in _batch_sizes(documents, self.batch_max_bytes):
            part = documents[sent : sent + size]
            body = b"[" + b",".join(part) + b"]"
            first = ids[sent] if ids else ce.from_json(part[0]).get_id()
            try:
                self._post(sink, {"Content-Type": ce.BATCH_JSON}, body, first)
            except DeliveryError as err:
                err.delivered, err.attempted = sent, size
                raise
            sent += size
        return sent

    def send(self, sink: str, event: CloudEvent) -> None:
        """POST one event; raise DeliveryError on a transport error or non-2xx."""
        headers, body = ce.to_http(event, structured=self.structured)
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
            if _UNSAFE_HEADER.search(token):
                raise DeliveryError(
                    "the OIDC token file holds an invalid token", event_id=event_id
                )
            headers["Authorization"] = f"Bearer {token}"
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
            raise DeliveryError(_describe(err), event_id=event_id) from err
        except _BadHeader as err:
            raise DeliveryError(str(err), event_id=event_id, permanent=True) from err
        except (OSError, http.client.HTTPException) as err:
            raise DeliveryError(_describe_os(err), event_id=event_id) from err
        if not 200 <= status < 300:
            raise DeliveryError(
                f"HTTP {status} {reason or ''}".rstrip() + _excerpt(text),
                event_id=event_id,
                # Retry-After means "later" only on these (RFC 9110 10.2.3).
                retry_after=retry_after(retry) if status in (429, 503) else None,
                permanent=status not in RETRIED,
            )

    def _pool(self, request: requests.PreparedRequest) -> _Pool | None:
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
                    request.url, _Pool(request.url, self.timeout, context)
                )
        return pool

    def _post_via_proxy(
        self, request: requests.PreparedRequest, headers: dict[str, str], body: bytes
    ) -> tuple[int, str, str | None, str]:
        """POST through requests, which knows proxies (and their credentials)."""
        with self._lock:
            if self.session is None:
                session = requests.Session()
                session.trust_env = False  # the environment is read once per sink
                context = self._ssl_context()
                session.mount("http://", HTTPAdapter(pool_maxsize=POOL_SIZE))
                session.mount(
                    "https://",
                    HTTPAdapter(pool_maxsize=POOL_SIZE)
                    if context is None
                    else _ContextAdapter(context),
                )
                self.session = session
            session = self.session
        assert request.url is not None
        prepared = request.copy()
        prepared.prepare_headers(headers)
        prepared.prepare_body(body, None)
        # Straight to the adapter: Session.request would follow redirects, which
        # http-webhook.md forbids (the adapter never does).
        response = session.get_adapter(request.url).send(
            prepared, timeout=self.timeout, **self._environment(request.url)
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


class _ContextAdapter(HTTPAdapter):
    """An adapter whose connections verify against our own SSL context."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        super().__init__(pool_maxsize=POOL_SIZE)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self.context
        super().init_poolmanager(*args, **kwargs)


class _Pool:
    """Keep-alive connections to one sink, for any thread: plain sockets, with
    each request written in one ``sendall`` and its response read by
    our own reader.

    The relay's hot path: a POST through requests' adapter costs three to four
    times the CPU of this, and one relay process is CPU-bound. Connections are
    reused newest first; one the sink closed while idle is noticed before use
    (as urllib3 does) and replaced. A request is never retried here: a failure
    is the caller's failed delivery.
    """

    def __init__(
        self,
        url: str,
        timeout: float | tuple[float, float],
        context: ssl.SSLContext | None,
    ) -> None:
        parts = urlsplit(url)
        self.https = parts.scheme == "https"
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if self.https else 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.connect_timeout, self.read_timeout = (
            timeout if isinstance(timeout, tuple) else (timeout, timeout)
        )
        self.context = context
        host = f"[{self.host}]" if ":" in self.host else self.host
        if parts.port and parts.port != (443 if self.https else 80):
            host = f"{host}:{parts.port}"  # as http.client and urllib3 write it
        self.target = target
        self.defaults = {
            "host": f"Host: {host}\r\n",
            "user-agent": f"User-Agent: django-cloudevents-bridge/{_version()}\r\n",
        }
        self.closed = False
        self._idle: list[socket.socket] = []
        self._lock = threading.Lock()

    def post(
        self, headers: dict[str, str], body: bytes
    ) -> tuple[int, str, str | None, str]:
        """(status, reason, Retry-After, body text) of one POST."""
        lines = [f"POST {self.target} HTTP/1.1\r\n"]
        defaults = dict(self.defaults)
        for name, value in headers.items():
            if _UNSAFE_HEADER.search(name) or _UNSAFE_HEADER.search(value):
                raise _BadHeader(f"invalid header {name[:40]!r}: CR, LF or NUL")
            defaults.pop(name.lower(), None)  # a configured Host or User-Agent
            lines.append(f"{name}: {value}\r\n")
        lines[1:1] = defaults.values()
        lines.append(f"Content-Length: {len(body)}\r\n\r\n")
        try:
            request = "".join(lines).encode("latin-1") + body
        except UnicodeEncodeError:
            raise _BadHeader("a header is not Latin-1") from None
        sock = self._get()
        reader = io.BufferedReader(_Deadline(sock, self.read_timeout))
        try:
            sock.sendall(request)
            reply = _read_response(reader)
        except BaseException:
            _discard(sock, reader)
            raise
        if reply.will_close:
            _discard(sock, reader)
        else:
            reader.close()  # the socket stays open: it is not the file's
            sock.settimeout(self.read_timeout)  # the deadline had shortened it
            with self._lock:
                keep = not self.closed
                if keep:
                    self._idle.append(sock)
            if not keep:  # the handler closed while this request was out
                _discard(sock, None)
        return (
            reply.status,
            reply.reason[:100],
            reply.headers.get("retry-after"),
            _text(reply.body, _charset(reply.headers.get("content-type", ""))),
        )

    def _get(self) -> socket.socket:
        while True:
            with self._lock:
                sock = self._idle.pop() if self._idle else None
            if sock is None:
                return self._connect()
            if not _dropped(sock):
                return sock
            sock.close()

    def _connect(self) -> socket.socket:
        try:
            sock = socket.create_connection(
                (self.host, self.port), timeout=self.connect_timeout
            )
        except TimeoutError as err:
            raise _ConnectTimeout(str(err) or "timed out") from err
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.https:
                assert self.context is not None
                sock = self.context.wrap_socket(sock, server_hostname=self.host)
            sock.settimeout(self.read_timeout)
        except BaseException:
            sock.close()
            raise
        return sock

    def close(self) -> None:
        with self._lock:
            self.closed = True
            idle, self._idle = self._idle, []
        for sock in idle:
            sock.close()


# A header name or value must not end the line or the header block early.
_UNSAFE_HEADER = re.compile(r"[\r\n\x00]")


class _BadHeader(ValueError):
    """A header that cannot be sent as it is: the same request always fails."""


class _ConnectTimeout(TimeoutError):
    """The sink did not accept the connection in time."""


class _Deadline(io.RawIOBase):
    """A socket read as a file, all of it within ``seconds`` of the first read.

    The socket's own timeout bounds each read: a sink that trickles its answer a
    byte at a time would hold the send, and the relay, for ever.
    """

    def __init__(self, sock: socket.socket, seconds: float | None) -> None:
        super().__init__()
        self.sock = sock
        self.seconds = seconds
        self.deadline: float | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.seconds is not None:
            now = time.monotonic()
            if self.deadline is None:
                self.deadline = now + self.seconds
            left = self.deadline - now
            if left <= 0:
                raise TimeoutError("the answer took longer than the read timeout")
            self.sock.settimeout(left)
        return self.sock.recv_into(buffer)


def _dropped(sock: socket.socket) -> bool:
    """True if an idle connection's socket is readable (closed, or junk)."""
    try:
        if hasattr(select, "poll"):  # select() fails for descriptors >= 1024
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _discard(sock: socket.socket, reader: Any) -> None:
    """Really close a connection: its reader (a file on it) keeps the socket open."""
    if reader is not None:
        reader.close()
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


class _Reply(NamedTuple):
    status: int
    reason: str
    headers: dict[str, str]  # names in lower case; repeated ones joined by ", "
    body: bytes
    will_close: bool


_MAX_LINE = 65536  # as http.client
_MAX_HEADERS = 100
_MAX_INTERIM = 10  # interim (1xx) answers read before the final one
_MAX_BODY = 1024 * 1024  # read of a reply's body; the rest closes the connection


def _read_response(reader: Any) -> _Reply:
    """Read one HTTP/1.1 response to a POST (RFC 9112), skipping interim 1xx ones.

    Our own reader, not ``http.client``'s, which builds an ``email`` message for
    the headers: that was a tenth of a binary-mode relay's CPU. Errors are
    ``http.client``'s exceptions, as they were.
    """
    for _ in range(_MAX_INTERIM + 1):
        version, status, reason = _status_line(reader)
        headers = _header_block(reader)
        # Interim answers (100 Continue, 102 Processing, 103 Early Hints) come
        # before the real one, which a client must still read (RFC 9110 15.2).
        if not 100 <= status < 200 or status == 101:
            break
    if status < 200:  # 101: we asked for no other protocol; or only interim ones
        raise http.client.HTTPException(f"unexpected {status} answer")
    tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    will_close = "close" in tokens or (
        version == "HTTP/1.0" and "keep-alive" not in tokens
    )
    codings = [
        coding
        for coding in (
            t.strip().lower() for t in headers.get("transfer-encoding", "").split(",")
        )
        if coding not in ("", "identity")  # "identity": no coding at all
    ]
    if status in (204, 304):
        body = b""
    elif codings:
        if codings[-1] == "chunked":
            body, complete = _chunked(reader)
        else:  # the body ends when the connection does (RFC 9112 6.3)
            body, complete = reader.read(_MAX_BODY), False
        # With a Content-Length too, or from HTTP/1.0, the framing is suspect
        # (RFC 9112 6.1, 6.3): the connection is not used again.
        will_close = (
            will_close
            or not complete
            or "content-length" in headers
            or version == "HTTP/1.0"
        )
    elif "content-length" in headers:
        lengths = {value.strip() for value in headers["content-length"].split(",")}
        if len(lengths) != 1 or not _DIGITS.match(next(iter(lengths))):
            raise http.client.HTTPException("invalid Content-Length")
        length = int(lengths.pop())
        body = reader.read(min(length, _MAX_BODY))
        if len(body) < min(length, _MAX_BODY):
            raise http.client.IncompleteRead(body, length - len(body))
        will_close = will_close or length > _MAX_BODY
    else:
        body, will_close = reader.read(_MAX_BODY), True
    return _Reply(status, reason, headers, body, will_close)


def _status_line(reader: Any) -> tuple[str, int, str]:
    line = reader.readline(_MAX_LINE + 1)
    if len(line) > _MAX_LINE:
        raise http.client.LineTooLong("status line")
    if not line:
        raise http.client.RemoteDisconnected(
            "Remote end closed connection without response"
        )
    parts = line.decode("iso-8859-1").rstrip("\r\n").split(None, 2)
    if (
        len(parts) < 2
        or parts[0] not in ("HTTP/1.1", "HTTP/1.0")
        or not _STATUS.match(parts[1])
    ):
        raise http.client.BadStatusLine(repr(line[:200]))
    return parts[0], int(parts[1]), parts[2] if len(parts) == 3 else ""


def _header_block(reader: Any) -> dict[str, str]:
    headers: dict[str, str] = {}
    name = ""
    for _ in range(_MAX_HEADERS + 1):
        line = reader.readline(_MAX_LINE + 1)
        if len(line) > _MAX_LINE:
            raise http.client.LineTooLong("header line")
        if line in (b"\r\n", b"\n", b""):
            return headers
        text = line.decode("iso-8859-1").rstrip("\r\n")
        if text[:1] in (" ", "\t") and name:  # obsolete line folding
            headers[name] += " " + text.strip()
            continue
        name, colon, value = text.partition(":")
        name = name.strip().lower()
        if not colon or not name:
            name = ""
            continue  # not a header line: ignored, as http.client does
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    raise http.client.HTTPException(f"got more than {_MAX_HEADERS} headers")


def _chunked(reader: Any) -> tuple[bytes, bool]:
    """A chunked body (at most _MAX_BODY of it) and whether all of it was read."""
    parts: list[bytes] = []
    size = 0
    while True:
        line = reader.readline(_MAX_LINE + 1)
        if len(line) > _MAX_LINE:
            raise http.client.LineTooLong("chunk size")
        try:
            chunk = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise http.client.IncompleteRead(b"".join(parts)) from None
        if chunk < 0:
            raise http.client.IncompleteRead(b"".join(parts))
        if chunk == 0:
            _header_block(reader)  # trailers, and the final empty line
            return b"".join(parts), True
        if size + chunk > _MAX_BODY:
            return b"".join(parts), False
        data = reader.read(chunk)
        if len(data) < chunk or reader.readline(_MAX_LINE + 1) not in (b"\r\n", b"\n"):
            raise http.client.IncompleteRead(b"".join(parts) + data)
        parts.append(data)
        size += chunk


def _batch_sizes(documents: Sequence[bytes], limit: int | None) -> list[int]:
    """How many documents go in each batch so that a body (``[a,b]``) stays
    within ``limit`` bytes; a document larger than that goes alone."""
    sizes: list[int] = []
    count, length = 0, 1  # "["
    for document in documents:
        extra = len(document) + 1  # "," or "]"
        if count and limit is not None and length + extra > limit:
            sizes.append(count)
            count, length = 0, 1
        count, length = count + 1, length + extra
    if count:
        sizes.append(count)
    return sizes


def _charset(content_type: str) -> str | None:
    found = _CHARSET.search(content_type)
    return found.group(1) if found else None


_DIGITS = re.compile(r"[0-9]+\Z")  # str.isdigit() takes "²" too, int() does not
_STATUS = re.compile(r"[1-9][0-9][0-9]\Z")
_CHARSET = re.compile(r";\s*charset\s*=\s*\"?([^\";\s]+)", re.IGNORECASE)


def _checked_headers(headers: dict[str, str]) -> dict[str, str]:
    """The ``headers`` option, refused at start-up when it could not be sent."""
    for name, value in headers.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise ImproperlyConfigured("http handler: headers must map str to str")
        if not name or _UNSAFE_HEADER.search(name) or _UNSAFE_HEADER.search(value):
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


def _text(body: bytes, charset: str | None) -> str:
    """A response body as text, for the error message (never an error itself)."""
    try:
        return body.decode(charset or "utf-8", "replace")
    except LookupError:  # a charset Python does not know
        return body.decode("utf-8", "replace")


def _version() -> str:
    from ... import __version__

    return __version__


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if _DIGITS.match(value):
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


def _describe_os(err: OSError | http.client.HTTPException) -> str:
    detail = str(err)[:200]  # a BadStatusLine carries the whole line it got
    if isinstance(err, _ConnectTimeout):
        return f"connect timeout: {detail}"
    if isinstance(err, TimeoutError):
        return f"read timeout: {detail or 'timed out'}"
    if isinstance(err, ssl.SSLError | ssl.CertificateError):
        return f"TLS error: {detail}"
    return f"connection error: {type(err).__name__}: {detail}"


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
