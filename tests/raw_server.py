"""Raw HTTP/1.1 servers on loopback, answering with prepared bytes.

For the tests of our HTTP/1.1 client and of the HTTP handler: unlike the sink in
``tests/sink.py``, they can answer in ways a real server library would not.
"""

from __future__ import annotations

import re
import socket
import threading
import time

ACCEPTED_RAW = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"


class OneShotServer:
    """Raw HTTP on loopback: answers each connection's first request with 202 and
    then closes it, without saying so (as a sink's idle timeout does)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.requests: list[bytes] = []
        self.closed = threading.Semaphore(0)  # released as each connection closes
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            with connection:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = connection.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                length = re.search(rb"(?i)content-length: *(\d+)", head)
                while length and len(body) < int(length.group(1)):
                    body += connection.recv(65536)
                self.requests.append(head)
                connection.sendall(ACCEPTED_RAW)
                time.sleep(0.05)  # the close reaches the client while it is idle
            self.closed.release()

    def close(self) -> None:
        self.listener.close()


class CannedServer:
    """Raw HTTP on loopback: answers requests, in order, with prepared bytes.

    An answer ending in ``CLOSE`` is followed by closing the connection. The
    server counts the connections it accepted, so reuse can be asserted.
    """

    CLOSE = b"<close>"

    def __init__(self, answers: list[bytes]) -> None:
        self.answers = list(answers)
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/"
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while self.answers:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            with connection:
                while self.answers and self.read_request(connection):
                    answer = self.answers.pop(0)
                    try:
                        connection.sendall(answer.removesuffix(self.CLOSE))
                    except (BrokenPipeError, ConnectionResetError):
                        break  # the client read what it wanted and hung up
                    if answer.endswith(self.CLOSE):
                        break

    @staticmethod
    def read_request(connection: socket.socket) -> bool:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = connection.recv(65536)
            if not chunk:
                return False
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
        while len(body) < length:
            body += connection.recv(65536)
        return True

    def close(self) -> None:
        self.listener.close()
