"""The filter language's typed syntax tree and its two errors.

Nodes are frozen and compare by value, so a parsed filter can be checked against an
expected tree. Field names are stored lowercase; parameter names keep their case.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from clickrec.core.errors import InvalidInput


class FilterError(InvalidInput, ValueError):
    """A filter is well formed but cannot be used: unknown dataset, a bound, a bad value."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class FilterSyntaxError(FilterError):
    """The text is not a filter expression; says where (0-based offset, 1-based line/column)."""

    def __init__(self, problem: str, text: str, position: int, found: str | None = None) -> None:
        self.position = position
        self.line, self.column = line_column(text, position)
        tail = "" if found is None else f", found {found}"
        super().__init__(f"{problem} at line {self.line}, column {self.column}{tail}")


def line_column(text: str, position: int) -> tuple[int, int]:
    """1-based line and column of a 0-based offset."""
    line = text.count("\n", 0, position) + 1
    return line, position - (text.rfind("\n", 0, position) + 1) + 1


class Action(StrEnum):
    INCLUDE = "INCLUDE"
    EXCLUDE = "EXCLUDE"


class Dataset(StrEnum):
    ITEMS = "Items"
    INTERACTIONS = "Interactions"
    CURRENT_USER = "CurrentUser"


class Op(StrEnum):
    IN = "IN"
    NOT_IN = "NOT IN"
    EQ = "="
    NE = "!="
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="

    @property
    def negated(self) -> bool:
        """NOT IN and != are the exact complements of IN and =."""
        return self in (Op.NOT_IN, Op.NE)

    @property
    def ordering(self) -> bool:
        return self in (Op.LT, Op.LE, Op.GT, Op.GE)


@dataclass(frozen=True)
class Literal:
    value: str | float


@dataclass(frozen=True)
class Param:
    """`$NAME`: bound at request time from the filter values."""

    name: str


@dataclass(frozen=True)
class CurrentItemField:
    """`CurrentItem.FIELD`: the item a similar-items request is about."""

    field: str


Operand = Literal | Param | CurrentItemField


@dataclass(frozen=True)
class Field:
    dataset: Dataset
    name: str


@dataclass(frozen=True)
class Comparison:
    field: Field
    op: Op
    operands: tuple[Operand, ...]


@dataclass(frozen=True)
class And:
    parts: tuple[Condition, ...]


@dataclass(frozen=True)
class Or:
    parts: tuple[Condition, ...]


Condition = Comparison | And | Or


def comparisons(cond: Condition | None) -> list[Comparison]:
    """Every comparison in a condition, left to right."""
    if cond is None:
        return []
    if isinstance(cond, Comparison):
        return [cond]
    return [c for part in cond.parts for c in comparisons(part)]


@dataclass(frozen=True)
class Expression:
    """`INCLUDE|EXCLUDE ItemID WHERE <where> [IF <if_>]`."""

    action: Action
    where: Condition
    if_: Condition | None = None

    @property
    def operands(self) -> list[Operand]:
        return [o for c in comparisons(self.where) + comparisons(self.if_) for o in c.operands]

    @property
    def parameters(self) -> frozenset[str]:
        return frozenset(o.name for o in self.operands if isinstance(o, Param))

    @property
    def uses_current_item(self) -> bool:
        return any(isinstance(o, CurrentItemField) for o in self.operands)


@dataclass(frozen=True)
class Chain:
    """Expressions joined by `|`; an item must pass every one that applies."""

    expressions: tuple[Expression, ...]

    @property
    def parameters(self) -> frozenset[str]:
        return frozenset(p for e in self.expressions for p in e.parameters)
