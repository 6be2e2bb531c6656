"""A real CloudEvents sink on a loopback port, with faults on demand.

Every request is parsed with the official SDK *and* checked against the wire rules
of the HTTP binding that the SDK does not enforce, so a test sees exactly what a
strict receiver would.
"""

from __future__ import annotations

import json
import re
import socket
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote_to_bytes

from cloudevents.core.bindings import http as ce_http

# Header values may only hold printable ASCII other than space, '"' and '%' (which
# must appear only as the start of a %XY escape).
_ENCODED = re.compile(r"^(?:[\x21\x23-\x24\x26-\x7e]|%[0-9A-F]{2})*$")
REQUIRED = ("ce-specversion", "ce-id", "ce-source", "ce-type")
HOLD_MAX = 30.0  # a held request is answered after this, whatever the test does


class _Server(ThreadingHTTPServer):
    # socketserver listens with a backlog of 5: a burst of new connections (a
    # relay opens up to 8 at once) overflows it while the accept thread waits its
    # turn on a loaded machine, and each dropped connect waits for a SYN resend
    # (1 s, then 3 s). A real server's backlog is far larger.
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (a read timeout while the sink held or delayed
        # its answer) is what those tests want, not an error to print.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    event: Any = None  # the SDK's CloudEvent
    problems: list[str] = field(default_factory=list)
    first_of_request: bool = True

    @property
    def attributes(self) -> dict[str, Any]:
        return self.event.get_attributes() if self.event is not None else {}


@dataclass
class Fault:
    """What the sink does with one request instead of answering 202."""

    status: int | None = None  # answer with this status
    delay: float = 0.0  # sleep before answering
    hold: threading.Event | None = None  # wait until it is set (at most HOLD_MAX)
    drop: bool = False  # close the connection without answering
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    echo: tuple[str, ...] = ()  # headers of the request shown in the body


class Sink:
    """Start with ``Sink().start()``; ``url``, ``received``, ``faults``, ``stop()``."""

    def __init__(self, port: int = 0, *, batches: bool = False) -> None:
        self.batches = batches  # accept batched mode (a sink that solicited it)
        self.requests = 0  # accepted requests (a batch is one request)
        self.received: list[Received] = []
        self.faults: deque[Fault] = deque()
        self.attempts = 0
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self.server = _Server(("127.0.0.1", port), self._handler_class())
        self.server.daemon_threads = True
        # A short poll interval keeps stop() (and so each test) fast.
        self.thread = threading.Thread(
            target=self.server.serve_forever, args=(0.05,), daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/"

    def start(self) -> Sink:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Block until ``count`` events have been accepted; return them."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"sink got {len(self.received)} of {count} events"
                    )
                self._arrived.wait(left)
            return list(self.received)

    def _next_fault(self) -> Fault | None:
        with self._lock:
            self.attempts += 1
            return self.faults.popleft() if self.faults else None

    def _record(self, received: Received) -> None:
        with self._arrived:
            self.requests += received.first_of_request
            self.received.append(received)
            self._arrived.notify_all()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real sink

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                fault = sink._next_fault()
                if fault and fault.delay:
                    time.sleep(fault.delay)
                if fault and fault.hold:
                    fault.hold.wait(HOLD_MAX)
                if fault and fault.drop:
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                if fault and fault.status:
                    body = fault.body
                    for name in fault.echo:  # as some error pages show them
                        body += f"{name}: {self.headers.get(name)}\n".encode()
                    self._answer(fault.status, fault.headers, body)
                    return
                headers = dict(self.headers)
                if sink.batches and is_batch(headers):
                    for received in parse_batch(self.command, self.path, headers, body):
                        sink._record(received)
                else:
                    sink._record(parse(self.command, self.path, headers, body))
                self._answer(202, {}, b"")

            def _answer(
                self, status: int, headers: dict[str, str], body: bytes
            ) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def parse(method: str, path: str, headers: dict[str, str], body: bytes) -> Received:
    """Parse a request like a strict receiver; list what breaks the binding."""
    lower = {name.lower(): value for name, value in headers.items()}
    received = Received(method, path, lower, body)
    content_type = lower.get("content-type", "")
    problems = received.problems
    if content_type.lower().startswith("application/cloudevents-batch"):
        problems.append("batched mode was not solicited")
    elif content_type.lower().startswith("application/cloudevents"):
        document = json.loads(body)
        if document.get("specversion") != "1.0":
            problems.append(f"specversion {document.get('specversion')!r}")
        for name in ("id", "source", "type"):
            if not document.get(name):
                problems.append(f"missing {name}")
    else:
        for name in REQUIRED:
            if not lower.get(name):
                problems.append(f"missing {name} header")
        if lower.get("ce-specversion") != "1.0":
            problems.append(f"specversion {lower.get('ce-specversion')!r}")
        if "ce-datacontenttype" in lower:
            problems.append("ce-datacontenttype header in binary mode")
        for name, value in lower.items():
            if not name.startswith("ce-"):
                continue
            if not _ENCODED.match(value):
                problems.append(f"{name} is not percent-encoded per the binding")
            try:
                unquote_to_bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                problems.append(f"{name} is not UTF-8")
            if not re.fullmatch(r"ce-[a-z0-9]+", name):
                problems.append(f"bad attribute name {name}")
    if not problems:
        message = ce_http.HTTPMessage(headers=lower, body=body)
        received.event = ce_http.from_http_event(message)
    return received


def is_batch(headers: dict[str, str]) -> bool:
    content_type = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
    return content_type.lower().startswith("application/cloudevents-batch")


def parse_batch(
    method: str, path: str, headers: dict[str, str], body: bytes
) -> list[Received]:
    """Split a JSON batch into one Received per event (each checked like a request)."""
    batch = json.loads(body)
    if not isinstance(batch, list):
        raise ValueError("a batch must be a JSON array")
    structured = {"content-type": "application/cloudevents+json"}
    items = [
        parse(method, path, structured, json.dumps(item).encode()) for item in batch
    ]
    for index, item in enumerate(items):
        item.first_of_request = index == 0
        item.headers = {k.lower(): v for k, v in headers.items()}
    return items
