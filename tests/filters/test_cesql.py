"""CESQL beyond the test kit: our API, parse errors, choices the kit leaves open."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from django_cloudevents_bridge.events import new
from django_cloudevents_bridge.filters import cesql

EVENT = {
    "specversion": "1.0",
    "id": "1",
    "source": "/orders",
    "type": "com.example.order.created",
}


def value(text: str, **attributes: object) -> object:
    result = cesql.compile(text).evaluate({**EVENT, **attributes})
    assert result.error is None, result.error
    return result.value


def error(text: str, **attributes: object) -> tuple[object, str]:
    result = cesql.compile(text).evaluate({**EVENT, **attributes})
    assert result.error is not None, f"{text} gave {result.value!r} with no error"
    assert result.errors == (result.error,)
    return result.value, result.error.kind


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "'unterminated",
        '"unterminated',
        "a = ",
        "(a = 1",
        "a = 1)",
        "a b",
        "a LIKE b",
        "a LIKE 1",
        "a IN ()",
        "a IN 1",
        "EXISTS",
        "EXISTS 'x'",
        "EXISTS and",
        "2147483648",
        "-2147483649",
        "a = 1 AND",
        "NOT",
        "AND a",
        "TRUE(1)",
        "Bad_Name",
        "fn1(2)",
        "a == 1",
        "a # 1",
        "+a",
        "a.b = 1",
    ],
)
def test_parse_errors(text: str) -> None:
    with pytest.raises(cesql.ParseError) as raised:
        cesql.compile(text)
    assert raised.value.kind == "parse"
    assert isinstance(raised.value, ValueError)  # callers may catch either


def test_parse_error_says_where() -> None:
    with pytest.raises(cesql.ParseError, match="at character 5"):
        cesql.compile("a = = 1")


def test_not_a_string_is_a_parse_error() -> None:
    with pytest.raises(cesql.ParseError):
        cesql.compile(42)  # type: ignore[arg-type]


def test_integer_literal_range() -> None:
    assert value("2147483647") == 2**31 - 1
    assert value("-2147483648") == -(2**31)
    assert value("+5") == 5


def test_integer_overflow_wraps_with_a_math_error() -> None:
    assert error("2147483647 + 1") == (-(2**31), "math")  # its own value
    assert error("2147483647 + 1 > 0") == (False, "math")  # the zero of the outer
    assert error("-(-2147483648)")[1] == "math"
    assert error("-2147483648 / -1")[1] == "math"
    assert value("-7 / 2") == -3  # rounded towards zero
    assert value("-7 % 2") == -1  # the sign of the dividend
    assert value("7 % -2") == 1


def test_logic_operators_share_one_level_left_to_right() -> None:
    # (TRUE OR FALSE) AND FALSE, not TRUE OR (FALSE AND FALSE)
    assert value("TRUE OR FALSE AND FALSE") is False
    assert value("FALSE AND FALSE OR TRUE") is True
    assert value("TRUE XOR TRUE OR TRUE") is True


def test_short_circuit_skips_the_right_side() -> None:
    assert value("FALSE AND missing") is False
    assert value("TRUE OR 1 / 0 = 1") is True
    assert error("TRUE AND missing") == (False, "missingAttribute")


def test_precedence_of_unary_operators_and_like() -> None:
    # NOT binds tighter than LIKE (spec 3.6): (NOT 'false') LIKE 'tr%'
    assert value("NOT 'false' LIKE 'tr%'") is True
    assert value("NOT ('x' LIKE 'y%')") is True
    assert value("1 + 2 * 3") == 7
    assert value("-2 * 3") == -6


def test_attribute_types() -> None:
    assert value("seq = 5", seq=5) is True
    assert value("seq = '5'", seq=5) is True  # 5 cast to the right's type
    assert value("flag", flag=True) is True
    assert value("flag = 'true'", flag=True) is True


def test_non_primitive_attributes_are_strings() -> None:
    utc = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert value("time", time=utc) == "2026-01-02T03:04:05Z"
    plus2 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    assert value("time", time=plus2) == "2026-01-02T03:04:05+02:00"
    assert value("time LIKE '2026-%'", time=utc) is True
    assert value("blob", blob=b"abc") == "abc"


def test_none_is_a_missing_attribute() -> None:
    assert error("subject = 'x'", subject=None) == (False, "missingAttribute")
    assert value("EXISTS subject", subject=None) is False


def test_identifiers_and_keywords_are_case_insensitive() -> None:
    assert value("TYPE like 'com.%' and exists SOURCE") is True
    assert value("lower(Type) = type") is True


def test_like_escapes_and_special_characters() -> None:
    assert value("x LIKE 'a.b%'", x="a.bc") is True
    assert value("x LIKE 'a.b%'", x="axbc") is False  # '.' is no wildcard
    assert value("x LIKE '(%)'", x="(1)") is True
    assert value("x LIKE 'a_c'", x="a\nc") is True
    assert value("x LIKE '%'", x="") is True
    assert value("x LIKE '\\%%'", x="%x") is True
    assert value("x LIKE '\\%%'", x="x%") is False
    assert value("x LIKE '%a%b%'", x="zazbz") is True


def test_in_with_attributes_and_casts() -> None:
    assert value("prio IN (1, 2, 3)", prio="02") is False  # items cast to string
    assert value("INT(prio) IN (1, 2, 3)", prio="02") is True
    assert value("type IN (source, id, 'com.example.order.created')") is True
    assert error("1 IN ('x', 1)") == (True, "cast")


def test_missing_function_and_wrong_arity() -> None:
    assert error("NOPE(1)") == (False, "missingFunction")
    assert error("LENGTH('a', 'b')") == (False, "missingFunction")
    assert error("SUBSTRING('a')") == (False, "missingFunction")
    assert value("CONCAT_WS('-', 'a', 1, TRUE)") == "a-1-true"


def test_string_functions() -> None:
    assert value("TRIM(x)", x="\u2003 a \u3000") == "a"
    assert value("TRIM(x)", x="\x1fa") == "\x1fa"  # not Unicode White_Space
    assert value("SUBSTRING('abcdef', -1)") == "f"
    assert value("SUBSTRING('abcdef', 3, 0)") == ""
    assert error("SUBSTRING('abcdef', 1, -1)") == ("", "functionEvaluation")
    assert value("LENGTH('héllo')") == 5


def test_explicit_and_implicit_casts() -> None:
    assert value("BOOL(2)") is True
    assert error("NOT 2") == (False is False, "cast")  # NOT false
    assert error("INT('99999999999')") == (0, "cast")
    assert error("INT(' 1')") == (0, "cast")
    assert error("INT('1_000')") == (0, "cast")
    assert error("INT('١')") == (0, "cast")  # only ASCII digits


def test_errors_inside_give_the_zero_of_the_outer_type() -> None:
    assert error("LENGTH(LEFT('abc', -1))") == (0, "functionEvaluation")
    assert error("CONCAT(missing, 'x')") == ("", "missingAttribute")
    assert error("missing") == (False, "missingAttribute")


def test_matches_is_true_only_for_true_without_error() -> None:
    expression = cesql.compile("type LIKE 'com.example.%' AND INT(prio) > 2")
    assert expression.matches({**EVENT, "prio": "3"}) is True
    assert expression.matches({**EVENT, "prio": "2"}) is False
    assert expression.matches({**EVENT, "prio": "x"}) is False  # cast error
    assert expression.matches(EVENT) is False  # missing attribute
    assert cesql.compile("1").matches(EVENT) is False  # not a boolean
    assert cesql.compile("'true'").matches(EVENT) is False
    assert cesql.compile("NOT 0").matches(EVENT) is False  # true, with an error


def test_evaluates_an_sdk_event() -> None:
    event = new(
        "com.example.order.created", source="/orders", data={"a": 1}, subject="o/1"
    )
    expression = cesql.compile("subject = 'o/1' AND EXISTS time AND NOT EXISTS x")
    assert expression.matches(event) is True


def test_constants_are_folded_and_keep_their_errors() -> None:
    expression = cesql.compile("1 / 0 = 0")
    assert expression.evaluate({}).error.kind == "math"  # type: ignore[union-attr]
    assert repr(expression) == "<cesql.Expression '1 / 0 = 0'>"
    assert str(expression.evaluate({}).error).startswith("math: ")
