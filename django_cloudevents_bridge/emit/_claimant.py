"""Who holds a claim: this process's tag in its claims' tokens, and whether the
process behind a token of this host is still alive (SQLite's crash recovery).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import socket

_process: tuple[int, str] = (0, "")  # (pid, nonce): see nonce()
# The host's part of a relay's name: room left for ":" and any Linux pid (at most
# 2**22, 7 digits) within the name's 60 characters. A longer host name (a
# Kubernetes pod's is up to 63) is shortened, never the pid after it.
HOST_LENGTH = 52


def host() -> str:
    """This host's name as relay names and claim tokens carry it.

    A name longer than HOST_LENGTH keeps its start and ends with a hash of the
    whole name instead of its tail: pods of one Deployment differ only at the
    end, so cutting the tail would give them one prefix (and recover() would
    probe one pod's pids on the other).
    """
    name = socket.gethostname()
    if len(name) <= HOST_LENGTH:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: HOST_LENGTH - 9]}~{digest}"


def default_name() -> str:
    """A relay's default name: ``host:pid`` (its claims' tokens start with it)."""
    return f"{host()}:{os.getpid()}"


def nonce() -> str:
    """A random tag of this process, in its claims' tokens: tells this process's
    claims from those of an earlier one that had the same pid."""
    global _process
    if _process[0] != os.getpid():  # first use, or a forked child
        _process = (os.getpid(), secrets.token_hex(4))
    return _process[1]


def dead(rest: str) -> bool:
    """True if the process of a token of this host (``pid:nonce:claim``) is gone."""
    pid, _, tag = rest.partition(":")
    if not pid.isdigit():
        return False  # not a relay's default name: wait for the lease
    if int(pid) == os.getpid():
        return not tag.startswith(f"{nonce()}:")
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: another user's live process
        return False
    return False
