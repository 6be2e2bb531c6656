"""The filter form of a CESQL expression as one generated Python function.

``Expression.matches()`` only needs to know whether the value is ``true`` with
no error, so any error may simply abort: the expression becomes a single Python
expression in which every failure raises, wrapped in ``try``/``except`` that
answers False. Python's ``and``/``or`` short-circuit as CESQL's do. The closure
tree of cesql.py (exact values and errors, for ``evaluate()``) costs a call per
node: about 0.1x a hand-written check for a typical Trigger expression; this
is one call plus one per attribute read (measured in ``make bench``).

Only the parser's nodes reach the generated text: attribute names are
``[a-z0-9]+`` and every literal is written with ``repr()``; constants the
source cannot spell (sets, regexes, functions) are passed in by name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from . import cesql as c
from ._cesql_parse import Attribute, Binary, Call, Exists, In, Like, Unary


class _Abort(Exception):
    """Any error: the filter does not pass."""


def _read(attributes: Mapping[str, Any], name: str) -> Any:
    value = attributes.get(name)
    if value is None:
        raise _Abort(name)
    return c._primitive(value)


def _reader(target: type | None) -> Callable[[Mapping[str, Any], str], Any]:
    """An attribute read already cast to ``target``: the common case inline."""
    if target is None:
        return _read

    def read(attributes: Mapping[str, Any], name: str) -> Any:
        value: Any = attributes.get(name)
        kind = value.__class__
        if kind is target:
            return value
        if kind is str and target is int and value.isascii() and value.isdigit():
            number = int(value)  # the usual number in a string, without a call
            if number <= c.INT_MAX:
                return number
        if kind is str or kind is int or kind is bool:
            return c._cast(value, target)
        return c._cast(_read(attributes, name), target)

    return read


def _equal(x: Any, y: Any) -> bool:
    if x.__class__ is not y.__class__:
        x = c._cast(x, y.__class__)
    return bool(x == y)


def _member(x: Any, items: tuple[Any, ...]) -> bool:
    kind = x.__class__
    cast = [y if y.__class__ is kind else c._cast(y, kind) for y in items]
    return x in cast


def _fail() -> bool:
    raise _Abort


class _Generator:
    def __init__(self) -> None:
        self.names: dict[str, Any] = {
            "__builtins__": {},
            "Exception": Exception,
            "dict": dict,
            "str": str,
            "int": int,
            "bool": bool,
            "_read": _read,
            "_str": _reader(str),
            "_int": _reader(int),
            "_bool": _reader(bool),
            "_cast": c._cast,
            "_equal": _equal,
            "_member": _member,
            "_checked": c._checked,
            "_divide": c._divide,
            "_modulo": c._modulo,
            "_fail": _fail,
            "_attributes": c._attributes,
        }

    def bind(self, value: Any) -> str:
        """A name for a constant the source cannot spell."""
        name = f"_k{len(self.names)}"
        self.names[name] = value
        return name

    def source(self, tree: Any) -> tuple[str, type | None]:
        """Python source for ``tree`` and its static type (None: known at run time).

        Literals, and anything the closure compiler folds, are constants.
        """
        node = c._compile(tree)
        if node.constant:
            return repr(node.function({})), node.type
        if isinstance(tree, Attribute):
            return f"_read(a, {tree.name!r})", None
        if isinstance(tree, Exists):
            return f"(a.get({tree.name!r}) is not None)", bool
        if isinstance(tree, Unary):
            if tree.op == "NOT":
                return f"(not {self.typed(tree.operand, bool)})", bool
            return f"_checked(-{self.typed(tree.operand, int)})", int
        if isinstance(tree, Binary):
            return self.binary(tree)
        if isinstance(tree, Like):
            return self.like(tree), bool
        if isinstance(tree, In):
            return self.member(tree), bool
        if isinstance(tree, Call):
            return self.call(tree)
        raise TypeError(f"unknown CESQL node {tree!r}")  # pragma: no cover

    def typed(self, tree: Any, target: type) -> str:
        """Source whose value is of ``target`` (an implicit cast), or raises."""
        if isinstance(tree, Attribute):  # the common case inline, the rest called
            name, read = tree.name, f"_{target.__name__}"
            local = f"_v{len(self.names)}"
            self.names[local] = None  # reserves the name
            return (
                f"({local} if ({local} := a.get({name!r})).__class__ is "
                f"{target.__name__} else {read}(a, {name!r}))"
            )
        text, kind = self.source(tree)
        if kind is target:
            return text
        return f"_cast({text}, {target.__name__})"

    def binary(self, tree: Binary) -> tuple[str, type | None]:
        op = tree.op
        if op in ("AND", "OR"):
            left, right = self.typed(tree.left, bool), self.typed(tree.right, bool)
            return f"({left} {op.lower()} {right})", bool
        if op == "XOR":
            left, right = self.typed(tree.left, bool), self.typed(tree.right, bool)
            return f"({left} is not {right})", bool
        if op in ("=", "!=", "<>"):
            right, kind = self.source(tree.right)
            if kind is None:
                left, _ = self.source(tree.left)
                test = f"_equal({left}, {right})"
            else:
                test = f"({self.typed(tree.left, kind)} == {right})"
            return (test if op == "=" else f"(not {test})"), bool
        left, right = self.typed(tree.left, int), self.typed(tree.right, int)
        if op in ("<", "<=", ">", ">="):
            return f"({left} {op} {right})", bool
        if op == "/":
            return f"_divide({left}, {right})", int
        if op == "%":
            return f"_modulo({left}, {right})", int
        return f"_checked({left} {op} {right})", int

    def like(self, tree: Like) -> str:
        value = self.typed(tree.operand, str)
        kind, argument = c.like_plan(tree.pattern)
        if kind == "equal":
            test = f"({value} == {argument!r})"
        elif kind == "prefix":
            test = f"{value}.startswith({argument!r})"
        elif kind == "suffix":
            test = f"{value}.endswith({argument!r})"
        elif kind == "any":
            test = f"({value} is not None)"  # read it: a missing one is an error
        else:
            test = f"({self.bind(argument.fullmatch)}({value}) is not None)"
        return f"(not {test})" if tree.negated else test

    def member(self, tree: In) -> str:
        value, kind = self.source(tree.operand)
        items = [self.source(item) for item in tree.items]
        if kind is not None and all(c._compile(i).constant for i in tree.items):
            try:
                known = frozenset(
                    c._cast(c._compile(item).function({}), kind) for item in tree.items
                )
            except c._Bad:
                return "_fail()"  # a cast error whatever the value: never passes
            test = f"({value} in {self.bind(known)})"
        else:
            listed = "".join(f"{text}, " for text, _ in items)
            test = f"_member({value}, ({listed}))"
        return f"(not {test})" if tree.negated else test

    def call(self, tree: Call) -> tuple[str, type | None]:
        arity = len(tree.arguments)
        signature = c.FUNCTIONS.get((tree.name, arity))
        if signature is not None:
            params = signature[0]
        else:
            signature = c.FUNCTIONS.get((tree.name, c.VARIADIC))
            fixed = len(signature[0]) - 1 if signature else 0
            if signature is None or arity < fixed:
                return "_fail()", bool
            params = signature[0][:fixed] + signature[0][fixed:] * (arity - fixed)
        if tree.name in ("INT", "STRING"):  # explicit casts that are the implicit ones
            return self.typed(tree.arguments[0], signature[1]), signature[1]
        arguments = ", ".join(
            self.source(argument)[0] if param is None else self.typed(argument, param)
            for param, argument in zip(params, tree.arguments, strict=True)
        )
        return f"{self.bind(signature[2])}({arguments})", signature[1]


def predicate(tree: Any, text: str) -> Callable[[Mapping[str, Any]], bool]:
    """``tree``'s filter form: True only for a true value with no error."""
    node = c._compile(tree)
    if node.constant:  # folded without error: the same answer for every event
        passes = node.function({}) is True
        return lambda attributes: passes  # no attribute is read, as for any event
    generator = _Generator()
    expression, _ = generator.source(tree)
    source = (
        "def matches(a):\n"
        "    if a.__class__ is not dict:\n"
        "        a = _attributes(a)\n"
        "    try:\n"
        f"        return {expression} is True\n"
        "    except Exception:\n"
        "        return False\n"
    )
    code = compile(source, f"<cesql {text!r}>", "exec")
    exec(code, generator.names)  # noqa: S102 - source built from parsed nodes only
    matches: Callable[[Mapping[str, Any]], bool] = generator.names["matches"]
    return matches
