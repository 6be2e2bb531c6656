"""The private HTTP/1.1 client the HTTP handler POSTs with.

Direct sinks: ``Pool``, keep-alive sockets of our own, each request written in
one ``sendall`` and its answer read by ``read_response``. It measured 46-51 µs
of CPU per POST against 195-227 µs for urllib3 and 526-598 µs for requests, and
it reads past a 103 Early Hints and bounds the whole answer by the read timeout
(neither of which urllib3 does). The handler sends through requests instead
for a sink behind a proxy.

Failures are ``http.client``'s exceptions and ``OSError``, and ``BadHeader``
for a request that could never be sent; ``describe()`` puts one in a line.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import re
import select
import socket
import ssl
import threading
import time
from typing import Any, NamedTuple
from urllib.parse import urlsplit


class Pool:
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
            if UNSAFE_HEADER.search(name) or UNSAFE_HEADER.search(value):
                raise BadHeader(f"invalid header {name[:40]!r}: CR, LF or NUL")
            defaults.pop(name.lower(), None)  # a configured Host or User-Agent
            lines.append(f"{name}: {value}\r\n")
        lines[1:1] = defaults.values()
        lines.append(f"Content-Length: {len(body)}\r\n\r\n")
        try:
            request = "".join(lines).encode("latin-1") + body
        except UnicodeEncodeError:
            raise BadHeader("a header is not Latin-1") from None
        sock = self._get()
        reader = io.BufferedReader(Deadline(sock, self.read_timeout))
        try:
            sock.sendall(request)
            reply = read_response(reader)
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
            raise ConnectTimeout(str(err) or "timed out") from err
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
UNSAFE_HEADER = re.compile(r"[\r\n\x00]")


class BadHeader(ValueError):
    """A header that cannot be sent as it is: the same request always fails."""


class ConnectTimeout(TimeoutError):
    """The sink did not accept the connection in time."""


class Deadline(io.RawIOBase):
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


class Reply(NamedTuple):
    status: int
    reason: str
    headers: dict[str, str]  # names in lower case; repeated ones joined by ", "
    body: bytes
    will_close: bool


MAX_LINE = 65536  # as http.client
MAX_HEADERS = 100
MAX_INTERIM = 10  # interim (1xx) answers read before the final one
MAX_BODY = 1024 * 1024  # read of a reply's body; the rest closes the connection


def read_response(reader: Any) -> Reply:
    """Read one HTTP/1.1 response to a POST (RFC 9112), skipping interim 1xx ones.

    Our own reader, not ``http.client``'s, which builds an ``email`` message for
    the headers: that was a tenth of a binary-mode relay's CPU. Errors are
    ``http.client``'s exceptions, as they were.
    """
    for _ in range(MAX_INTERIM + 1):
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
            body, complete = reader.read(MAX_BODY), False
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
        if len(lengths) != 1 or not DIGITS.match(next(iter(lengths))):
            raise http.client.HTTPException("invalid Content-Length")
        length = int(lengths.pop())
        body = reader.read(min(length, MAX_BODY))
        if len(body) < min(length, MAX_BODY):
            raise http.client.IncompleteRead(body, length - len(body))
        will_close = will_close or length > MAX_BODY
    else:
        body, will_close = reader.read(MAX_BODY), True
    return Reply(status, reason, headers, body, will_close)


def _status_line(reader: Any) -> tuple[str, int, str]:
    line = reader.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
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
    for _ in range(MAX_HEADERS + 1):
        line = reader.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
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
    raise http.client.HTTPException(f"got more than {MAX_HEADERS} headers")


def _chunked(reader: Any) -> tuple[bytes, bool]:
    """A chunked body (at most MAX_BODY of it) and whether all of it was read."""
    parts: list[bytes] = []
    size = 0
    while True:
        line = reader.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
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
        if size + chunk > MAX_BODY:
            return b"".join(parts), False
        data = reader.read(chunk)
        if len(data) < chunk or reader.readline(MAX_LINE + 1) not in (b"\r\n", b"\n"):
            raise http.client.IncompleteRead(b"".join(parts) + data)
        parts.append(data)
        size += chunk


def _charset(content_type: str) -> str | None:
    found = _CHARSET.search(content_type)
    return found.group(1) if found else None


DIGITS = re.compile(r"[0-9]+\Z")  # str.isdigit() takes "²" too, int() does not
_STATUS = re.compile(r"[1-9][0-9][0-9]\Z")
_CHARSET = re.compile(r";\s*charset\s*=\s*\"?([^\";\s]+)", re.IGNORECASE)


def _text(body: bytes, charset: str | None) -> str:
    """A response body as text, for the error message (never an error itself)."""
    try:
        return body.decode(charset or "utf-8", "replace")
    except LookupError:  # a charset Python does not know
        return body.decode("utf-8", "replace")


def _version() -> str:
    from .. import __version__

    return __version__


def describe(err: OSError | http.client.HTTPException) -> str:
    """A transport error in one line, its kind first (``read timeout: ...``)."""
    detail = str(err)[:200]  # a BadStatusLine carries the whole line it got
    if isinstance(err, ConnectTimeout):
        return f"connect timeout: {detail}"
    if isinstance(err, TimeoutError):
        return f"read timeout: {detail or 'timed out'}"
    if isinstance(err, ssl.SSLError | ssl.CertificateError):
        return f"TLS error: {detail}"
    return f"connection error: {type(err).__name__}: {detail}"
