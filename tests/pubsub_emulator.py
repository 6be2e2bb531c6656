"""The real Google Pub/Sub emulator, started once per session by the tests that ask."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import need

PROJECT = "dceb-tests"
START_TIMEOUT = 90.0


@dataclass
class Emulator:
    """A running ``gcloud beta emulators pubsub start`` process group."""

    process: subprocess.Popen
    host: str
    project: str
    log: Path

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """SIGSTOP the emulator: it accepts connections but never answers."""
        os.killpg(self.process.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.killpg(self.process.pid, signal.SIGCONT)


@dataclass
class PubSub:
    """A fresh topic and subscription on the emulator, and clients to use them."""

    emulator: Emulator
    ordered: bool = False
    topic: str = ""
    subscription: str = ""
    publisher: Any = field(default=None, repr=False)
    subscriber: Any = field(default=None, repr=False)

    def path(self, kind: str, name: str) -> str:
        return f"projects/{self.emulator.project}/{kind}/{name}"

    def new_topic(self, *, create: bool = True) -> str:
        """A unique topic path, created on the emulator unless ``create`` is False."""
        topic = self.path("topics", f"t-{uuid.uuid4().hex[:12]}")
        if create:
            self.create(topic)
        return topic

    def create(self, topic: str) -> str:
        """Create ``topic`` and a subscription to it; return the subscription."""
        self.publisher.create_topic(name=topic)
        self.topic = topic
        self.subscription = self.path("subscriptions", topic.rsplit("/", 1)[1])
        self.subscriber.create_subscription(
            request={
                "name": self.subscription,
                "topic": topic,
                "enable_message_ordering": self.ordered,
            }
        )
        return self.subscription

    def pull(self, count: int, timeout: float = 30.0) -> list:
        """Exactly ``count`` messages, acknowledged; fails on fewer or more."""
        messages: list = []
        deadline = time.monotonic() + timeout
        while len(messages) < count and time.monotonic() < deadline:
            received = self.pull_now()
            if not received:
                time.sleep(0.05)
            messages += received
        messages += self.pull_now()  # anything beyond count is an error
        assert len(messages) == count, f"expected {count} messages, got {messages}"
        return messages

    def pull_now(self) -> list:
        """The messages available now, acknowledged."""
        # Deprecated, but the emulator honours it: no long poll on an empty queue.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            response = self.subscriber.pull(
                request={
                    "subscription": self.subscription,
                    "max_messages": 100,
                    "return_immediately": True,
                },
                timeout=5,
            )
        received = list(response.received_messages)
        if received:
            self.subscriber.acknowledge(
                subscription=self.subscription, ack_ids=[r.ack_id for r in received]
            )
        return [r.message for r in received]

    def close(self) -> None:
        self.publisher.transport.close()
        self.subscriber.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ready(host: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback
    try:
        with opener.open(f"http://{host}/", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def stop(process: subprocess.Popen) -> None:
    """End the whole process group (gcloud's wrapper and the JVM under it)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGCONT)  # a frozen group ignores SIGTERM
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=15)
    # The wrapper may exit before the JVM: wait for the group, not only the leader.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=5)


@pytest.fixture(scope="session")
def pubsub_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """Start the Pub/Sub emulator once, on a free loopback port."""
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        need("Pub/Sub emulator", "gcloud is not on PATH")
    try:
        import google.cloud.pubsub_v1  # noqa: F401
    except ImportError as err:
        need("Pub/Sub emulator", f"google-cloud-pubsub is not installed ({err})")
    directory = tmp_path_factory.mktemp("pubsub-emulator")
    log = directory / "emulator.log"
    (directory / "data").mkdir()
    host = f"127.0.0.1:{free_port()}"
    command = [gcloud, "beta", "emulators", "pubsub", "start"]
    command += [f"--host-port={host}", f"--project={PROJECT}"]
    command += [f"--data-dir={directory / 'data'}"]
    # gcloud's own config and logs go to the temporary directory, not to ~/.config.
    env = {
        **os.environ,
        "CLOUDSDK_CONFIG": str(directory / "gcloud"),
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
    }
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group, killed as a whole
        )
    try:
        started = time.monotonic()
        while not ready(host):
            if process.poll() is not None or time.monotonic() - started > START_TIMEOUT:
                tail = log.read_text(errors="replace")[-2000:]
                need("Pub/Sub emulator", f"did not start on {host}:\n{tail}")
            time.sleep(0.2)
        yield Emulator(process=process, host=host, project=PROJECT, log=log)
    finally:
        stop(process)


def connect(emulator: Emulator, monkeypatch: pytest.MonkeyPatch, **kw) -> PubSub:
    from google.cloud import pubsub_v1

    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", emulator.host)
    for name in ("PROJECT_ID", "TOPIC_ID", "K_SOURCE", "K_CE_OVERRIDES"):
        monkeypatch.delenv(name, raising=False)
    helper = PubSub(
        emulator=emulator,
        publisher=pubsub_v1.PublisherClient(),
        subscriber=pubsub_v1.SubscriberClient(),
        **kw,
    )
    helper.new_topic()
    return helper


@pytest.fixture
def pubsub(
    pubsub_emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> Iterator[PubSub]:
    """Point Google clients at the emulator; a new topic and subscription."""
    helper = connect(pubsub_emulator, monkeypatch)
    yield helper
    helper.close()


@pytest.fixture
def ordered_pubsub(
    pubsub_emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> Iterator[PubSub]:
    """Like ``pubsub``, with a subscription that delivers in ordering-key order."""
    helper = connect(pubsub_emulator, monkeypatch, ordered=True)
    yield helper
    helper.close()
