"""Targets for deferred mode's tests, in the test process and in worker processes.

Each leaves its traces in the directory ``DEFERRED_DIR`` names: a file per start,
and its effect (a ``Tag`` named after the event), which commits together with its
done-record. An event whose data has ``"block": true`` keeps ``slow`` waiting,
after it started, until a file named ``release`` appears there.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

from django_cloudevents_bridge.events import CloudEvent
from tests.testapp.models import Tag

GROUP = r"^com\.example\.deferred\."
TYPE = "com.example.deferred.work"
CRASH_GROUP = r"^com\.example\.crash\."
ORDERED_GROUP = r"^com\.example\.ordered\."
BLOCK_TIMEOUT = 60.0  # a blocked target gives up after this, whatever the test does


def directory() -> Path:
    return Path(os.environ["DEFERRED_DIR"])


def starts(event_id: str) -> list[Path]:
    """The start files of ``slow`` for this event, one per run started."""
    return sorted(directory().glob(f"started-{event_id}-*"))


def slow(event: CloudEvent) -> None:
    """Record a start, wait while asked to, then do the work (one Tag)."""
    name = f"started-{event.get_id()}-{os.getpid()}-{uuid.uuid4().hex}"
    (directory() / name).touch()
    data = event.get_data()
    if isinstance(data, dict) and data.get("block"):
        deadline = time.monotonic() + BLOCK_TIMEOUT
        while not (directory() / "release").exists():
            if time.monotonic() > deadline:
                raise TimeoutError("never released")
            time.sleep(0.01)
    Tag.objects.create(name=event.get_id())


def failing(event: CloudEvent) -> None:
    """Always fails (a downstream that is down)."""
    (directory() / f"failed-{event.get_id()}-{uuid.uuid4().hex}").touch()
    raise RuntimeError("downstream unavailable")


def crashing(event: CloudEvent) -> None:
    """Kills its own process (a segfault, the OOM killer): no outcome is recorded."""
    (directory() / f"started-{event.get_id()}-{os.getpid()}").touch()
    os.kill(os.getpid(), signal.SIGKILL)


def ordered(event: CloudEvent) -> None:
    """Event ``n`` of a key: its work is a Tag ``key:n``, written after ``key:n-1``.

    A ``violation-*`` file says it started before the work of an earlier event
    of its key committed (but those listed in ``"poisoned"``). ``"flaky": true``
    fails each event's first attempt; ``"poison": true`` fails every attempt.
    """
    data = event.get_data()
    assert isinstance(data, dict)
    key, n = data["key"], data["n"]
    flaky = directory() / f"flaky-{event.get_id()}"
    if data.get("poison") or (data.get("flaky") and not flaky.exists()):
        flaky.touch()
        raise RuntimeError(f"{key}:{n} failed")
    earlier = set(
        Tag.objects.filter(name__startswith=f"{key}:").values_list("name", flat=True)
    )
    poisoned = {f"{key}:{m}" for m in data.get("poisoned", [])}
    if any(f"{key}:{m}" not in earlier | poisoned for m in range(n)):
        (directory() / f"violation-{key}-{n}-{uuid.uuid4().hex}").touch()
    time.sleep(0.002)  # widen the window a concurrent run of the key would hit
    Tag.objects.create(name=f"{key}:{n}")
