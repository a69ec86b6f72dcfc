"""Filters compiled to numpy item masks (True = the item may be shown).

Items comparisons with literal values are evaluated once per catalog version (one
ItemColumns object) and cached; a request only evaluates what depends on it ($params,
CurrentUser, CurrentItem, the reader's interactions) and combines boolean arrays.

Semantics:
- A missing value (None, NaN, an empty list, a field no item has) satisfies no IN, =, <,
  <=, >, >=. NOT IN and != are their exact complements, so a missing value satisfies
  them. On a multi-valued field IN means "any of the item's values is listed", NOT IN
  "none is". `=` with several values (a parameter list, a list-valued CurrentItem field)
  means IN; an ordering operator needs exactly one value.
- Numbers compare as numbers: against a numeric field a string is read as a number if it
  is written as one; against a string field a number matches the values written as it.
  Strings match exactly; event types ignore case, as in Personalize.
- A missing or blank $param, or CurrentItem without a current item, skips an EXCLUDE
  expression and is an error for an INCLUDE expression, as in Personalize.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from clickrec.filters.ast import (
    Action,
    And,
    Chain,
    Comparison,
    Condition,
    CurrentItemField,
    Dataset,
    Expression,
    FilterError,
    Literal,
    Op,
    Operand,
    Param,
)
from clickrec.filters.parser import as_number, parse_chain, parse_values

MAX_INTERACTIONS_PER_TYPE = 100

Mask = npt.NDArray[np.bool_]
Value = str | float
_ORDER: dict[Op, Callable[[Any, float], Any]] = {
    Op.LT: np.less,
    Op.LE: np.less_equal,
    Op.GT: np.greater,
    Op.GE: np.greater_equal,
}


@dataclass(frozen=True, eq=False)
class NumericColumn:
    """One number per item; NaN where missing."""

    values: npt.NDArray[np.float64]

    def equal_any(self, values: Sequence[Value]) -> Mask:
        numbers = [x for x in map(as_number, values) if x is not None]
        return np.isin(self.values, numbers)

    def compare(self, op: Op, x: float) -> Mask:
        return np.asarray(_ORDER[op](self.values, x), dtype=bool)


@dataclass(frozen=True, eq=False)
class TermColumn:
    """Zero or more string values per item (author, categories, tags) as posting lists."""

    n_items: int
    codes: Mapping[str, int]
    numbers: npt.NDArray[np.float64]  # per code: the value read as a number, else NaN
    items: npt.NDArray[np.int64]  # item indices grouped by code
    item_codes: npt.NDArray[np.int64]  # the code of each entry of `items`
    offsets: npt.NDArray[np.int64]  # the items of code c are items[offsets[c]:offsets[c + 1]]

    @classmethod
    def from_rows(cls, rows: Sequence[Sequence[object]]) -> TermColumn:
        codes: dict[str, int] = {}
        item_list: list[int] = []
        code_list: list[int] = []
        for i, row in enumerate(rows):
            for v in row:
                term = v if isinstance(v, str) else _term(v)
                code = codes.get(term)
                if code is None:
                    code = codes[term] = len(codes)
                item_list.append(i)
                code_list.append(code)
        item_of = np.array(item_list, dtype=np.int64)
        code_of = np.array(code_list, dtype=np.int64)
        return cls.from_codes(len(rows), item_of, code_of, list(codes))

    @classmethod
    def from_codes(
        cls,
        n_items: int,
        item_of: npt.NDArray[np.int64],
        code_of: npt.NDArray[np.int64],
        terms: list[str],
    ) -> TermColumn:
        """From (item, term code) pairs in item order and the terms by code."""
        order = np.argsort(code_of, kind="stable")
        counts = np.bincount(code_of, minlength=len(terms))
        offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
        numbers = [as_number(t) for t in terms]
        return cls(
            n_items=n_items,
            codes={t: c for c, t in enumerate(terms)},
            numbers=np.array([math.nan if x is None else x for x in numbers], dtype=np.float64),
            items=item_of[order],
            item_codes=code_of[order],
            offsets=offsets,
        )

    def value_mask(self, value: str) -> Mask:
        """Items that have `value` among their values."""
        return self.equal_any((value,))

    def equal_any(self, values: Sequence[Value]) -> Mask:
        mask = np.zeros(self.n_items, dtype=bool)
        for value in values:
            if isinstance(value, str):
                hits = [self.codes[value]] if value in self.codes else []
            else:
                hits = np.flatnonzero(self.numbers == value).tolist()
            for c in hits:
                mask[self.items[self.offsets[c] : self.offsets[c + 1]]] = True
        return mask

    def compare(self, op: Op, x: float) -> Mask:
        """Items with any value that, read as a number, satisfies `op x`."""
        mask = np.zeros(self.n_items, dtype=bool)
        mask[self.items[_ORDER[op](self.numbers, x)[self.item_codes]]] = True
        return mask


ItemColumn = NumericColumn | TermColumn


class ItemColumns(Protocol):
    """What a filter reads from the catalog; field names arrive lowercase."""

    @property
    def n_items(self) -> int: ...

    def column(self, field: str) -> ItemColumn | None: ...


def flatten(record: Mapping[str, Any] | None) -> dict[str, Any]:
    """A record's fields by lowercase name; free `attributes` sit under the built-in fields.

    `text` is dropped: like Personalize, filters do not match unstructured text.
    """
    if record is None:
        return {}
    attributes = record.get("attributes")
    out = {k.lower(): v for k, v in attributes.items()} if isinstance(attributes, dict) else {}
    out.update({k.lower(): v for k, v in record.items() if k not in ("attributes", "text")})
    return out


def column_of(values: Sequence[object]) -> ItemColumn:
    """A column from one raw value per item: numeric if every present value is one number."""
    fast = _typed_column(values)
    if fast is not None:
        return fast
    rows = [_row(v) for v in values]
    if all(len(r) <= 1 and all(_is_number(x) for x in r) for r in rows):
        return NumericColumn(np.array([r[0] if r else math.nan for r in rows], dtype=np.float64))
    return TermColumn.from_rows(rows)


def _typed_column(values: Sequence[object]) -> ItemColumn | None:
    """``column_of`` for the common columns (numbers, strings, lists of strings, each with
    gaps), built by numpy and Arrow rather than per value in Python; None for the rest."""
    kinds = {type(v) for v in values}
    kinds.discard(type(None))
    if not kinds:
        return None
    if kinds <= {int, float}:
        try:
            floats = [math.nan if v is None else v for v in values]
            return NumericColumn(np.array(floats, dtype=np.float64))
        except OverflowError:
            return None
    try:
        if kinds == {str}:
            terms = pa.array(values, pa.string())
            item_of = np.flatnonzero(terms.is_valid().to_numpy(zero_copy_only=False))
            terms = terms.drop_null()
        elif kinds == {list}:
            lists = pa.array(values, pa.list_(pa.string()))
            terms = pc.list_flatten(lists)
            parents = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False)
            valid = terms.is_valid().to_numpy(zero_copy_only=False)
            item_of, terms = parents[valid].astype(np.int64), terms.drop_null()
        else:
            return None
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None  # mixed element types: the general path
    encoded = pc.dictionary_encode(terms)
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    return TermColumn.from_codes(
        len(values), item_of.astype(np.int64), codes, encoded.dictionary.to_pylist()
    )


@dataclass(frozen=True, eq=False)
class ItemTable:
    """The catalog as filter columns; immutable, so build a new one when the catalog changes."""

    item_ids: tuple[str, ...]
    columns: Mapping[str, ItemColumn]

    @classmethod
    def from_records(cls, records: Sequence[Mapping[str, Any]]) -> ItemTable:
        """From item dicts (Item.to_record()); attribute values may be str/number/bool/list."""
        flat = [flatten(r) for r in records]
        names = sorted({k for f in flat for k in f})
        return cls(
            item_ids=tuple(str(f["item_id"]) for f in flat),
            columns={name: column_of([f.get(name) for f in flat]) for name in names},
        )

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def column(self, field: str) -> ItemColumn | None:
        return self.columns.get(field.lower())

    @cached_property
    def _index(self) -> dict[str, int]:
        return {item_id: i for i, item_id in enumerate(self.item_ids)}

    def positions(self, item_ids: Sequence[str]) -> npt.NDArray[np.int64]:
        """Indices of `item_ids` in this table; -1 for ids it does not hold."""
        return np.array([self._index.get(i, -1) for i in item_ids], dtype=np.int64)


@dataclass(frozen=True)
class History:
    """A reader's recent interactions, newest first; indices point into the ItemColumns."""

    item_index: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    event_type: npt.NDArray[np.str_] = field(default_factory=lambda: np.zeros(0, dtype=str))


