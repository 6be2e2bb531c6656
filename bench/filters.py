"""``python -m bench.filters``: CESQL against the same check written in Python.

A typical Trigger expression, compiled once, evaluated on the same attributes as
a hand-written function doing the same check, in alternating rounds; the ratio
of their medians (target: the compiled filter at >= 0.5x the hand-written one).
``evaluate()`` (value and errors, the closure tree) is shown beside it.
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


if __name__ == "__main__":
    main()
