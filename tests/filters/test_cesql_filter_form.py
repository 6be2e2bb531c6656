"""matches() is generated Python (filters/_cesql_fast.py); evaluate() walks the
closure tree. They must agree: random expressions over every construct, checked
against events with every attribute type and with attributes missing."""

from __future__ import annotations

import random

import pytest

from django_cloudevents_bridge.filters import cesql

ATTRIBUTES = ["s", "n", "ns", "b", "bs", "big", "missing", "type", "subject"]
EVENTS = [
    {
        "specversion": "1.0",
        "id": "1",
        "source": "/x",
        "type": "com.example.a",
        "s": "abc",
        "n": 5,
        "ns": "7",
        "b": True,
        "bs": "TRUE",
        "big": "99999999999",
        "subject": "a_b%c",
    },
    {"specversion": "1.0", "id": "2", "source": "/y", "type": "x", "n": 0, "s": ""},
]
LITERALS = [
    "0",
    "1",
    "-3",
    "2147483647",
    "TRUE",
    "false",
    "'abc'",
    "'7'",
    "'true'",
    "''",
]
PATTERNS = ["'abc'", "'a%'", "'%c'", "'a_c'", "'%'", "'a\\_b\\%c'", "'%b%'"]
FUNCTIONS = [
    ("LENGTH", 1), ("CONCAT", 0), ("CONCAT", 3), ("CONCAT_WS", 2), ("LOWER", 1),
    ("UPPER", 1), ("TRIM", 1), ("LEFT", 2), ("RIGHT", 2), ("SUBSTRING", 2),
    ("SUBSTRING", 3), ("ABS", 1), ("INT", 1), ("BOOL", 1), ("STRING", 1),
    ("NOPE", 1), ("LENGTH", 2),
]  # fmt: skip
BINARY = ["AND", "OR", "XOR", "=", "!=", "<>", "<", "<=", ">", ">=", "+", "-", "*"]
BINARY += ["/", "%"]


def expression(rng: random.Random, depth: int) -> str:
    if depth == 0 or rng.random() < 0.25:
        return rng.choice(ATTRIBUTES + LITERALS)
    kind = rng.randrange(7)
    sub = lambda: expression(rng, depth - 1)  # noqa: E731
    if kind == 0:
        return f"({sub()} {rng.choice(BINARY)} {sub()})"
    if kind == 1:
        return f"{rng.choice(['NOT ', '-'])}({sub()})"
    if kind == 2:
        negated = rng.choice(["", "NOT "])
        return f"({sub()} {negated}LIKE {rng.choice(PATTERNS)})"
    if kind == 3:
        items = ", ".join(sub() for _ in range(rng.randint(1, 3)))
        return f"({sub()} {rng.choice(['', 'NOT '])}IN ({items}))"
    if kind == 4:
        return f"EXISTS {rng.choice(ATTRIBUTES)}"
    name, arity = rng.choice(FUNCTIONS)
    return f"{name}({', '.join(sub() for _ in range(arity))})"


@pytest.mark.parametrize("seed", range(4))
def test_filter_form_agrees_with_evaluate(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(500):
        text = expression(rng, 4)
        compiled = cesql.compile(text)
        for event in EVENTS:
            result = compiled.evaluate(event)
            expected = result.value is True and result.error is None
            assert compiled.matches(event) is expected, (text, event, result)
