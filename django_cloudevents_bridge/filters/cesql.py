"""CESQL v1.0, the CloudEvents SQL Expression Language: compile once, evaluate fast.

    >>> from django_cloudevents_bridge.filters import cesql
    >>> expression = cesql.compile("type LIKE 'com.example.%' AND INT(priority) > 2")
    >>> expression.matches({"type": "com.example.order", "priority": "5"})
    True
    >>> result = expression.evaluate({"type": "com.example.order"})
    >>> result.value, result.error.kind
    (False, 'missingAttribute')

``compile()`` raises :class:`ParseError`; evaluation never raises. Semantics are
the spec's (``cloudevents-spec/cesql/spec.md``) as its test kit pins them down:

- an error inside a sub-expression makes every enclosing operator or function
  return the zero value of its own type (``false``, ``0``, ``""``), so
  ``true AND (1 != 1 / 0)`` is ``false`` with a ``math`` error, while an error
  raised by the outermost node keeps that node's value (``LEFT('abc', -2)`` is
  ``'abc'`` with a ``functionEvaluation`` error; ``NOT 10`` is ``true`` with a
  ``cast`` error: an implicit Integer -> Boolean cast is refused, ``BOOL(10)`` is
  not);
- only the first error is reported (the spec's "fail fast" mode, which it
  recommends for filters); ``matches()`` is true only for a Boolean ``true``
  with no error;
- attribute values that are not Boolean, Integer or String are read as strings
  (a ``datetime`` as RFC 3339); ``None`` is a missing attribute.

Each node compiles to a Python closure, and sub-expressions of literals are
folded at compile time, so evaluating costs a few calls per operator.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..events import CloudEvent
from ._cesql_parse import (
    INT_MAX,
    INT_MIN,
    Attribute,
    Binary,
    Call,
    Exists,
    In,
    Like,
    Literal,
    ParseError,
    Unary,
    parse,
)

__all__ = ["EvaluationError", "Expression", "ParseError", "Result", "compile"]

Value = bool | int | str
Function = Callable[[Mapping[str, Any]], Any]

# The TCK's error kinds.
MATH = "math"
CAST = "cast"
MISSING_FUNCTION = "missingFunction"
FUNCTION_EVALUATION = "functionEvaluation"
MISSING_ATTRIBUTE = "missingAttribute"
GENERIC = "generic"

# Always present in a valid event: EXISTS is true without looking.
REQUIRED = frozenset({"specversion", "id", "source", "type"})
ZERO: dict[type | None, Value] = {bool: False, int: 0, str: "", None: False}


@dataclass(frozen=True)
class EvaluationError:
    """One error of an evaluation; ``kind`` is one of the TCK's names."""

    kind: str
    message: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


@dataclass(frozen=True)
class Result:
    """What an evaluation gave: a value (bool, int or str) and its errors."""

    value: Value
    errors: tuple[EvaluationError, ...] = ()

    @property
    def error(self) -> EvaluationError | None:
        """The first error, or None."""
        return self.errors[0] if self.errors else None


class _Fail(Exception):
    """An error raised by node ``origin``, whose own value is ``value``."""

    def __init__(self, kind: str, message: str, value: Value, origin: Any) -> None:
        self.error = EvaluationError(kind, message)
        self.value = value
        self.origin = origin


class _Bad(Exception):
    """A failed cast or function inside a node: its kind and fallback value."""

    def __init__(self, kind: str, message: str, value: Value) -> None:
        self.kind, self.message, self.value = kind, message, value


