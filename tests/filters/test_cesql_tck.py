"""The CESQL v1.0 test kit (tests/filters/cesql_tck/, see SOURCE.txt), every case.

Each case compiles its expression and evaluates it against its event: the value
and the error kind must be the kit's; a ``parse`` error must come from compile().
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from django_cloudevents_bridge.filters import cesql

KIT = Path(__file__).parent / "cesql_tck"
# Any valid event, for cases that give none (the kit's README allows any).
MINIMAL = {
    "specversion": "1.0",
    "id": "myId",
    "source": "http://localhost/source",
    "type": "myType",
}


class _Loader(yaml.SafeLoader):
    """YAML without timestamps: the kit's unquoted times are attribute strings."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers if not tag.endswith(":timestamp")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _expressions(text: str) -> list[str]:
    """Each case's expression as written: YAML would read ``TRUE`` or ``0`` as a
    boolean or a number, and the kit tests the text (``TRUE``, ``tRuE``, ...)."""
    root = yaml.compose(text, Loader=_Loader)
    tests = next(value for key, value in root.value if key.value == "tests")
    return [
        next(value.value for key, value in case.value if key.value == "expression")
        for case in tests.value
    ]


def _cases() -> list[Any]:
    cases = []
    for path in sorted(KIT.glob("*.yaml")):
        text = path.read_text()
        suite = yaml.load(text, Loader=_Loader)
        for case, expression in zip(suite["tests"], _expressions(text), strict=True):
            case["expression"] = expression
            cases.append(pytest.param(case, id=f"{path.stem}: {case['name']}"))
    return cases


CASES = _cases()


def test_the_kit_is_complete() -> None:
    assert len(list(KIT.glob("*.yaml"))) == 18
    assert len(CASES) == 275


@pytest.mark.parametrize("case", CASES)
def test_tck(case: dict[str, Any]) -> None:
    event = dict(case.get("event") or MINIMAL)
    event.update(case.get("eventOverrides") or {})
    if case.get("error") == "parse":
        with pytest.raises(cesql.ParseError) as raised:
            cesql.compile(case["expression"])
        assert raised.value.kind == "parse"
        return
    result = cesql.compile(case["expression"]).evaluate(event)
    assert (result.error.kind if result.error else None) == case.get("error")
    if "result" in case:
        assert result.value == case["result"]
        assert type(result.value) is type(case["result"])


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.values[0].get("error") != "parse"]
)
def test_tck_filter_form(case: dict[str, Any]) -> None:
    """matches() (its own compiled form) agrees with evaluate() on every case."""
    event = dict(case.get("event") or MINIMAL)
    event.update(case.get("eventOverrides") or {})
    expression = cesql.compile(case["expression"])
    result = expression.evaluate(event)
    assert expression.matches(event) is (result.value is True and result.error is None)
