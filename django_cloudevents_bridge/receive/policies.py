"""Sender policies: which senders may deliver which events (Knative's EventPolicy).

Knative enforces EventPolicy on its own ingresses (Broker, Channel), not on a
plain Service, so a receiver that a Trigger reaches directly checks them itself::

    CLOUDEVENTS_RECEIVER = {
        ...,
        "POLICIES": [
            {"subjects": ["system:serviceaccount:shop:*"],
             "filters": [{"prefix": {"type": "com.shop."}}]},
            {"subjects": ["system:serviceaccount:billing:payments"]},
        ],
    }

An event is admitted when any policy admits it: its ``subjects`` (OIDC ``sub``
patterns: exact, ``*`` at the end a prefix as in EventPolicy, or ending in ``:``,
today's ``OIDC_SUBJECTS`` rule) include the sender, and its ``filters``
(Subscriptions API dialects, see :mod:`..filters`) pass. A policy without
``subjects`` admits any authenticated sender, also one that used the shared
secret (which has no subject); ``[]`` admits nothing; None (the default) checks
nothing. Every event of a batch must be admitted, or the request is refused (403)
and none is stored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import PermissionDenied

from .. import conf, filters
from ..events import CloudEvent

KEYS = frozenset({"subjects", "filters"})


def subject_matches(subject: str, pattern: str) -> bool:
    """``pattern`` admits ``subject``: equal, or a prefix ending in ``*`` or ``:``."""
    if pattern.endswith("*"):
        return subject.startswith(pattern[:-1])
    if pattern.endswith(":"):
        return subject.startswith(pattern)
    return subject == pattern


@dataclass(frozen=True)
class Policy:
    subjects: tuple[str, ...] | None
    filter: filters.Filter | None

    def admits(self, subject: str | None, event: CloudEvent) -> bool:
        if self.subjects is not None and not (
            subject is not None
            and any(subject_matches(subject, p) for p in self.subjects)
        ):
            return False
        return self.filter is None or self.filter.matches(event)


_cache: tuple[object, tuple[Policy, ...]] | None = None


def compiled(setting: Sequence[Mapping[str, Any]]) -> tuple[Policy, ...]:
    """The policies of the setting, compiled once per setting object."""
    global _cache
    if _cache is None or _cache[0] is not setting:
        _cache = (setting, tuple(_policy(item) for item in setting))
    return _cache[1]


def _policy(item: Mapping[str, Any]) -> Policy:
    subjects = item.get("subjects")
    spec = item.get("filters")
    return Policy(
        None if subjects is None else tuple(subjects),
        None if spec is None else filters.compile(spec),
    )


def admit(subject: str | None, events: Sequence[CloudEvent]) -> None:
    """Return if every event is admitted by some policy; else PermissionDenied."""
    setting = conf.receiver()["POLICIES"]
    if setting is None:
        return
    policies = compiled(setting)
    for event in events:
        if not any(policy.admits(subject, event) for policy in policies):
            sender = f"sender {subject!r}" if subject else "this sender"
            raise PermissionDenied(
                f"no policy admits event {event.get_id()!r} of type "
                f"{event.get_type()!r} from {sender}"
            )


def problems(setting: Any) -> list[str]:
    """What is wrong with a POLICIES setting (for the system check)."""
    if setting is None:
        return []
    if not isinstance(setting, list | tuple):
        return ["POLICIES must be a list of policies (or None)"]
    found = []
    for index, item in enumerate(setting):
        where = f"POLICIES[{index}]"
        if not isinstance(item, Mapping):
            found.append(f"{where} must be a dict with 'subjects' and/or 'filters'")
            continue
        found += [f"{where}: unknown key {key!r}" for key in sorted(set(item) - KEYS)]
        subjects = item.get("subjects")
        if subjects is not None and not (
            isinstance(subjects, list | tuple)
            and all(isinstance(s, str) and s for s in subjects)
        ):
            found.append(f"{where}: subjects must be a list of non-empty strings")
        if item.get("filters") is not None:
            try:
                filters.compile(item["filters"])
            except filters.InvalidFilter as err:
                found.append(f"{where}: {err}")
    return found