class Expression:
    """A compiled CESQL expression; evaluate it against events' attributes."""

    def __init__(
        self,
        text: str,
        function: Function,
        type_: type | None,
        predicate: Callable[[Mapping[str, Any]], bool],
    ) -> None:
        self.text = text
        self._function = function
        self._zero = ZERO[type_]
        # The generated filter itself, not a method calling it: a call less on
        # the hot path (the method below documents it and is what it replaces).
        self.matches = predicate  # type: ignore[method-assign,assignment]

    def __repr__(self) -> str:
        return f"<cesql.Expression {self.text!r}>"

    def evaluate(self, attributes: Mapping[str, Any] | CloudEvent) -> Result:
        """Evaluate against a mapping of context attributes, or an SDK event."""
        if type(attributes) is not dict:
            attributes = _attributes(attributes)
        try:
            return Result(self._function(attributes))
        except _Fail as fail:
            value = fail.value if fail.origin is self._function else self._zero
            return Result(value, (fail.error,))

    def matches(self, attributes: Mapping[str, Any] | CloudEvent) -> bool:
        """The filter form: True only for a true Boolean with no error."""
        return self.matches(attributes)  # pragma: no cover - replaced per instance


def _attributes(source: Mapping[str, Any] | CloudEvent) -> Mapping[str, Any]:
    if isinstance(source, CloudEvent):
        return source.get_attributes()
    return source


def compile(text: str) -> Expression:
    """Parse and compile a CESQL expression; raises ParseError."""
    from ._cesql_fast import predicate

    tree = parse(text)
    node = _compile(tree)
    return Expression(text, node.function, node.type, predicate(tree, text))


# -- casts (spec 3.7) -----------------------------------------------------------

_INTEGER = re.compile(r"[+-]?[0-9]+")


def _wrap(value: int) -> int:
    """Two's complement 32-bit wrap-around, as Integer arithmetic overflows."""
    return (value - INT_MIN) % 2**32 + INT_MIN


def _primitive(value: Any) -> Value:
    """An attribute value as one of CESQL's three types (others are strings)."""
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, datetime):
        if value.utcoffset() == timedelta(0):
            return value.isoformat().replace("+00:00", "Z")
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _cast(value: Value, target: type, explicit: bool = False) -> Value:
    """``value`` as ``target``; raises _Bad with the zero value if it cannot be."""
    kind = value.__class__
    if kind is target:
        return value
    if target is int:
        if kind is bool:
            return int(value)
        if kind is str and (
            # isdigit() alone would take "²" and int() "1_000" or " 1": ASCII only
            (value.isascii() and value.isdigit())  # type: ignore[union-attr]
            or _INTEGER.fullmatch(value)  # type: ignore[arg-type]
        ):
            number = int(value)
            if INT_MIN <= number <= INT_MAX:
                return number
        raise _Bad(CAST, f"cannot cast {value!r} to Integer", 0)
    if target is bool:
        if kind is str:
            lowered = value.lower()  # type: ignore[union-attr]
            if lowered in ("true", "false"):
                return lowered == "true"
        elif kind is int and explicit:
            return value != 0
        raise _Bad(CAST, f"cannot cast {_show(value)} to Boolean", False)
    if kind is bool:
        return "true" if value else "false"
    return str(value)


def _show(value: Value) -> str:
    return ("true" if value else "false") if value.__class__ is bool else repr(value)


# -- nodes ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Node:
    function: Function
    type: type | None  # None: an attribute, whose type is known only at run time
    constant: bool = False


def _constant(value: Value) -> _Node:
    return _Node(lambda attributes: value, type(value), constant=True)


def _folded(node: _Node, children: tuple[_Node, ...]) -> _Node:
    """A node of constants becomes a constant, unless evaluating it fails."""
    if not all(child.constant for child in children):
        return node
    try:
        return _constant(node.function({}))
    except _Fail:
        return node


def _compile(tree: Any) -> _Node:
    if isinstance(tree, Literal):
        return _constant(tree.value)
    if isinstance(tree, Attribute):
        return _attribute(tree.name)
    if isinstance(tree, Exists):
        return _exists(tree.name)
    if isinstance(tree, Unary):
        child = _compile(tree.operand)
        if tree.op == "NOT":
            return _folded(_operator((bool,), bool, _not, [child]), (child,))
        return _folded(_operator((int,), int, _negate, [child]), (child,))
    if isinstance(tree, Binary):
        return _binary(tree)
    if isinstance(tree, Like):
        child = _compile(tree.operand)
        return _folded(_like(child, tree.pattern, tree.negated), (child,))
    if isinstance(tree, In):
        return _in(tree)
    if isinstance(tree, Call):
        return _call(tree)
    raise TypeError(f"unknown CESQL node {tree!r}")  # pragma: no cover - parser's


