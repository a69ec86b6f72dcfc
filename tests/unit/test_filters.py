"""Filter expressions: the parser, its errors and its bounds."""

from __future__ import annotations

import contextlib
import random

import pytest

from clickrec.core.errors import InvalidInput
from clickrec.filters import (
    MAX_EXPRESSION_LENGTH,
    MAX_IN_VALUES,
    MAX_NESTING,
    Context,
    FilterError,
    FilterSyntaxError,
    ItemTable,
    parse,
    parse_values,
)
from clickrec.filters.ast import (
    Action,
    And,
    Comparison,
    CurrentItemField,
    Dataset,
    Expression,
    Field,
    Literal,
    Op,
    Or,
    Param,
)

ITEMS, INTERACTIONS, USER = Dataset.ITEMS, Dataset.INTERACTIONS, Dataset.CURRENT_USER


def cmp(dataset: Dataset, name: str, op: Op, *operands: object) -> Comparison:
    wrapped = tuple(
        o if isinstance(o, Param | CurrentItemField) else Literal(o)  # type: ignore[arg-type]
        for o in operands
    )
    return Comparison(Field(dataset, name), op, wrapped)


def only(text: str) -> Expression:
    (expression,) = parse(text).chain.expressions
    return expression


# -- every construct -------------------------------------------------------------------------


def test_item_condition_with_string_list() -> None:
    e = only('EXCLUDE ItemID WHERE Items.GENRE IN ("comedy", "drama")')
    assert e == Expression(Action.EXCLUDE, cmp(ITEMS, "genre", Op.IN, "comedy", "drama"))


@pytest.mark.parametrize(
    ("text", "op", "value"),
    [
        ("Items.PRICE = 10", Op.EQ, 10.0),
        ("Items.PRICE != 10", Op.NE, 10.0),
        ("Items.PRICE < -2.5", Op.LT, -2.5),
        ("Items.PRICE <= 1e3", Op.LE, 1000.0),
        ("Items.PRICE > (10)", Op.GT, 10.0),
        ("Items.PRICE >= 0.5E-1", Op.GE, 0.05),
        ('Items.BRAND NOT IN ("x")', Op.NOT_IN, "x"),
        ('Items.BRAND not   in ("x")', Op.NOT_IN, "x"),
        ('Items.BRAND IN "x"', Op.IN, "x"),
    ],
)
def test_every_operator(text: str, op: Op, value: str | float) -> None:
    e = only(f"INCLUDE ItemID WHERE {text}")
    assert isinstance(e.where, Comparison)
    assert (e.where.op, e.where.operands) == (op, (Literal(value),))


def test_parameters_current_item_and_if() -> None:
    f = parse(
        'INCLUDE ItemID WHERE Items.CATEGORY IN ($CATS, "news") '
        "AND Items.PRICE < CurrentItem.PRICE "
        "IF CurrentUser.AGE > 30 AND CurrentUser.SEGMENT = $SEG"
    )
    (e,) = f.chain.expressions
    assert e.where == And(
        (
            cmp(ITEMS, "category", Op.IN, Param("CATS"), "news"),
            cmp(ITEMS, "price", Op.LT, CurrentItemField("price")),
        )
    )
    assert e.if_ == And((cmp(USER, "age", Op.GT, 30.0), cmp(USER, "segment", Op.EQ, Param("SEG"))))
    assert f.parameters == {"CATS", "SEG"}
    assert e.uses_current_item


def test_interactions_and_chain() -> None:
    f = parse(
        'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("*") | '
        "INCLUDE ItemID WHERE Interactions.event_type IN ($EVENT) | "
        "EXCLUDE ItemID WHERE Items.AUTHOR = CurrentItem.AUTHOR"
    )
    assert [e.action for e in f.chain.expressions] == [
        Action.EXCLUDE,
        Action.INCLUDE,
        Action.EXCLUDE,
    ]
    assert f.chain.expressions[0].where == cmp(INTERACTIONS, "event_type", Op.IN, "*")
    assert f.parameters == {"EVENT"}


