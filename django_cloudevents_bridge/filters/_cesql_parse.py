"""CESQL v1.0 text -> syntax tree: a tokenizer and a precedence-climbing parser.

The grammar is the spec's (section 2). Keywords, function names and
identifiers are case-insensitive (the TCK's ``EXISTS SOURCE`` must find
``source``), so words are folded to one case here. Precedence, tightest
first, as section 3.6 lists it: function calls; ``NOT`` and unary ``-``;
``LIKE``; ``EXISTS``; ``IN``; ``* / %``; ``+ -``; comparisons; ``AND OR XOR``
(one level, left to right).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

INT_MIN, INT_MAX = -(2**31), 2**31 - 1

KEYWORDS = frozenset(
    {"AND", "OR", "XOR", "NOT", "LIKE", "IN", "EXISTS", "TRUE", "FALSE"}
)
COMPARISONS = frozenset({"=", "!=", "<>", "<", "<=", ">", ">="})
LOGIC = frozenset({"AND", "OR", "XOR"})

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<string>'(?:\\'|[^'])*'|"(?:\\"|[^"])*")
  | (?P<word>[A-Za-z0-9_]+)
  | (?P<op><>|!=|<=|>=|[=<>+\-*/%(),])
    """,
    re.VERBOSE,
)
_IDENTIFIER = re.compile(r"[a-z0-9]+")
_FUNCTION = re.compile(r"[A-Z][A-Z_]*")


class ParseError(ValueError):
    """The text is not a CESQL expression (the TCK's ``parse`` error kind)."""

    kind = "parse"

    def __init__(self, message: str, position: int | None = None) -> None:
        where = "" if position is None else f" at character {position + 1}"
        super().__init__(f"{message}{where}")
        self.position = position


# The syntax tree: small frozen nodes the compiler (cesql.py) walks once.
@dataclass(frozen=True)
class Literal:
    value: bool | int | str


@dataclass(frozen=True)
class Attribute:
    name: str


@dataclass(frozen=True)
class Exists:
    name: str


@dataclass(frozen=True)
class Unary:
    op: str  # "NOT" or "-"
    operand: Any


@dataclass(frozen=True)
class Binary:
    op: str  # "AND", "=", "+", ...
    left: Any
    right: Any


@dataclass(frozen=True)
class Like:
    operand: Any
    pattern: str
    negated: bool


@dataclass(frozen=True)
class In:
    operand: Any
    items: tuple[Any, ...]
    negated: bool


@dataclass(frozen=True)
class Call:
    name: str  # upper case
    arguments: tuple[Any, ...]


@dataclass(frozen=True)
class Token:
    kind: str  # "string", "int", "word", "op", "end"
    text: str
    position: int
    value: Any = None


def tokenize(text: str) -> list[Token]:
    tokens = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise ParseError(f"unexpected character {text[position]!r}", position)
        kind = match.lastgroup
        assert kind is not None
        raw = match.group()
        if kind == "string":
            quote = raw[0]
            tokens.append(
                Token("string", raw, position, raw[1:-1].replace("\\" + quote, quote))
            )
        elif kind == "word":
            if raw.isdigit():
                tokens.append(Token("int", raw, position, int(raw)))
            else:
                tokens.append(Token("word", raw, position, raw.upper()))
        elif kind == "op":
            tokens.append(Token("op", raw, position, raw))
        position = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


class Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.index = 0

    @property
    def token(self) -> Token:
        return self.tokens[self.index]

    def take(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def at(self, kind: str, *values: str) -> bool:
        token = self.token
        return token.kind == kind and (not values or token.value in values)

    def expect(self, kind: str, value: str) -> Token:
        if not self.at(kind, value):
            raise self.error(f"expected {value!r}")
        return self.take()

    def error(self, message: str) -> ParseError:
        token = self.token
        found = "the end of the expression" if token.kind == "end" else repr(token.text)
        return ParseError(f"{message}, found {found}", token.position)

    def parse(self) -> Any:
        if self.at("end"):
            raise ParseError("empty expression", 0)
        tree = self.logic()
        if not self.at("end"):
            raise self.error("expected an operator or the end of the expression")
        return tree

    # The binary operators, loosest first: each level is left-associative.
    LEVELS = (
        ("word", LOGIC),
        ("op", COMPARISONS),
        ("op", frozenset("+-")),
        ("op", frozenset("*/%")),
    )

    def logic(self, level: int = 0) -> Any:
        """A binary operation at ``level`` of LEVELS (0: AND, OR, XOR), or tighter."""
        if level == len(self.LEVELS):
            return self.postfix()
        kind, ops = self.LEVELS[level]
        left = self.logic(level + 1)
        while self.at(kind, *ops):
            op = self.take().value
            left = Binary(op, left, self.logic(level + 1))
        return left

    def postfix(self) -> Any:
        """``x [NOT] LIKE 'pattern'`` and ``x [NOT] IN (a, b, ...)``."""
        operand = self.unary()
        while True:
            negated = False
            if self.at("word", "NOT") and self.tokens[self.index + 1].value in (
                "LIKE",
                "IN",
            ):
                self.take()
                negated = True
            if self.at("word", "LIKE"):
                self.take()
                if not self.at("string"):
                    raise self.error("LIKE takes a string literal pattern")
                operand = Like(operand, self.take().value, negated)
            elif self.at("word", "IN"):
                self.take()
                operand = In(operand, self.set_items(), negated)
            else:
                return operand

    def set_items(self) -> tuple[Any, ...]:
        self.expect("op", "(")
        items = [self.logic()]
        while self.at("op", ","):
            self.take()
            items.append(self.logic())
        self.expect("op", ")")
        return tuple(items)

    def unary(self) -> Any:
        if self.at("word", "NOT"):
            self.take()
            return Unary("NOT", self.unary())
        if self.at("op", "-", "+"):
            sign = self.take().value
            if self.at("int"):  # a signed integer literal, range-checked as such
                return self.integer(-1 if sign == "-" else 1)
            if sign == "+":
                raise self.error("expected an integer after '+'")
            return Unary("-", self.unary())
        return self.primary()

    def integer(self, sign: int) -> Literal:
        token = self.take()
        value = sign * token.value
        if not INT_MIN <= value <= INT_MAX:
            raise ParseError(
                f"integer literal {value} is out of the 32-bit range", token.position
            )
        return Literal(value)

    def primary(self) -> Any:
        token = self.token
        if token.kind == "int":
            return self.integer(1)
        if token.kind == "string":
            self.take()
            return Literal(token.value)
        if token.kind == "op" and token.value == "(":
            self.take()
            inner = self.logic()
            self.expect("op", ")")
            return inner
        if token.kind == "word":
            self.take()
            word = token.value
            if self.at("op", "(") and word not in KEYWORDS:
                return self.call(token)
            if word in ("TRUE", "FALSE"):
                return Literal(word == "TRUE")
            if word == "EXISTS":
                name = self.take()
                if name.kind not in ("word", "int") or name.value in KEYWORDS:
                    raise ParseError("EXISTS takes an attribute name", name.position)
                return Exists(self.identifier(name))
            if word in KEYWORDS:
                raise ParseError(f"unexpected keyword {token.text}", token.position)
            return Attribute(self.identifier(token))
        raise self.error("expected a value")

    def identifier(self, token: Token) -> str:
        name = token.text.lower()
        if not _IDENTIFIER.fullmatch(name):
            raise ParseError(
                f"{token.text!r} is not an attribute name (lowercase letters and "
                "digits)",
                token.position,
            )
        return name

    def call(self, token: Token) -> Call:
        if not _FUNCTION.fullmatch(token.value):
            raise ParseError(f"{token.text!r} is not a function name", token.position)
        self.expect("op", "(")
        arguments = []
        if not self.at("op", ")"):
            arguments.append(self.logic())
            while self.at("op", ","):
                self.take()
                arguments.append(self.logic())
        self.expect("op", ")")
        return Call(token.value, tuple(arguments))


def parse(text: str) -> Any:
    """The syntax tree of a CESQL expression; ParseError if it is not one."""
    if not isinstance(text, str):
        raise ParseError(f"a CESQL expression is a string, not {type(text).__name__}")
    return Parser(text).parse()
