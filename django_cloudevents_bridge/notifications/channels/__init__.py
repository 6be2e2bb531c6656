"""Channels: how a notification reaches a person (e-mail, webhook; a feed later).

A channel is a class named by a dotted path in ``CLOUDEVENTS_NOTIFICATIONS
["CHANNELS"]`` (``"email"`` is built in), or by ``{"BACKEND": path, "OPTIONS":
{...}}`` whose options are the class's keyword arguments. It turns its messages
into JSON for the ledger (``dump``) and back (``load``: a retry sends what was
built, without building it again), and sends a batch of ledger rows (``send``),
yielding each row's outcome as soon as it is known: ``None`` for sent, or the
exception; ``check`` may raise at start-up for options that cannot work (system
check E011). The ledger records each outcome before the channel sends the next
one, so a crash can resend at most the message in flight.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from django.utils.module_loading import import_string

from ... import conf

if TYPE_CHECKING:
    from ...models import Delivery

Outcome = BaseException | None


class PermanentFailure(Exception):
    """An outcome no retry can change (a refused address): parked at once."""


class BaseChannel:
    """Subclasses implement ``dump``, ``load`` and ``send``."""

    def dump(self, message: Any) -> dict[str, Any]:
        """The message as a JSON-safe dict (TypeError/ValueError if it cannot be)."""
        raise NotImplementedError

    def load(self, data: dict[str, Any]) -> Any:
        """The message back from ``dump``'s dict."""
        raise NotImplementedError

    def send(
        self, deliveries: Sequence[Delivery]
    ) -> Iterator[tuple[Delivery, Outcome]]:
        """Send a batch; yield ``(delivery, None or the error)`` for each, in turn."""
        raise NotImplementedError

    def check(self) -> None:
        """Raise if the options depend on settings that do not fit (check E011);
        ``__init__`` checks the options alone, as ``record()`` builds the channel."""


def get_channel(name: str) -> BaseChannel:
    """The channel configured under ``name``; LookupError if there is none."""
    try:
        path = conf.channels()[name]
    except KeyError:
        raise LookupError(f"no notification channel {name!r} is configured") from None
    if not isinstance(path, str):
        raise TypeError(f"notification channel {name!r} has no dotted path (BACKEND)")
    options = conf.channel_options(name)
    if not isinstance(options, dict):
        raise TypeError(f"notification channel {name!r}: OPTIONS must be a dict")
    channel = import_string(path)(**options)
    if not isinstance(channel, BaseChannel):
        raise TypeError(f"notification channel {name!r} ({path}) is no BaseChannel")
    return channel