def test_and_binds_tighter_than_or_and_parentheses_regroup() -> None:
    a = cmp(ITEMS, "a", Op.EQ, 1.0)
    b = cmp(ITEMS, "b", Op.EQ, 2.0)
    c = cmp(ITEMS, "c", Op.EQ, 3.0)
    where = "Items.A = 1 OR Items.B = 2 AND Items.C = 3"
    assert only(f"INCLUDE ItemID WHERE {where}").where == Or((a, And((b, c))))
    grouped = "(Items.A = 1 OR Items.B = 2) AND Items.C = 3"
    assert only(f"INCLUDE ItemID WHERE {grouped}").where == And((Or((a, b)), c))
    assert only("INCLUDE ItemID WHERE ((((Items.A = 1))))").where == a


def test_keywords_datasets_and_fields_are_case_insensitive() -> None:
    upper = parse('INCLUDE ItemID WHERE Items.GENRE IN ("X") IF CurrentUser.AGE > 3')
    lower = parse('include itemid where items.genre in ("X") if currentuser.age > 3')
    mixed = parse('Include ITEMID Where ITEMS.Genre In ("X") If CURRENTUSER.Age > 3')
    assert upper.chain == lower.chain == mixed.chain


def test_strings_take_backslash_escapes_and_keep_case() -> None:
    e = only(r'INCLUDE ItemID WHERE Items.T IN ("say \"hi\"", "a\\b", "tab\there", "Ünï ✓")')
    assert e.where == cmp(ITEMS, "t", Op.IN, 'say "hi"', "a\\b", "tab\there", "Ünï ✓")


def test_parameter_names_keep_their_case() -> None:
    assert parse("INCLUDE ItemID WHERE Items.X IN ($Genre)").parameters == {"Genre"}


def test_whitespace_and_newlines_anywhere() -> None:
    text = 'EXCLUDE\n\tItemID\r\n  WHERE Items . GENRE\nIN\n(\n"a"\n,\n"b"\n)\n'
    assert only(text).where == cmp(ITEMS, "genre", Op.IN, "a", "b")


def test_parameter_values_parse_as_personalize_sends_them() -> None:
    assert parse_values('"comedy","drama"') == ("comedy", "drama")
    assert parse_values(' "a, b" , 10, "20", -1.5 ') == ("a, b", 10.0, "20", -1.5)
    with pytest.raises(FilterError, match="expected a quoted string or a number"):
        parse_values("comedy")
    with pytest.raises(FilterError, match="expected ',' or end of input"):
        parse_values('"a" "b"')


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "column", "message"),
    [
        (
            'INCLUDE ItemID WHERE Items.X IN ("a" AND Items.Y IN ("b"))',
            1,
            38,
            "expected ',' or ')' at line 1, column 38, found 'AND'",
        ),
        (
            'INCLUDE ItemID WHERE (Items.X IN ("a") OR Items.Y = 2',
            1,
            54,
            "expected 'AND', 'OR' or ')' at line 1, column 54, found end of input",
        ),
        ("", 1, 1, "expected 'INCLUDE' or 'EXCLUDE' at line 1, column 1, found end of input"),
        ("INCLUDE UserID WHERE Items.X = 1", 1, 9, "expected 'ItemID'"),
        ('INCLUDE ItemID\nWHERE Items.X IN ("a")\n  AND Items.Y ~ 3', 3, 15, "found '~'"),
        ("EXCLUDE ItemID WHERE Items.X IN ()", 1, 34, "expected a value"),
        ('EXCLUDE ItemID WHERE Items.X IN ("a") |', 1, 40, "found end of input"),
        ('EXCLUDE ItemID WHERE Items.X IN ("a) | x', 1, 34, "unterminated string"),
        ('EXCLUDE ItemID WHERE Items.X IN ("a\\q")', 1, 36, "unknown escape"),
        ("EXCLUDE ItemID WHERE Items.X IN ($)", 1, 35, "expected a parameter name"),
        ("EXCLUDE ItemID WHERE Items.X IN (1e999)", 1, 34, "number out of range"),
        ('EXCLUDE ItemID WHERE Items.X IN ("a") IF', 1, 41, "found end of input"),
        ('EXCLUDE ItemID WHERE Items.X "a"', 1, 30, "expected an operator"),
        ("EXCLUDE ItemID WHERE Items X", 1, 28, "expected '.'"),
        ('EXCLUDE ItemID WHERE Items.X IN ("a") Items', 1, 39, "found 'Items'"),
    ],
)
def test_syntax_errors_say_where(text: str, line: int, column: int, message: str) -> None:
    with pytest.raises(FilterSyntaxError) as caught:
        parse(text)
    err = caught.value
    assert (err.line, err.column) == (line, column)
    assert text[: err.position].count("\n") + 1 == line
    assert message in str(err)


