"""Who holds a claim: this process's tag in its claims' tokens, and whether the
process behind a token of this host is still alive (SQLite's crash recovery).
"""

from __future__ import annotations

import os
import secrets

_process: tuple[int, str] = (0, "")  # (pid, nonce): see nonce()


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
