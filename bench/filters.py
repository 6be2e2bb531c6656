"""``python -m bench.filters``: CESQL against the same check written in Python,
and the cost of finding an event's group handlers among many filtered ones.

A typical Trigger expression, compiled once, evaluated on the same attributes as
a hand-written function doing the same check, in alternating rounds; the ratio
of their medians (target: the compiled filter at >= 0.5x the hand-written one).
``evaluate()`` (value and errors, the closure tree) is shown beside it.

Dispatch: 10, 100 and 1,000 group handlers, each with a filter; the time to find
the targets of one event. Handlers pinned to an exact ``type`` are looked up by
type (near constant); ``prefix`` filters are tried one by one (linear).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

from django_cloudevents_bridge.filters import cesql

EXPRESSION = "type LIKE 'com.example.%' AND EXISTS region AND INT(priority) > 2"
ATTRIBUTES = {
    "specversion": "1.0",
    "id": "4d2c",
    "source": "/orders",
    "type": "com.example.order.paid",
    "region": "eu-west",
    "priority": "5",
}


def by_hand(attributes: Mapping[str, Any]) -> bool:
    """The same check as EXPRESSION, as a project would write it."""
    type_ = attributes.get("type")
    if type_ is None or not type_.startswith("com.example."):
        return False
    if attributes.get("region") is None:
        return False
    try:
        return int(attributes["priority"]) > 2
    except (KeyError, TypeError, ValueError):
        return False


def per_second(check: Callable[[Mapping[str, Any]], object], n: int) -> float:
    attributes = ATTRIBUTES
    start = time.perf_counter()
    for _ in range(n):
        check(attributes)
    return n / (time.perf_counter() - start)


def main(rounds: int = 9, n: int = 100_000) -> None:
    expression = cesql.compile(EXPRESSION)
    assert expression.matches(ATTRIBUTES) and by_hand(ATTRIBUTES)
    rates: dict[str, list[float]] = {"hand": [], "matches": [], "evaluate": []}
    for _ in range(rounds):
        rates["hand"].append(per_second(by_hand, n))
        rates["matches"].append(per_second(expression.matches, n))
        rates["evaluate"].append(per_second(expression.evaluate, n))
    hand = statistics.median(rates["hand"])
    print(f"\nCESQL: {EXPRESSION}")
    print(f"  (medians of {rounds} alternating rounds of {n:,} evaluations)")
    print(f"  {'':34}{'evaluations/s':>14}{'x by hand':>11}")
    print(f"  {'hand-written Python check':34}{hand:>14,.0f}{1:>11.2f}")
    for name, label in (
        ("matches", "matches() (the filter form)"),
        ("evaluate", "evaluate() (value and errors)"),
    ):
        rate = statistics.median(rates[name])
        print(f"  {label:34}{rate:>14,.0f}{rate / hand:>11.2f}")
    print("  target: matches() >= 0.5x the hand-written check")


def dispatch(counts: tuple[int, ...] = (10, 100, 1000), n: int = 2000) -> None:
    import tempfile
    from pathlib import Path

    from bench import settings

    settings.configure(Path(tempfile.mkdtemp()), with_postgres=False)
    from django_cloudevents_bridge import events
    from django_cloudevents_bridge.targets import groups

    event = events.new("com.example.t7", source="/bench", data={})
    print("\nGroup handlers with filters: finding one event's targets")
    print(f"  {'handlers':>10}{'exact type, µs':>16}{'prefix, µs':>14}")
    for count in counts:
        row = []
        for kind in ("exact", "prefix"):
            registered = []
            for i in range(count):

                def handler(event: Any) -> None:
                    pass

                handler.__qualname__ = f"bench_{kind}_{i}"
                spec = {
                    kind: {
                        "type": f"com.example.t{i}" + ("" if kind == "exact" else ".")
                    }
                }
                groups.register_group_handler(handler, filter=spec)
                registered.append(handler)
            found = list(groups.group_targets(event))
            assert len(found) == (1 if kind == "exact" else 0)
            start = time.perf_counter()
            for _ in range(n):
                list(groups.group_targets(event))
            row.append((time.perf_counter() - start) / n * 1e6)
            for handler in registered:
                groups.unregister_group_handler(handler)
        print(f"  {count:>10,}{row[0]:>16.1f}{row[1]:>14.1f}")


if __name__ == "__main__":
    main()
    dispatch()