@dataclass(frozen=True)
class Context:
    """What a request brings: the reader's history and profile, the current item, $values."""

    interactions: History = field(default_factory=History)
    user: Mapping[str, Any] = field(default_factory=dict)
    current_item: Mapping[str, Any] | None = None
    values: Mapping[str, str] = field(default_factory=dict)
    interactions_per_type: int = MAX_INTERACTIONS_PER_TYPE


Compiled = Mask | Callable[["_Request"], Mask]


class CompiledFilter:
    """A filter bound to one catalog version: static parts evaluated, the rest ready to run."""

    def __init__(self, chain: Chain, items: ItemColumns) -> None:
        self.items = items
        self.n_items = items.n_items
        self._base = np.ones(self.n_items, dtype=bool)
        self._steps: list[tuple[Expression, Compiled]] = []
        for expression in chain.expressions:
            where = _compile(expression.where, items)
            if isinstance(where, np.ndarray) and expression.if_ is None:
                _apply(self._base, expression.action, where)
            else:
                self._steps.append((expression, where))

    def mask(self, ctx: Context | None = None) -> Mask:
        out = self._base.copy()
        if not self._steps:
            return out
        request = _Request(self.n_items, ctx if ctx is not None else Context())
        for expression, where in self._steps:
            if request.applies(expression):
                mask = where if isinstance(where, np.ndarray) else where(request)
                _apply(out, expression.action, mask)
        return out


