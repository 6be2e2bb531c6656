"""The receiver under a real WSGI server: gunicorn, real HTTP, the test's database.

One gunicorn (2 workers x 8 threads) serves the test project for the whole module;
its group handlers (``tests.server``) write a row per run, so each test counts
what really ran and committed: once per event and target, however many times and
however concurrently the event was delivered.
"""

from __future__ import annotations

import json
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from django.db import connection

from django_cloudevents_bridge.models import ReceivedEvent, TargetRun
from tests import server as e2e
from tests.testapp.models import Tag

pytestmark = pytest.mark.django_db(transaction=True)

RECORD = "group:tests.server.record"
FLAKY = "group:tests.server.flaky"
TIMEOUT = 20  # seconds, per request


@pytest.fixture(scope="module")
def gunicorn(django_db_setup, tmp_path_factory) -> Iterator[Any]:
    """The project under gunicorn, on the test database, for this module."""
    directory = tmp_path_factory.mktemp("e2e")
    database = e2e.SharedDatabase(directory)
    running = e2e.Server(directory, database).start()
    try:
        yield running
    finally:
        running.stop()


class Live:
    """A test's view of the server: HTTP helpers and the database in sync."""

    def __init__(self, server: e2e.Server) -> None:
        self.server = server
        self.url = f"{server.url}/cloudevents/"
        self.session = requests.Session()

    def publish(self) -> None:
        self.server.database.publish()

    def refresh(self) -> None:
        self.server.database.refresh()

    def post(self, request: tuple[dict[str, str], bytes], **kwargs: Any) -> Any:
        headers, body = request
        url = kwargs.pop("url", self.url)
        response = self.session.post(
            url, headers=headers, data=body, timeout=TIMEOUT, **kwargs
        )
        if response.status_code >= 500:  # the reason is in the server's log
            print(self.server.tail())
        return response


@pytest.fixture
def live(gunicorn: e2e.Server) -> Iterator[Live]:
    """The server, sharing this test's (freshly flushed) database."""
    client = Live(gunicorn)
    client.publish()
    yield client
    client.session.close()


def binary(
    event_id: str, type_: str = "e2e.created", data: Any = None
) -> tuple[dict[str, str], bytes]:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-source": "/e2e",
        "ce-type": type_,
        "Content-Type": "application/json",
    }
    return headers, json.dumps(data or {"id": event_id}).encode()


def structured(event_id: str, type_: str = "e2e.created") -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": "/e2e",
        "type": type_,
        "datacontenttype": "application/json",
        "data": {"id": event_id},
    }


def runs() -> dict[tuple[str, str], tuple[str, int]]:
    """(target, event id) -> (status, attempts), for every TargetRun row."""
    return {
        (run.target, run.event.event_id): (run.status, run.attempts)
        for run in TargetRun.objects.select_related("event")
    }


def test_binary_structured_and_batched_events_run_their_handler(live):
    response = live.post(binary("bin-1"))
    assert response.status_code == 202, response.text
    assert not any(h.lower().startswith("ce-") for h in response.headers)

    document = structured("struct-1")
    response = live.post(
        (
            {"Content-Type": "application/cloudevents+json; charset=utf-8"},
            json.dumps(document).encode(),
        )
    )
    assert response.status_code == 202, response.text

    batch = [structured("batch-1"), structured("batch-2")]
    response = live.post(
        (
            {"Content-Type": "application/cloudevents-batch+json"},
            json.dumps(batch).encode(),
        )
    )
    assert response.status_code == 202, response.text

    # Redelivered: acknowledged, not run again.
    assert live.post(binary("bin-1")).status_code == 202
    # Malformed: a 4xx with a short JSON reason, from the real server too.
    response = live.post(
        ({"Content-Type": "application/cloudevents+json"}, b"{not json")
    )
    assert response.status_code == 400
    assert response.json() == {"error": "body is not valid JSON"}

    live.refresh()
    ids = ["bin-1", "struct-1", "batch-1", "batch-2"]
    assert e2e.effects() == Counter({("record", i): 1 for i in ids})
    assert runs() == {(RECORD, i): ("done", 1) for i in ids}
    stored = ReceivedEvent.objects.get(source="/e2e", event_id="bin-1")
    assert stored.deliveries == 2
    assert json.loads(stored.event)["data"] == {"id": "bin-1"}


@pytest.mark.postgres
def test_parallel_duplicate_deliveries_run_each_target_once(live):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE=postgres): concurrent writers")
    copies = 20
    distinct = [f"other-{n}" for n in range(3)]
    deliveries = ["dup"] * copies
    for n, event_id in enumerate(distinct):  # interleaved with the copies
        deliveries.insert(5 * (n + 1), event_id)
    start = threading.Barrier(len(deliveries))

    def deliver(event_id: str) -> int:
        with requests.Session() as session:
            headers, body = binary(event_id, "e2e.slow")
            start.wait(TIMEOUT)  # all at once, to overlap in the server
            response = session.post(
                live.url, headers=headers, data=body, timeout=TIMEOUT
            )
            return response.status_code

    with ThreadPoolExecutor(len(deliveries)) as pool:
        statuses = list(pool.map(deliver, deliveries))

    assert statuses == [202] * len(deliveries), live.server.tail()
    ids = ["dup", *distinct]
    assert e2e.effects() == Counter({("record", i): 1 for i in ids})
    assert runs() == {(RECORD, i): ("done", 1) for i in ids}
    assert ReceivedEvent.objects.count() == len(ids)
    dup = ReceivedEvent.objects.get(event_id="dup")
    assert dup.deliveries == copies  # racing copies are counted too


