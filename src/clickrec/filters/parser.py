"""A tokenizer and hand-written recursive-descent parser for filter expressions.

Grammar (keywords, `ItemID` and dataset names are case-insensitive; field names are
folded to lowercase; `$NAME` keeps its case):

    chain      := expression ("|" expression)*
    expression := ("INCLUDE" | "EXCLUDE") "ItemID" "WHERE" or ["IF" or]
    or         := and ("OR" and)*                AND binds tighter than OR
    and        := atom ("AND" atom)*
    atom       := "(" or ")" | DATASET "." NAME operator operands
    operator   := "IN" | "NOT" "IN" | "=" | "!=" | "<" | "<=" | ">" | ">="
    operands   := "(" operand ("," operand)* ")" | operand
    operand    := STRING | NUMBER | "$" NAME | "CurrentItem" "." NAME

WHERE compares `Items.*` and `Interactions.EVENT_TYPE`; IF compares `CurrentUser.*`.
Bounds: MAX_EXPRESSION_LENGTH characters, MAX_IN_VALUES values per list, MAX_NESTING
levels of parentheses (so recursion depth is bounded whatever the input).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from typing import NoReturn

from clickrec.filters.ast import (
    Action,
    And,
    Chain,
    Comparison,
    Condition,
    CurrentItemField,
    Dataset,
    Expression,
    Field,
    FilterError,
    FilterSyntaxError,
    Literal,
    Op,
    Operand,
    Or,
    Param,
    line_column,
)

MAX_EXPRESSION_LENGTH = 2500
MAX_IN_VALUES = 25
MAX_NESTING = 32

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_PUNCT = ("<=", ">=", "!=", "(", ")", ",", ".", "|", "=", "<", ">")
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "n": "\n", "t": "\t", "r": "\r"}
_SPACE = " \t\r\n"
_DATASETS = {d.value.upper(): d for d in Dataset}
_OPERATORS = {op.value: op for op in Op if not op.value[0].isalpha()}


def as_number(value: str | float) -> float | None:
    """A value as a finite number: numbers as they are, strings only if written as one."""
    if isinstance(value, str):
        if not _NUMBER.fullmatch(value.strip()):
            return None
        value = float(value)
    return float(value) if math.isfinite(value) else None


class Kind(Enum):
    WORD = "word"
    STRING = "string"
    NUMBER = "number"
    PARAM = "parameter"
    PUNCT = "punctuation"
    END = "end"


@dataclass(frozen=True, slots=True)
class Token:
    kind: Kind
    text: str
    value: str | float
    pos: int

    def shown(self) -> str:
        """How an error message names this token."""
        if self.kind is Kind.END:
            return "end of input"
        return repr(self.text if len(self.text) <= 30 else self.text[:27] + "...")


def tokenize(text: str) -> list[Token]:
    """Tokens of `text`, ending with an END token at len(text)."""
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in _SPACE:
            i += 1
            continue
        if ch == '"':
            tok = _string(text, i)
        elif ch == "$":
            word = _WORD.match(text, i + 1)
            if word is None:
                found = repr(text[i + 1]) if i + 1 < n else "end of input"
                raise FilterSyntaxError("expected a parameter name after '$'", text, i + 1, found)
            tok = Token(Kind.PARAM, text[i : word.end()], word.group(), i)
        elif (word := _WORD.match(text, i)) is not None:
            tok = Token(Kind.WORD, word.group(), word.group(), i)
        elif (num := _NUMBER.match(text, i)) is not None:
            value = float(num.group())
            if not math.isfinite(value):
                raise FilterSyntaxError("number out of range", text, i, repr(num.group()))
            tok = Token(Kind.NUMBER, num.group(), value, i)
        else:
            punct = next((p for p in _PUNCT if text.startswith(p, i)), None)
            if punct is None:
                raise FilterSyntaxError("unexpected character", text, i, repr(ch))
            tok = Token(Kind.PUNCT, punct, punct, i)
        tokens.append(tok)
        i += len(tok.text)
    tokens.append(Token(Kind.END, "", "", n))
    return tokens


def _string(text: str, start: int) -> Token:
    out: list[str] = []
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == '"':
            return Token(Kind.STRING, text[start : i + 1], "".join(out), start)
        if ch == "\\":
            esc = text[i + 1 : i + 2]
            if not esc:
                break
            if esc not in _ESCAPES:
                raise FilterSyntaxError("unknown escape in string", text, i, repr("\\" + esc))
            out.append(_ESCAPES[esc])
            i += 2
            continue
        if ch < " " or ch == "\x7f":
            raise FilterSyntaxError("control character in string", text, i, repr(ch))
        out.append(ch)
        i += 1
    raise FilterSyntaxError("unterminated string", text, start)


def _check_length(text: object, what: str) -> str:
    if not isinstance(text, str):
        raise FilterError(f"{what} must be a string, not {type(text).__name__}")
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise FilterError(f"{what} is {len(text)} characters; at most {MAX_EXPRESSION_LENGTH}")
    return text


def parse_chain(text: str) -> Chain:
    """The syntax tree of a filter chain; raises FilterSyntaxError or FilterError."""
    return _Parser(_check_length(text, "a filter expression")).chain()


@lru_cache(maxsize=1024)
def parse_values(text: str) -> tuple[str | float, ...]:
    """The values of a `$NAME` parameter: quoted strings or numbers separated by commas."""
    tokens = tokenize(_check_length(text, "a parameter value"))
    values: list[str | float] = []
    i = 0
    while True:
        tok = tokens[i]
        if tok.kind not in (Kind.STRING, Kind.NUMBER):
            expected = "expected a quoted string or a number"
            raise FilterSyntaxError(expected, text, tok.pos, tok.shown())
        values.append(tok.value)
        sep = tokens[i + 1]
        if sep.kind is Kind.END:
            break
        if sep.text != ",":
            raise FilterSyntaxError("expected ',' or end of input", text, sep.pos, sep.shown())
        i += 2
    if len(values) > MAX_IN_VALUES:
        raise FilterError(f"a parameter has {len(values)} values; at most {MAX_IN_VALUES}")
    return tuple(values)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        tok = self.tokens[self.i]
        self.i = min(self.i + 1, len(self.tokens) - 1)
        return tok

    def fail(self, expected: str) -> NoReturn:
        raise FilterSyntaxError(f"expected {expected}", self.text, self.tok.pos, self.tok.shown())

    def refuse(self, message: str, tok: Token) -> NoReturn:
        line, column = line_column(self.text, tok.pos)
        raise FilterError(f"{message} (at line {line}, column {column})")

    def at_word(self, word: str) -> bool:
        return self.tok.kind is Kind.WORD and self.tok.text.upper() == word.upper()

    def at_punct(self, punct: str) -> bool:
        return self.tok.kind is Kind.PUNCT and self.tok.text == punct

    def word(self, *words: str) -> str:
        if not any(self.at_word(w) for w in words):
            self.fail(" or ".join(repr(w) for w in words))
        return self.take().text.upper()

    def name(self, expected: str) -> Token:
        if self.tok.kind is not Kind.WORD:
            self.fail(expected)
        return self.take()

    def punct(self, punct: str, expected: str | None = None) -> Token:
        if not self.at_punct(punct):
            self.fail(expected or repr(punct))
        return self.take()

    def chain(self) -> Chain:
        expressions = [self.expression()]
        while self.at_punct("|"):
            self.take()
            expressions.append(self.expression())
        return Chain(tuple(expressions))

    def expression(self) -> Expression:
        action = Action(self.word("INCLUDE", "EXCLUDE"))
        self.word("ItemID")
        self.word("WHERE")
        where = self.disjunction(if_=False)
        if_ = None
        if self.at_word("IF"):
            self.take()
            if_ = self.disjunction(if_=True)
        if not (self.at_punct("|") or self.tok.kind is Kind.END):
            allowed = "'AND', 'OR', '|'" if if_ else "'AND', 'OR', 'IF', '|'"
            self.fail(f"{allowed} or end of input")
        return Expression(action, where, if_)

    def disjunction(self, if_: bool) -> Condition:
        parts = [self.conjunction(if_)]
        while self.at_word("OR"):
            self.take()
            parts.append(self.conjunction(if_))
        return parts[0] if len(parts) == 1 else Or(tuple(parts))

    def conjunction(self, if_: bool) -> Condition:
        parts = [self.atom(if_)]
        while self.at_word("AND"):
            self.take()
            parts.append(self.atom(if_))
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def atom(self, if_: bool) -> Condition:
        if not self.at_punct("("):
            return self.comparison(if_)
        opening = self.take()
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise FilterSyntaxError(
                f"parentheses nested more than {MAX_NESTING} deep", self.text, opening.pos
            )
        cond = self.disjunction(if_)
        self.punct(")", "'AND', 'OR' or ')'")
        self.depth -= 1
        return cond

    def comparison(self, if_: bool) -> Comparison:
        start = self.name("a condition such as Items.FIELD IN (...)")
        self.punct(".")
        field = self.name("a field name").text.lower()
        dataset = self.dataset(start, if_)
        op_tok = self.tok
        op = self.operator()
        operands = self.operands(op)
        comparison = Comparison(Field(dataset, field), op, operands)
        self.check(comparison, start, op_tok)
        return comparison

    def dataset(self, tok: Token, if_: bool) -> Dataset:
        dataset = _DATASETS.get(tok.text.upper())
        if dataset is None:
            if tok.text.upper() == "CURRENTITEM":
                self.refuse("CurrentItem may only appear on the right of a comparison", tok)
            expected = "CurrentUser" if if_ else "Items or Interactions"
            self.refuse(f"unknown dataset {tok.text!r}; expected {expected}", tok)
        if if_ and dataset is not Dataset.CURRENT_USER:
            self.refuse(f"an IF condition tests CurrentUser fields, not {tok.text}", tok)
        if not if_ and dataset is Dataset.CURRENT_USER:
            self.refuse("CurrentUser may only appear in an IF condition", tok)
        return dataset

    def operator(self) -> Op:
        if self.at_word("NOT"):
            self.take()
            self.word("IN")
            return Op.NOT_IN
        if self.at_word("IN"):
            self.take()
            return Op.IN
        op = _OPERATORS.get(self.tok.text) if self.tok.kind is Kind.PUNCT else None
        if op is None:
            self.fail("an operator (IN, NOT IN, =, !=, <, <=, >, >=)")
        self.take()
        return op

    def operands(self, op: Op) -> tuple[Operand, ...]:
        if not self.at_punct("("):
            return (self.operand(),)
        opening = self.take()
        operands = [self.operand()]
        while self.at_punct(","):
            self.take()
            operands.append(self.operand())
        self.punct(")", "',' or ')'")
        if len(operands) > 1 and op not in (Op.IN, Op.NOT_IN):
            self.refuse(f"{op.value!r} takes one value; use IN for a list", opening)
        if len(operands) > MAX_IN_VALUES:
            self.refuse(f"a list has {len(operands)} values; at most {MAX_IN_VALUES}", opening)
        return tuple(operands)

    def operand(self) -> Operand:
        tok = self.tok
        if tok.kind in (Kind.STRING, Kind.NUMBER):
            return Literal(self.take().value)
        if tok.kind is Kind.PARAM:
            return Param(str(self.take().value))
        if self.at_word("CurrentItem"):
            self.take()
            self.punct(".")
            return CurrentItemField(self.name("a field name").text.lower())
        self.fail("a value (a quoted string, a number, $PARAMETER or CurrentItem.FIELD)")

    def check(self, c: Comparison, start: Token, op_tok: Token) -> None:
        """Refuse comparisons that parse but mean nothing."""
        if c.field.dataset is Dataset.INTERACTIONS:
            if c.field.name != "event_type":
                self.refuse("Interactions can only be filtered by EVENT_TYPE", start)
            if c.op.ordering:
                self.refuse("EVENT_TYPE takes IN, NOT IN, = or !=", op_tok)
            if any(isinstance(o, CurrentItemField) for o in c.operands):
                self.refuse("EVENT_TYPE cannot be compared with CurrentItem", op_tok)
            if any(isinstance(o, Literal) and not isinstance(o.value, str) for o in c.operands):
                self.refuse("event types are quoted strings", op_tok)
        if c.op.ordering:
            for o in c.operands:
                if isinstance(o, Literal) and as_number(o.value) is None:
                    self.refuse(f"{c.op.value!r} compares numbers; {o.value!r} is not one", op_tok)