class Filter:
    """A parsed filter chain; `mask` compiles it once per catalog version it is given."""

    def __init__(self, text: str, chain: Chain) -> None:
        self.text = text
        self.chain = chain
        self._compiled: CompiledFilter | None = None

    def __repr__(self) -> str:
        return f"Filter({self.text!r})"

    @property
    def parameters(self) -> frozenset[str]:
        """The `$NAME`s the chain uses (without the `$`)."""
        return self.chain.parameters

    def compile(self, items: ItemColumns) -> CompiledFilter:
        compiled = self._compiled
        if compiled is None or compiled.items is not items:
            compiled = self._compiled = CompiledFilter(self.chain, items)
        return compiled

    def mask(self, items: ItemColumns, ctx: Context | None = None) -> Mask:
        """Which items may be shown (bool, one per item) for this request."""
        return self.compile(items).mask(ctx)


def parse(text: str) -> Filter:
    """Parse a filter chain; raises FilterSyntaxError or FilterError."""
    return Filter(text, parse_chain(text))


def _apply(out: Mask, action: Action, where: Mask) -> None:
    if action is Action.INCLUDE:
        out &= where
    else:
        out &= ~where


def _compile(cond: Condition, items: ItemColumns) -> Compiled:
    if isinstance(cond, Comparison):
        return _compile_comparison(cond, items)
    combine = np.logical_and if isinstance(cond, And) else np.logical_or
    parts = [_compile(p, items) for p in cond.parts]
    static = [p for p in parts if isinstance(p, np.ndarray)]
    dynamic = [p for p in parts if not isinstance(p, np.ndarray)]
    folded = np.asarray(combine.reduce(static), dtype=bool) if static else None
    if not dynamic:
        assert folded is not None
        return folded

    def run(request: _Request) -> Mask:
        out = folded.copy() if folded is not None else dynamic[0](request)
        for part in dynamic if folded is not None else dynamic[1:]:
            combine(out, part(request), out=out)
        return out

    return run


def _compile_comparison(c: Comparison, items: ItemColumns) -> Compiled:
    label = f"{c.field.dataset.value}.{c.field.name.upper()}"
    if c.field.dataset is Dataset.INTERACTIONS:
        return lambda request: request.interacted(c.op, request.values(c.operands))
    column, n = items.column(c.field.name), items.n_items
    literals = [o.value for o in c.operands if isinstance(o, Literal)]
    if len(literals) == len(c.operands):
        return _match(column, n, c.op, literals, label)
    return lambda request: _match(column, n, c.op, request.values(c.operands), label)


def _match(column: ItemColumn | None, n: int, op: Op, values: Sequence[Value], label: str) -> Mask:
    if op.ordering:
        if len(values) > 1:
            raise FilterError(f"{label} {op.value} needs one value, got {len(values)}")
        x = as_number(values[0]) if values else None
        if values and x is None:
            raise FilterError(f"{label} {op.value} compares numbers; {values[0]!r} is not one")
        if column is None or x is None:
            return np.zeros(n, dtype=bool)
        return column.compare(op, x)
    hit = column.equal_any(values) if column is not None else np.zeros(n, dtype=bool)
    return ~hit if op.negated else hit


