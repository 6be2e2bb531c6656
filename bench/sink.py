"""A minimal keep-alive HTTP/1.1 sink on a loopback port that answers 202.

``python -m bench.sink`` prints its port on the first line of stdout and exits when
its stdin closes, so it never outlives the bench. It runs in its own process so the
sink's work does not compete with the measured code for the GIL. ``GET /count``
answers the number of events and of POSTs accepted so far ("events posts"): a
binary-mode POST is one event, an ``application/cloudevents-batch+json`` POST as
many as its JSON array holds (parsed, so a malformed batch is not counted).

asyncio streams rather than ``http.server.ThreadingHTTPServer``: the same
keep-alive HTTP/1.1 without a thread per connection (in one check both took about
14,000 requests/s from ``bench.relay``'s load generator). One process is enough,
no SO_REUSEPORT group: ``bench.relay`` measures the sink's ceiling in the same run,
and it is more than ten times what the relay reaches.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import urllib.request

ACCEPTED = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"
BAD = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
BATCH = b"application/cloudevents-batch+json"
received = 0  # events
posts = 0


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer requests on one connection until the client closes it."""
    global received, posts
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lower = head.lower()
            length = 0
            batch = False
            for line in lower.split(b"\r\n"):
                if line.startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
                elif line.startswith(b"content-type:"):
                    batch = BATCH in line
            body = await reader.readexactly(length) if length else b""
            if head.startswith(b"GET /count"):
                body = b"%d %d" % (received, posts)
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                    % (len(body), body)
                )
            elif batch:
                try:
                    events = json.loads(body)
                except ValueError:
                    events = None
                if isinstance(events, list):
                    received += len(events)
                    posts += 1
                    writer.write(ACCEPTED)
                else:
                    writer.write(BAD)
            else:
                received += 1
                posts += 1
                writer.write(ACCEPTED)
            if b"connection: close" in lower:
                break
    except (asyncio.IncompleteReadError, ConnectionError):
        pass  # the client closed the connection: the normal end
    finally:
        writer.close()


async def run() -> None:
    server = await asyncio.start_server(serve, "127.0.0.1", 0, backlog=512)
    print(server.sockets[0].getsockname()[1], flush=True)
    threading.Thread(target=exit_on_eof, daemon=True).start()
    await server.serve_forever()


def exit_on_eof() -> None:
    """Exit when the parent closes stdin, or dies: nothing here needs cleaning up."""
    sys.stdin.buffer.read()
    os._exit(0)


class Process:
    """The sink in a subprocess: ``with Process() as sink: sink.url ...``."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.sink"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.process.stdout is not None
        port = self.process.stdout.readline().strip()
        if not port:
            self.stop()
            raise RuntimeError("the sink did not start")
        self.port = int(port)
        self.url = f"http://127.0.0.1:{self.port}/"

    def count(self) -> int:
        """How many events the sink accepted."""
        return self.counts()[0]

    def counts(self) -> tuple[int, int]:
        """How many events, and how many POSTs, the sink accepted."""
        with urllib.request.urlopen(self.url + "count", timeout=5) as response:
            events, posts = response.read().split()
        return int(events), int(posts)

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> Process:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


if __name__ == "__main__":
    asyncio.run(run())