def test_errors_are_value_errors_the_api_maps_to_422() -> None:
    with pytest.raises(FilterSyntaxError) as caught:
        parse("nonsense")
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, InvalidInput)
    assert isinstance(caught.value, FilterError)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('INCLUDE ItemID WHERE Foo.X IN ("a")', "unknown dataset 'Foo'"),
        ('INCLUDE ItemID WHERE Users.X IN ("a")', "unknown dataset 'Users'"),
        ('INCLUDE ItemID WHERE CurrentUser.X IN ("a")', "only appear in an IF"),
        ('INCLUDE ItemID WHERE Items.X IN ("a") IF Items.Y = 1', "tests CurrentUser fields"),
        ('INCLUDE ItemID WHERE CurrentItem.X IN ("a")', "right of a comparison"),
        ('INCLUDE ItemID WHERE Interactions.ITEM_ID IN ("a")', "only be filtered by EVENT_TYPE"),
        ("INCLUDE ItemID WHERE Interactions.EVENT_TYPE > 3", "takes IN, NOT IN"),
        ("INCLUDE ItemID WHERE Interactions.EVENT_TYPE IN (3)", "quoted strings"),
        ("INCLUDE ItemID WHERE Interactions.EVENT_TYPE IN CurrentItem.X", "CurrentItem"),
        ('INCLUDE ItemID WHERE Items.PRICE > "cheap"', "compares numbers"),
        ('INCLUDE ItemID WHERE Items.X = ("a", "b")', "use IN for a list"),
    ],
)
def test_semantic_errors(text: str, message: str) -> None:
    with pytest.raises(FilterError, match=message) as caught:
        parse(text)
    assert "line 1, column" in str(caught.value)


# -- bounds ----------------------------------------------------------------------------------


def in_list(n: int) -> str:
    return "INCLUDE ItemID WHERE Items.X IN (" + ", ".join(f'"v{i}"' for i in range(n)) + ")"


def test_expression_length_bound() -> None:
    head = 'INCLUDE ItemID WHERE Items.X IN ("'
    fits = head + "a" * (MAX_EXPRESSION_LENGTH - len(head) - 2) + '")'
    assert len(fits) == MAX_EXPRESSION_LENGTH
    parse(fits)
    with pytest.raises(FilterError, match=f"at most {MAX_EXPRESSION_LENGTH}"):
        parse(fits + " ")


def test_values_per_list_bound() -> None:
    parse(in_list(MAX_IN_VALUES))
    with pytest.raises(FilterError, match=f"26 values; at most {MAX_IN_VALUES}"):
        parse(in_list(MAX_IN_VALUES + 1))
    with pytest.raises(FilterError, match="at most"):
        parse_values(",".join(['"v"'] * (MAX_IN_VALUES + 1)))


def test_nesting_bound() -> None:
    def nested(depth: int) -> str:
        return "INCLUDE ItemID WHERE " + "(" * depth + "Items.X = 1" + ")" * depth

    parse(nested(MAX_NESTING))
    with pytest.raises(FilterSyntaxError, match="nested more than") as caught:
        parse(nested(MAX_NESTING + 1))
    assert caught.value.column == len("INCLUDE ItemID WHERE ") + MAX_NESTING + 1


# -- hostile input ---------------------------------------------------------------------------