def _attribute(name: str) -> _Node:
    def attribute(attributes: Mapping[str, Any]) -> Any:
        value = attributes.get(name)
        if value is None:
            raise _Fail(MISSING_ATTRIBUTE, f"no attribute {name!r}", False, attribute)
        kind = value.__class__
        if kind is str or kind is int or kind is bool:
            return value
        return _primitive(value)

    return _Node(attribute, None)


def _exists(name: str) -> _Node:
    if name in REQUIRED:
        return _constant(True)
    return _Node(lambda attributes: attributes.get(name) is not None, bool)


def _operator(
    params: tuple[type | None, ...],
    returns: type,
    implementation: Callable[..., Value],
    children: list[_Node],
    explicit: bool = False,
) -> _Node:
    """An operator or function: evaluate, cast to ``params``, apply.

    A child's failure propagates (each enclosing node then stands for its zero
    value); a failed cast or a function error of this node keeps this node's
    own value.
    """
    functions = [child.function for child in children]
    # Casts only where the child's type is not already the parameter's.
    needs_cast = any(
        param is not None and child.type is not param
        for param, child in zip(params, children, strict=True)
    )

    def apply(attributes: Mapping[str, Any]) -> Value:
        values = [function(attributes) for function in functions]
        bad = None
        if needs_cast:
            for index, param in enumerate(params):
                if param is not None and values[index].__class__ is not param:
                    try:
                        values[index] = _cast(values[index], param, explicit)
                    except _Bad as failure:
                        values[index] = failure.value
                        bad = bad or failure
        try:
            value = implementation(*values)
        except _Bad as failure:
            bad, value = bad or failure, failure.value
        if bad is not None:
            raise _Fail(bad.kind, bad.message, value, apply)
        return value

    return _Node(apply, returns)


def _not(value: bool) -> bool:
    return not value


def _negate(value: int) -> int:
    return _checked(-value)


def _checked(value: int) -> int:
    if INT_MIN <= value <= INT_MAX:
        return value
    raise _Bad(MATH, "integer overflow", _wrap(value))


def _divide(left: int, right: int) -> int:
    if right == 0:
        raise _Bad(MATH, "division by zero", 0)
    quotient = abs(left) // abs(right)  # rounded towards zero
    return _checked(quotient if (left < 0) == (right < 0) else -quotient)


def _modulo(left: int, right: int) -> int:
    if right == 0:
        raise _Bad(MATH, "division by zero", 0)
    remainder = abs(left) % abs(right)  # the sign of the dividend
    return -remainder if left < 0 else remainder


_ARITHMETIC: dict[str, Callable[[int, int], int]] = {
    "+": lambda left, right: _checked(left + right),
    "-": lambda left, right: _checked(left - right),
    "*": lambda left, right: _checked(left * right),
    "/": _divide,
    "%": _modulo,
}
_ORDER: dict[str, Callable[[int, int], bool]] = {
    "<": int.__lt__,
    "<=": int.__le__,
    ">": int.__gt__,
    ">=": int.__ge__,
}


def _binary(tree: Binary) -> _Node:
    left, right = _compile(tree.left), _compile(tree.right)
    op = tree.op
    if op in ("AND", "OR", "XOR"):
        node = _logic(op, left, right)
    elif op in ("=", "!=", "<>"):
        node = _equality(op != "=", left, right)
    elif op in _ORDER:
        node = _operator((int, int), bool, _ORDER[op], [left, right])
    else:
        node = _operator((int, int), int, _ARITHMETIC[op], [left, right])
    return _folded(node, (left, right))


