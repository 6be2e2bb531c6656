"""Our HTTP/1.1 client (``bindings._http11``), against raw servers on loopback.

What the handler makes of the answers (DeliveryError, Retry-After, the reason)
is tested with the handler, in ``tests/emit/test_http.py``.
"""

from __future__ import annotations

import http.client
import socket
import threading
from collections.abc import Iterator

import pytest

from django_cloudevents_bridge.bindings import _http11
from tests.raw_server import ACCEPTED_RAW, CannedServer, OneShotServer

Outcome = tuple[int, str, str | None, str] | OSError | http.client.HTTPException


@pytest.fixture
def one_shot() -> Iterator[OneShotServer]:
    server = OneShotServer()
    yield server
    server.close()


def post_two(*answers: bytes) -> tuple[CannedServer, list[Outcome]]:
    """POST twice on one pool, one after the other; what each gave, and the server."""
    server = CannedServer(list(answers))
    pool = _http11.Pool(server.url, (1.0, 1.0), None)
    outcomes: list[Outcome] = []
    for _ in range(2):
        try:
            outcomes.append(pool.post({"ce-type": "t"}, b"{}"))
        except (OSError, http.client.HTTPException) as err:
            outcomes.append(err)
    pool.close()
    server.close()
    return server, outcomes


def test_a_keep_alive_connection_the_sink_closed_is_replaced(one_shot):
    pool = _http11.Pool(f"http://127.0.0.1:{one_shot.port}/", (1.0, 1.0), None)
    for _ in range(3):
        assert pool.post({"ce-type": "t"}, b"")[0] == 202
        assert one_shot.closed.acquire(timeout=30)  # the server closed it
    pool.close()
    assert len(one_shot.requests) == 3
    assert all(head.startswith(b"POST / HTTP/1.1") for head in one_shot.requests)


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://sink.example/", "sink.example"),
        ("http://sink.example:80/", "sink.example"),
        ("https://sink.example:443/", "sink.example"),
        ("http://sink.example:8080/", "sink.example:8080"),
        ("http://[::1]:8080/", "[::1]:8080"),
    ],
)
def test_host_header_leaves_out_the_default_port(url, host):
    assert _http11.Pool(url, 1.0, None).defaults["host"] == f"Host: {host}\r\n"


CHUNKED_202 = (
    b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"4;name=value\r\nsome\r\n5\r\n body\r\n0\r\nX-Trailer: yes\r\n\r\n"
)


@pytest.mark.parametrize(
    ("first", "connections"),
    [
        (ACCEPTED_RAW, 1),  # Content-Length, keep-alive
        (CHUNKED_202, 1),  # chunked, with an extension and a trailer
        (b"HTTP/1.1 100 Continue\r\n\r\n" + ACCEPTED_RAW, 1),
        # Interim answers before the real one (RFC 9110 15.2): read past.
        (b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + ACCEPTED_RAW, 1),
        (
            b"HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 103 Early Hints\r\n\r\n"
            + ACCEPTED_RAW,
            1,
        ),
        (b"HTTP/1.1 204 No Content\r\n\r\n", 1),
        (b"HTTP/1.0 202 Accepted\r\nContent-Length: 0\r\n\r\n", 2),
        (b"HTTP/1.1 202 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", 2),
        (b"HTTP/1.1 202 Accepted\r\n\r\nuntil the end" + CannedServer.CLOSE, 2),
        (
            b"HTTP/1.1 202 A\r\nTransfer-Encoding: identity\r\n"
            b"Content-Length: 0\r\n\r\n",
            1,
        ),
        # Chunked and a Content-Length: read as chunked, then not trusted again.
        (CHUNKED_202.replace(b"\r\n\r\n", b"\r\nContent-Length: 3\r\n\r\n", 1), 2),
    ],
)
def test_responses_are_read_to_their_end_and_connections_reused_when_allowed(
    first, connections
):
    server, outcomes = post_two(first, ACCEPTED_RAW)
    assert not [o for o in outcomes if isinstance(o, Exception)]
    assert [200 <= status < 300 for status, *_ in outcomes] == [True, True]
    assert server.connections == connections


def test_a_chunked_error_body_and_folded_retry_after_are_read():
    answer = (
        b"HTTP/1.1 503 Busy\r\nRetry-After:\r\n  7\r\n"
        b"Content-Type: text/plain; charset=latin-1\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n5\r\ncaf\xe9!\r\n0\r\n\r\n"
    )
    server, [error, second] = post_two(answer, ACCEPTED_RAW)
    assert error == (503, "Busy", " 7", "café!")  # the handler strips " 7"
    assert second[0] == 202
    assert server.connections == 1  # the connection was kept


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (
            b"HTTP/1.1 202 Accepted\r\nContent-Length: 10\r\n\r\nfour"
            + CannedServer.CLOSE,
            "IncompleteRead",
        ),
        (
            b"HTTP/1.1 202 Accepted\r\nContent-Length: 1\r\n"
            b"Content-Length: 2\r\n\r\nab",
            "invalid Content-Length",
        ),
        (
            b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "IncompleteRead",
        ),
        (b"ICY 200 OK\r\n\r\n", "BadStatusLine"),
        (b"HTTP/1.1 20\xb9 Accepted\r\n\r\n", "BadStatusLine"),  # a digit to isdigit()
        (
            b"HTTP/1.1 202 Accepted\r\nContent-Length: \xb2\r\n\r\nab",
            "invalid Content-Length",
        ),
        (b"" + CannedServer.CLOSE, "RemoteDisconnected"),
        (b"HTTP/1.1 202 " + b"x" * 70000 + b"\r\n\r\n", "LineTooLong"),
        (
            b"HTTP/1.1 202 Accepted\r\n" + b"X-A: b\r\n" * 101 + b"\r\n",
            "more than 100 headers",
        ),
        (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "unexpected 101 answer"),
        (b"HTTP/1.1 103 Early Hints\r\n\r\n" * 11, "unexpected 103 answer"),
    ],
)
def test_a_malformed_response_fails_and_the_next_post_uses_a_fresh_connection(
    answer, reason
):
    server, [error, second] = post_two(answer, ACCEPTED_RAW)
    assert isinstance(error, http.client.HTTPException)
    assert _http11.describe(error).startswith("connection error: ")
    assert reason in _http11.describe(error)
    assert second[0] == 202  # the next POST went out ...
    assert server.connections == 2  # ... on a new connection


def test_an_answer_that_trickles_in_is_cut_at_the_read_timeout():
    # Each byte comes well within the read timeout; the whole answer does not.
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    sent = []

    def trickle() -> None:
        connection, _ = listener.accept()
        with connection:
            CannedServer.read_request(connection)
            for byte in ACCEPTED_RAW:
                if stop.wait(0.2):
                    return
                try:
                    connection.sendall(bytes([byte]))
                except OSError:  # the client gave up: as it should
                    return
                sent.append(byte)

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
    pool = _http11.Pool(url, (1.0, 1.0), None)
    with pytest.raises(TimeoutError):
        pool.post({"ce-type": "t"}, b"")
    pool.close()
    assert len(sent) < len(ACCEPTED_RAW)  # given up on before the answer was out
    stop.set()
    thread.join(5)
    listener.close()


def test_a_huge_error_body_is_cut_and_its_connection_not_reused():
    body = b"x" * (_http11.MAX_BODY + 10)
    answer = b"HTTP/1.1 500 Oops\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    server, [error, second] = post_two(answer, ACCEPTED_RAW)
    assert error == (500, "Oops", None, "x" * _http11.MAX_BODY)
    assert second[0] == 202
    assert server.connections == 2