def test_failed_target_is_redelivered_until_it_ran_once(live):
    Tag.objects.create(name=e2e.FAIL_FLAG)
    live.publish()
    event = binary("flaky-1", "e2e.flaky")

    response = live.post(event)
    assert response.status_code == 500  # the broker redelivers
    assert response.json() == {"error": "1 target(s) failed; retry"}
    live.refresh()
    # The other target is not held back by the failing one, and stays done.
    assert e2e.effects() == Counter({("record", "flaky-1"): 1})
    assert runs() == {
        (RECORD, "flaky-1"): ("done", 1),
        (FLAKY, "flaky-1"): ("failed", 1),
    }
    failed = TargetRun.objects.get(target=FLAKY)
    assert failed.error == "RuntimeError: flaky target told to fail"

    Tag.objects.filter(name=e2e.FAIL_FLAG).delete()
    live.publish()
    assert live.post(event).status_code == 202  # only the failed target runs
    assert live.post(event).status_code == 202  # nothing owes work any more

    live.refresh()
    assert e2e.effects() == Counter({("record", "flaky-1"): 1, ("flaky", "flaky-1"): 1})
    assert runs() == {
        (RECORD, "flaky-1"): ("done", 1),
        (FLAKY, "flaky-1"): ("done", 2),
    }
    assert TargetRun.objects.get(target=FLAKY).error == ""
    assert ReceivedEvent.objects.get().deliveries == 3


def test_receiver_without_trailing_slash_is_served_not_redirected(live):
    url = live.url.rstrip("/")
    response = live.post(binary("no-slash"), url=url, allow_redirects=False)
    assert response.status_code == 202, response.text

    handshake = live.session.options(
        url,
        headers={"WebHook-Request-Origin": "eventemitter.example.com"},
        allow_redirects=False,
        timeout=TIMEOUT,
    )
    assert handshake.status_code == 200
    assert handshake.headers["WebHook-Allowed-Origin"] == "eventemitter.example.com"

    live.refresh()
    assert e2e.effects() == Counter({("record", "no-slash"): 1})


def test_chunked_request_body_is_read_in_full(live):
    headers, body = binary("chunked-1")
    # A generator body: requests sends it chunked, with no Content-Length.
    response = live.post((headers, iter([body])))
    assert response.status_code == 202, response.text
    live.refresh()
    stored = ReceivedEvent.objects.get(event_id="chunked-1")
    assert json.loads(stored.event)["data"] == {"id": "chunked-1"}


def test_a_full_batch_is_dispatched_and_a_larger_one_refused(live):
    # gunicorn's worker timeout (30 s) killed a 10,000-event batch; MAX_BATCH
    # (100) keeps a batch to about a second of dispatch.
    def batch(count: int, prefix: str) -> tuple[dict[str, str], bytes]:
        events = [structured(f"{prefix}-{n}") for n in range(count)]
        headers = {"Content-Type": "application/cloudevents-batch+json"}
        return headers, json.dumps(events).encode()

    refused = live.post(batch(101, "over"))
    assert refused.status_code == 413
    assert refused.json() == {"error": "batch of 101 events; at most 100 per request"}
    assert live.post(batch(100, "full")).status_code == 202

    live.refresh()
    assert e2e.effects() == Counter({("record", f"full-{n}"): 1 for n in range(100)})


def raw_request(server: e2e.Server, request: bytes) -> bytes:
    """Send ``request`` as it is over a socket; what the server answers, to EOF."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)  # a truncated body ends here
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize("path", ["/cloudevents/", "/cloudevents/pubsub/"])
@pytest.mark.parametrize(
    "framing",
    [
        b"zz\r\n{}\r\n0\r\n\r\n",  # not hexadecimal
        b"-1\r\n{}\r\n0\r\n\r\n",  # negative
        b"2 junk\r\n{}\r\n0\r\n\r\n",  # junk after the size
        b"0x2\r\n{}\r\n0\r\n\r\n",  # a prefix HTTP does not allow
        b"2\r\n{}junk0\r\n\r\n",  # no CRLF after the chunk
        b"ffffffffffffffffffff\r\n{}",  # absurdly large, then the end
        b"2\r\n{}\r\n",  # truncated: no last chunk
    ],
    ids=["zz", "minus-1", "junk", "0x", "no-crlf", "huge", "truncated"],
)
def test_malformed_chunked_framing_is_a_400(live, path, framing):
    headers, _ = binary("chunked-bad")
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ).encode() + framing
    answer = raw_request(live.server, request)
    status_line = answer.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 400"), (answer[:300], live.server.tail())
    assert b"request body could not be read" in answer
    live.refresh()
    assert not ReceivedEvent.objects.exists()