def _logic(op: str, left: _Node, right: _Node) -> _Node:
    """AND and OR short-circuit (spec 3.4.2): the right side may not run."""
    first, second = left.function, right.function
    if op == "XOR":
        return _operator((bool, bool), bool, lambda a, b: a is not b, [left, right])
    stop = op == "OR"  # the left value that decides the result alone

    def logic(attributes: Mapping[str, Any]) -> bool:
        value = first(attributes)
        if value.__class__ is not bool:
            value = _as_bool(value, logic)
        if value is stop:
            return stop
        value = second(attributes)
        if value.__class__ is not bool:
            value = _as_bool(value, logic)
        return value

    return _Node(logic, bool)


def _as_bool(value: Value, origin: Any) -> bool:
    try:
        return _cast(value, bool)  # type: ignore[return-value]
    except _Bad as failure:
        # A refused operand is false, and false decides neither AND nor OR
        # the way a true one would: the node's own value is false.
        raise _Fail(failure.kind, failure.message, False, origin) from None


def _equality(negated: bool, left: _Node, right: _Node) -> _Node:
    """``=`` is ambiguous (spec 3.7): the left side is cast to the right's type."""
    first, second = left.function, right.function

    def equality(attributes: Mapping[str, Any]) -> bool:
        x = first(attributes)
        y = second(attributes)
        if x.__class__ is not y.__class__:
            try:
                x = _cast(x, y.__class__)
            except _Bad as failure:
                raise _Fail(
                    failure.kind,
                    failure.message,
                    (failure.value == y) is not negated,
                    equality,
                ) from None
        return (x == y) is not negated

    return _Node(equality, bool)


def like_plan(pattern: str) -> tuple[str, Any]:
    """The cheapest test for a LIKE pattern: ("equal", text), ("prefix", text),
    ("suffix", text), ("any", None) or ("regex", a compiled full-match)."""
    tokens = [part for part in re.split(r"(\\[%_]|[%_])", pattern) if part]
    literal = [t[1] if t in ("\\%", "\\_") else t for t in tokens]
    wild = [t in ("%", "_") for t in tokens]
    if not any(wild):
        return "equal", "".join(literal)
    if tokens == ["%"]:
        return "any", None
    if tokens[-1] == "%" and not any(wild[:-1]):
        return "prefix", "".join(literal[:-1])
    if tokens[0] == "%" and not any(wild[1:]):
        return "suffix", "".join(literal[1:])
    regex = "".join(
        ".*" if t == "%" else "." if t == "_" else re.escape(lit)
        for t, lit in zip(tokens, literal, strict=True)
    )
    return "regex", re.compile(regex, re.DOTALL)


def _like_matcher(pattern: str) -> Callable[[str], bool]:
    kind, argument = like_plan(pattern)
    if kind == "equal":
        return argument.__eq__
    if kind == "prefix":
        return lambda value: value.startswith(argument)
    if kind == "suffix":
        return lambda value: value.endswith(argument)
    if kind == "any":
        return lambda value: True
    return lambda value: argument.fullmatch(value) is not None


def _like(child: _Node, pattern: str, negated: bool) -> _Node:
    matcher = _like_matcher(pattern)

    def like(value: str) -> bool:
        return matcher(value) is not negated

    return _operator((str,), bool, like, [child])


def _in(tree: In) -> _Node:
    """``x IN (...)``: each item is cast to the type of ``x`` (spec 3.7)."""
    operand = _compile(tree.operand)
    items = [_compile(item) for item in tree.items]
    first = operand.function
    functions = [item.function for item in items]
    negated = tree.negated
    constants: dict[type, frozenset[Value] | None] = {}

    def constant_set(kind: type) -> frozenset[Value] | None:
        """The items cast to ``kind``, once, if they are constants that cast."""
        if kind not in constants:
            try:
                constants[kind] = frozenset(
                    _cast(function({}), kind) for function in functions
                )
            except _Bad:
                constants[kind] = None
        return constants[kind]

    all_constant = all(item.constant for item in items)

    def member(attributes: Mapping[str, Any]) -> bool:
        x = first(attributes)
        kind = x.__class__
        if all_constant:
            known = constant_set(kind)
            if known is not None:
                return (x in known) is not negated
        found, bad = False, None
        for function in functions:
            y = function(attributes)
            if y.__class__ is not kind:
                try:
                    y = _cast(y, kind)
                except _Bad as failure:
                    bad = bad or failure
                    continue
            found = found or x == y
        if bad is not None:
            raise _Fail(bad.kind, bad.message, found is not negated, member)
        return found is not negated

    return _folded(_Node(member, bool), (operand, *items))


