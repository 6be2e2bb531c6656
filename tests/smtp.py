"""A real SMTP server on a loopback port (aiosmtpd), for the e-mail channel's tests.

It keeps every accepted message, counts connections (EHLO/HELO), and can refuse:
``refuse[address] = "550 ..."`` refuses a recipient; ``fail_data`` holds replies
(``"451 ..."``) given to the next DATA commands instead of accepting them;
``hold_after(n)`` keeps the replies after the n-th waiting until ``release()``.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import threading
import time
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Mailbox:
    """aiosmtpd handler: what was accepted, and the refusals to give."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.connections = 0
        self.refuse: dict[str, str] = {}
        self.fail_data: list[str] = []
        self.limit: int | None = None  # hold_after()
        self.held = 0

    def hold_after(self, count: int) -> None:
        """Answer ``count`` messages; keep the reply to each later one (kept as
        accepted) waiting until ``release()``: a client stopped at a known point,
        after the server took its message and before the client knows."""
        with self.lock:
            self.limit = count

    def release(self) -> None:
        with self.lock:
            self.limit = None

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: Any
    ) -> Any:
        with self.lock:
            self.connections += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        refusal = self.refuse.get(address.lower())
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            if self.fail_data:
                return self.fail_data.pop(0)
            message = email.message_from_bytes(
                envelope.original_content or envelope.content,
                policy=email.policy.default,
            )
            self.messages.append(message)  # type: ignore[arg-type]
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
            hold = self.limit is not None and len(self.messages) > self.limit
            if hold:
                self.held += 1
        deadline = time.monotonic() + 60
        while hold and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
            with self.lock:
                hold = self.limit is not None
        return "250 Message accepted"

    def wait_for(self, check: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"not reached in {timeout}s: {self.messages}")
            time.sleep(0.01)


class SMTPServer:
    def __init__(self) -> None:
        self.mailbox = Mailbox()
        self.port = free_port()
        self.controller = Controller(
            self.mailbox, hostname="127.0.0.1", port=self.port, ready_timeout=30
        )

    def start(self) -> SMTPServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()