class _Request:
    """One mask() call: parameter values and the reader's history, each read at most once."""

    def __init__(self, n_items: int, ctx: Context) -> None:
        self.n_items = n_items
        self.ctx = ctx
        self.user = flatten(ctx.user)
        self.current = None if ctx.current_item is None else flatten(ctx.current_item)
        self._params: dict[str, tuple[Value, ...]] = {}
        self._recent: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], list[str]] | None = None

    def has(self, name: str) -> bool:
        value = self.ctx.values.get(name)
        return isinstance(value, str) and value.strip() != ""

    def applies(self, e: Expression) -> bool:
        missing = sorted(f"${p}" for p in e.parameters if not self.has(p))
        if e.uses_current_item and self.current is None:
            missing.append("a current item (CurrentItem)")
        if missing and e.action is Action.EXCLUDE:
            return False
        if missing:
            raise FilterError(f"INCLUDE expression needs {', '.join(missing)}: none was given")
        return e.if_ is None or self.user_test(e.if_)

    def user_test(self, cond: Condition) -> bool:
        if isinstance(cond, And):
            return all(self.user_test(p) for p in cond.parts)
        if isinstance(cond, Comparison):
            column = column_of([self.user.get(cond.field.name)])
            label = f"CurrentUser.{cond.field.name.upper()}"
            return bool(_match(column, 1, cond.op, self.values(cond.operands), label)[0])
        return any(self.user_test(p) for p in cond.parts)

    def values(self, operands: Sequence[Operand]) -> list[Value]:
        out: list[Value] = []
        for o in operands:
            if isinstance(o, Literal):
                out.append(o.value)
            elif isinstance(o, Param):
                out.extend(self.param(o.name))
            elif isinstance(o, CurrentItemField):
                out.extend(_value(v) for v in _row((self.current or {}).get(o.field)))
        return out

    def param(self, name: str) -> tuple[Value, ...]:
        if name not in self._params:
            try:
                self._params[name] = parse_values(self.ctx.values[name])
            except FilterError as err:
                raise FilterError(f"value of ${name} does not parse: {err.message}") from err
        return self._params[name]

    def recent(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], list[str]]:
        """The newest `interactions_per_type` interactions of each event type (case folded):
        their items, their type as an index into the type names, and the names."""
        if self._recent is None:
            history = self.ctx.interactions
            items = np.asarray(history.item_index, dtype=np.int64)
            types = np.asarray(history.event_type, dtype=str)
            if items.shape != types.shape or items.ndim != 1:
                raise FilterError("interactions: item_index and event_type must be equal-length")
            spelled, spelling = np.unique(types, return_inverse=True)
            folded = [t.lower() for t in spelled.tolist()]
            names = list(dict.fromkeys(folded))
            group = np.array([names.index(t) for t in folded], dtype=np.int64)[spelling]
            order = np.argsort(group, kind="stable")
            ranked = group[order]
            rank = np.arange(len(ranked)) - np.searchsorted(ranked, ranked)
            keep = np.sort(order[rank < self.ctx.interactions_per_type])
            self._recent = items[keep], group[keep], names
        return self._recent

    def interacted(self, op: Op, values: Sequence[Value]) -> Mask:
        """Items the reader interacted with by an event type listed (or, for NOT IN, not)."""
        items, group, names = self.recent()
        wanted = {str(v).lower() for v in values}
        listed = np.array([name in wanted or "*" in wanted for name in names], dtype=bool)
        hit = listed[group]
        picked = items[~hit if op.negated else hit]
        picked = picked[(picked >= 0) & (picked < self.n_items)]
        mask = np.zeros(self.n_items, dtype=bool)
        mask[picked] = True
        return mask


def _row(value: object) -> list[object]:
    """A raw field value as the list of its present values (no None, no NaN)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    values = value if isinstance(value, list | tuple | set | frozenset) else [value]
    return [v for v in values if v is not None and v == v]  # NaN != NaN


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _term(value: object) -> str:
    """The string a value is matched as in a string column: 3 and 3.0 both read "3", and
    booleans read as in JSON, "true" and "false"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return str(value)


def _value(value: object) -> Value:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return _term(value)