HOSTILE = [
    "(" * 2000,
    "INCLUDE ItemID WHERE " + "(" * 1200 + 'Items.X IN ("a")' + ")" * 1200,
    "INCLUDE ItemID WHERE " + "(" * 2400,
    "INCLUDE ItemID WHERE Items.X IN (" + '"a",' * 600 + '"a")',
    "x" * 1_000_000,
    '"',
    'INCLUDE ItemID WHERE Items.X IN ("abc',
    'INCLUDE ItemID WHERE Items.X IN ("abc\\',
    'INCLUDE ItemID WHERE Items.X IN ("a\nb")',
    "\x00",
    "INCLUDE\x00ItemID WHERE Items.X = 1",
    'INCLUDE ItemID WHERE Items.X IN ("a\x00")',
    "INCLUDE ItemID WHERE Items.\x00 = 1",
    "INCLUDE ItemID WHERE Items.X = 1 | \x00",
    "\ud800",
    "INCLUDE ItemID WHERE Items.X = 1 ;DROP TABLE items",
    "INCLUDE ItemID WHERE Items.X = __import__('os')",
    "INCLUDE ItemID WHERE Items.X IN ($)",
    "INCLUDE ItemID WHERE Items.X = 9" * 200,
    "INCLUDE ItemID WHERE Items.X = " + "9" * 400,
    "|" * 50,
    "ＩＮＣＬＵＤＥ ItemID WHERE Items.X = 1",
]


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_input_is_refused_with_a_filter_error(text: str) -> None:
    with pytest.raises(FilterError):
        parse(text)


@pytest.mark.parametrize("value", [None, b"INCLUDE", 42])
def test_non_string_input_is_a_filter_error(value: object) -> None:
    with pytest.raises(FilterError, match="must be a string"):
        parse(value)  # type: ignore[arg-type]


PIECES = [
    "INCLUDE", "EXCLUDE", "ItemID", "WHERE", "IF", "AND", "OR", "NOT", "IN", "Items", ".",
    "Interactions", "CurrentUser", "CurrentItem", "EVENT_TYPE", "GENRE", "(", ")", ",", "|",
    "=", "!=", "<", "<=", ">", ">=", '"a"', '"*"', "$P", "1", "-2.5", '"', "\\", "\x00", "\n",
    " ", "$", "é", "1e5", "!", "-",
]  # fmt: skip


def test_random_token_soup_only_ever_raises_filter_errors() -> None:
    rng = random.Random(7)
    table = ItemTable.from_records([{"item_id": "a", "genre": "x"}])
    for _ in range(3000):
        text = " ".join(rng.choice(PIECES) for _ in range(rng.randint(0, 25)))
        with contextlib.suppress(FilterError):
            parse(text).mask(table, Context(values={"P": '"a"'}))


def test_mutated_valid_expressions_only_ever_raise_filter_errors() -> None:
    rng = random.Random(11)
    base = (
        'INCLUDE ItemID WHERE (Items.GENRE IN ("a", $P) OR Items.PRICE >= 2) '
        "AND Items.AUTHOR != CurrentItem.AUTHOR IF CurrentUser.AGE > 3 | "
        'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE NOT IN ("*")'
    )
    table = ItemTable.from_records([{"item_id": "a", "genre": "x", "price": 3}])
    ctx = Context(values={"P": '"a"'}, current_item={"author": "z"}, user={"age": 5})
    outcomes = set()
    for _ in range(3000):
        chars = list(base)
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(chars))
            if rng.random() < 0.5:
                del chars[pos]
            else:
                chars.insert(pos, rng.choice('()",$.|=<>!\\ \x00aZ9'))
        try:
            mask = parse("".join(chars)).mask(table, ctx)
        except FilterError:
            outcomes.add("refused")
            continue
        assert mask.dtype == bool and mask.shape == (1,)
        outcomes.add("ran")
    assert outcomes == {"refused", "ran"}


def test_after_an_if_condition_if_is_no_longer_expected() -> None:
    with pytest.raises(FilterSyntaxError, match="expected 'AND', 'OR', 'IF', '|'"):
        parse("INCLUDE ItemID WHERE Items.X = 1 Items")
    with pytest.raises(FilterSyntaxError, match=r"expected 'AND', 'OR', '\|' or end of input"):
        parse("INCLUDE ItemID WHERE Items.X = 1 IF CurrentUser.A = 1 IF")


def test_numbers_written_as_strings_must_be_finite() -> None:
    with pytest.raises(FilterError, match="compares numbers"):
        parse('INCLUDE ItemID WHERE Items.PRICE > "1e999"')