def _trim(value: str) -> str:
    # Unicode White_Space only: str.strip() would also take \x1c-\x1f.
    return value.strip(_WHITESPACE)


_WHITESPACE = "".join(
    chr(c) for c in range(0x3000 + 1) if chr(c).isspace() and c not in range(0x1C, 0x20)
)


def _left(value: str, length: int) -> str:
    if length < 0:
        raise _Bad(FUNCTION_EVALUATION, "LEFT: negative length", value)
    return value[:length]


def _right(value: str, length: int) -> str:
    if length < 0:
        raise _Bad(FUNCTION_EVALUATION, "RIGHT: negative length", value)
    return value[len(value) - length :] if length else ""


def _substring(value: str, position: int, length: int | None = None) -> str:
    size = len(value)
    if position > size or position < -size:
        raise _Bad(FUNCTION_EVALUATION, "SUBSTRING: position out of range", "")
    if length is not None and length < 0:
        raise _Bad(FUNCTION_EVALUATION, "SUBSTRING: negative length", "")
    if position == 0:
        return ""
    start = position - 1 if position > 0 else size + position
    return value[start:] if length is None else value[start : start + length]


def _abs(value: int) -> int:
    if value == INT_MIN:
        raise _Bad(MATH, "ABS: integer overflow", INT_MAX)
    return abs(value)


def _explicit(target: type) -> Callable[[Value], Value]:
    def cast(value: Value) -> Value:
        return _cast(value, target, explicit=True)

    return cast


VARIADIC = -1
# (name, arity) -> (parameter types, return type, implementation); a variadic
# function's last parameter type repeats, after its fixed parameters.
FUNCTIONS: dict[tuple[str, int], tuple[tuple[type | None, ...], type, Callable]] = {
    ("LENGTH", 1): ((str,), int, len),
    ("CONCAT", VARIADIC): ((str,), str, lambda *values: "".join(values)),
    ("CONCAT_WS", VARIADIC): (
        (str, str),
        str,
        lambda delimiter, *values: delimiter.join(values),
    ),
    ("LOWER", 1): ((str,), str, str.lower),
    ("UPPER", 1): ((str,), str, str.upper),
    ("TRIM", 1): ((str,), str, _trim),
    ("LEFT", 2): ((str, int), str, _left),
    ("RIGHT", 2): ((str, int), str, _right),
    ("SUBSTRING", 2): ((str, int), str, _substring),
    ("SUBSTRING", 3): ((str, int, int), str, _substring),
    ("ABS", 1): ((int,), int, _abs),
    ("INT", 1): ((None,), int, _explicit(int)),
    ("BOOL", 1): ((None,), bool, _explicit(bool)),
    ("STRING", 1): ((None,), str, _explicit(str)),
}


def _call(tree: Call) -> _Node:
    arity = len(tree.arguments)
    signature = FUNCTIONS.get((tree.name, arity))
    if signature is not None:
        params = signature[0]
    else:
        signature = FUNCTIONS.get((tree.name, VARIADIC))
        fixed = len(signature[0]) - 1 if signature else 0
        if signature is None or arity < fixed:
            return _missing_function(tree.name, arity)
        params = signature[0][:fixed] + signature[0][fixed:] * (arity - fixed)
    children = [_compile(argument) for argument in tree.arguments]
    node = _operator(params, signature[1], signature[2], children)
    return _folded(node, tuple(children))


def _missing_function(name: str, arity: int) -> _Node:
    def missing(attributes: Mapping[str, Any]) -> bool:
        raise _Fail(
            MISSING_FUNCTION,
            f"no function {name} with {arity} arguments",
            False,
            missing,
        )

    return _Node(missing, bool)
