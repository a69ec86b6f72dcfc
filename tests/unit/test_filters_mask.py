"""Filter masks over a small hand-made catalog whose expected answers are written out."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from clickrec.filters import Context, FilterError, History, ItemTable, parse

CATALOG: list[dict[str, Any]] = [
    {
        "item_id": "p0",
        "categories": ["news", "tech"],
        "tags": ["ai"],
        "author": "ann",
        "published_at": 100.0,
        "language": "en",
        "attributes": {"price": 10, "premium": True, "sizes": ["S", "M"], "year": "2020"},
    },
    {
        "item_id": "p1",
        "categories": ["sport"],
        "tags": [],
        "author": "bob",
        "published_at": 200.0,
        "language": "fr",
        "attributes": {"price": 25.5, "premium": False},
    },
    {
        "item_id": "p2",
        "categories": [],
        "tags": ["ai", "ml"],
        "author": None,
        "published_at": None,
        "language": "en",
        "attributes": {"price": None, "year": "2021"},
    },
    {
        "item_id": "p3",
        "categories": ["tech"],
        "tags": ["ml"],
        "author": "ann",
        "published_at": 300.0,
        "language": None,
        "attributes": {"Price": 5, "sizes": ["L"], "year": 2019},
    },
    {"item_id": "p4", "categories": ["news"], "author": "cy", "published_at": 400.0},
]
TABLE = ItemTable.from_records(CATALOG)
ALL = ["p0", "p1", "p2", "p3", "p4"]


def shown(text: str, ctx: Context | None = None, table: ItemTable = TABLE) -> list[str]:
    mask = parse(text).mask(table, ctx)
    assert mask.dtype == np.bool_ and mask.shape == (table.n_items,)
    return [table.item_ids[i] for i in np.flatnonzero(mask)]


def where(condition: str, ctx: Context | None = None) -> list[str]:
    """The items an INCLUDE keeps; the EXCLUDE of the same condition must keep the rest."""
    kept = shown(f"INCLUDE ItemID WHERE {condition}", ctx)
    dropped = shown(f"EXCLUDE ItemID WHERE {condition}", ctx)
    assert sorted(kept + dropped) == ALL
    return kept


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("Items.PRICE = 10", ["p0"]),
        ("Items.PRICE != 10", ["p1", "p2", "p3", "p4"]),
        ("Items.PRICE < 10", ["p3"]),
        ("Items.PRICE <= 10", ["p0", "p3"]),
        ("Items.PRICE > 10", ["p1"]),
        ("Items.PRICE >= 25.5", ["p1"]),
        ("Items.PRICE IN (5, 10)", ["p0", "p3"]),
        ("Items.PRICE NOT IN (5, 10)", ["p1", "p2", "p4"]),
        ('Items.PRICE = "10"', ["p0"]),
        ('Items.PRICE > "7"', ["p0", "p1"]),
        ('Items.PRICE IN ("cheap")', []),
        ("Items.PUBLISHED_AT > 150", ["p1", "p3", "p4"]),
    ],
)
def test_numeric_field(condition: str, expected: list[str]) -> None:
    assert where(condition) == expected


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ('Items.AUTHOR = "ann"', ["p0", "p3"]),
        ('Items.AUTHOR != "ann"', ["p1", "p2", "p4"]),
        ('Items.AUTHOR IN ("bob", "cy")', ["p1", "p4"]),
        ('Items.AUTHOR NOT IN ("ann")', ["p1", "p2", "p4"]),
        ('Items.AUTHOR = "ANN"', []),
        ('Items.ITEM_ID IN ("p1", "p3", "nope")', ["p1", "p3"]),
        ('Items.PREMIUM = "true"', ["p0"]),
        ('Items.PREMIUM = "false"', ["p1"]),
        ("Items.YEAR > 2019.5", ["p0", "p2"]),
        ("Items.YEAR = 2019", ["p3"]),
        ('Items.YEAR IN ("2019", "2021")', ["p2", "p3"]),
    ],
)
def test_string_field(condition: str, expected: list[str]) -> None:
    assert where(condition) == expected


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ('Items.CATEGORIES IN ("tech")', ["p0", "p3"]),
        ('Items.CATEGORIES IN ("sport", "news")', ["p0", "p1", "p4"]),
        ('Items.CATEGORIES NOT IN ("tech")', ["p1", "p2", "p4"]),
        ('Items.CATEGORIES = "news"', ["p0", "p4"]),
        ('Items.CATEGORIES != "news"', ["p1", "p2", "p3"]),
        ('Items.TAGS IN ("ml")', ["p2", "p3"]),
        ('Items.SIZES IN ("M", "L")', ["p0", "p3"]),
        ('Items.CATEGORIES IN ("none-such")', []),
    ],
)
def test_multi_valued_field_matches_any_value(condition: str, expected: list[str]) -> None:
    assert where(condition) == expected


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ('Items.LANGUAGE IN ("en")', ["p0", "p2"]),
        ('Items.LANGUAGE NOT IN ("en")', ["p1", "p3", "p4"]),
        ("Items.PUBLISHED_AT >= 0", ["p0", "p1", "p3", "p4"]),
        ("Items.PUBLISHED_AT != 100", ["p1", "p2", "p3", "p4"]),
        ('Items.NO_SUCH_FIELD IN ("x")', []),
        ('Items.NO_SUCH_FIELD NOT IN ("x")', ALL),
        ("Items.NO_SUCH_FIELD < 3", []),
    ],
)
def test_missing_values_fail_comparisons_and_pass_their_negations(
    condition: str, expected: list[str]
) -> None:
    assert where(condition) == expected


def test_and_binds_tighter_than_or() -> None:
    a, b, c = 'Items.AUTHOR = "ann"', 'Items.AUTHOR = "bob"', "Items.PRICE > 6"
    assert where(f"{a} OR {b} AND {c}") == ["p0", "p1", "p3"]
    assert where(f"({a} OR {b}) AND {c}") == ["p0", "p1"]
    assert where(f"{c} AND {b} OR {a}") == ["p0", "p1", "p3"]
    assert where(f"{c} AND ({b} OR {a})") == ["p0", "p1"]


def test_chain_applies_every_expression() -> None:
    text = (
        'INCLUDE ItemID WHERE Items.CATEGORIES IN ("news", "tech") | '
        'EXCLUDE ItemID WHERE Items.AUTHOR = "ann"'
    )
    assert shown(text) == ["p4"]


# -- parameters ------------------------------------------------------------------------------


def test_parameters_bind_at_request_time() -> None:
    text = "INCLUDE ItemID WHERE Items.CATEGORIES IN ($CATS) AND Items.PRICE < $MAX"
    assert shown(text, Context(values={"CATS": '"tech","sport"', "MAX": "20"})) == ["p0", "p3"]
    assert shown(text, Context(values={"CATS": '"tech"', "MAX": '"8"'})) == ["p3"]


def test_missing_parameter_skips_an_exclude() -> None:
    text = (
        "EXCLUDE ItemID WHERE Items.CATEGORIES IN ($CATS) | EXCLUDE ItemID WHERE Items.PRICE > 20"
    )
    assert shown(text, Context(values={"CATS": '"tech"'})) == ["p2", "p4"]
    assert shown(text) == ["p0", "p2", "p3", "p4"]
    assert shown(text, Context(values={"CATS": "  "})) == ["p0", "p2", "p3", "p4"]


def test_missing_parameter_in_an_include_is_an_error() -> None:
    with pytest.raises(FilterError, match=r"\$CATS"):
        shown("INCLUDE ItemID WHERE Items.CATEGORIES IN ($CATS)", Context(values={"cats": '"a"'}))


def test_bad_parameter_values_are_filter_errors() -> None:
    text = "INCLUDE ItemID WHERE Items.CATEGORIES IN ($CATS) AND Items.PRICE < $MAX"
    ok = '"tech"'
    with pytest.raises(FilterError, match=r"value of \$CATS does not parse"):
        shown(text, Context(values={"CATS": "tech", "MAX": "3"}))
    with pytest.raises(FilterError, match=r"value of \$CATS.*at most 25"):
        shown(text, Context(values={"CATS": ",".join([ok] * 26), "MAX": "3"}))
    with pytest.raises(FilterError, match="needs one value, got 2"):
        shown(text, Context(values={"CATS": ok, "MAX": "3, 4"}))
    with pytest.raises(FilterError, match="'cheap' is not one"):
        shown(text, Context(values={"CATS": ok, "MAX": '"cheap"'}))


# -- CurrentUser and CurrentItem -------------------------------------------------------------


def test_if_current_user_decides_whether_an_expression_applies() -> None:
    text = 'INCLUDE ItemID WHERE Items.LANGUAGE IN ("fr") IF CurrentUser.SEGMENT = "pro"'
    assert shown(text, Context(user={"segment": "pro"})) == ["p1"]
    assert shown(text, Context(user={"segment": "free"})) == ALL
    assert shown(text, Context(user={})) == ALL
    assert shown(text, Context(user={"user_id": "u", "attributes": {"Segment": "pro"}})) == ["p1"]


def test_if_with_and_numbers_and_parameters() -> None:
    text = (
        'EXCLUDE ItemID WHERE Items.CATEGORIES IN ("news") '
        'IF CurrentUser.AGE >= $MIN AND CurrentUser.COUNTRY IN ("de", "fr")'
    )
    adult_fr = Context(user={"age": 40, "country": "fr"}, values={"MIN": "18"})
    assert shown(text, adult_fr) == ["p1", "p2", "p3"]
    young_fr = Context(user={"age": 12, "country": "fr"}, values={"MIN": "18"})
    assert shown(text, young_fr) == ALL
    no_min = Context(user={"age": 40, "country": "fr"})
    assert shown(text, no_min) == ALL


def test_current_item_fields() -> None:
    p0 = CATALOG[0]
    text = "EXCLUDE ItemID WHERE Items.AUTHOR = CurrentItem.AUTHOR"
    assert shown(text, Context(current_item=p0)) == ["p1", "p2", "p4"]
    same_topic = "INCLUDE ItemID WHERE Items.CATEGORIES IN CurrentItem.CATEGORIES"
    assert shown(same_topic, Context(current_item={"categories": ["sport", "news"]})) == [
        "p0",
        "p1",
        "p4",
    ]
    cheaper = "INCLUDE ItemID WHERE Items.PRICE < CurrentItem.PRICE"
    assert shown(cheaper, Context(current_item=p0)) == ["p3"]
    assert shown(cheaper, Context(current_item={"item_id": "x"})) == []


def test_current_item_absent_skips_exclude_and_refuses_include() -> None:
    assert shown("EXCLUDE ItemID WHERE Items.AUTHOR = CurrentItem.AUTHOR") == ALL
    with pytest.raises(FilterError, match="current item"):
        shown("INCLUDE ItemID WHERE Items.AUTHOR = CurrentItem.AUTHOR")


# -- interactions ----------------------------------------------------------------------------


def history(items: list[int], types: list[str]) -> History:
    return History(np.array(items, dtype=np.int64), np.array(types))


READER = history([1, 0, 3, 1, -1, 99], ["click", "read", "click", "READ", "read", "click"])


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ('Interactions.EVENT_TYPE IN ("read")', ["p0", "p1"]),
        ('Interactions.EVENT_TYPE IN ("Read")', ["p0", "p1"]),
        ('Interactions.EVENT_TYPE IN ("click")', ["p1", "p3"]),
        ('Interactions.EVENT_TYPE = "click"', ["p1", "p3"]),
        ('Interactions.EVENT_TYPE IN ("*")', ["p0", "p1", "p3"]),
        ('Interactions.EVENT_TYPE IN ("share")', []),
        ('Interactions.EVENT_TYPE NOT IN ("click")', ["p0", "p1"]),
        ('Interactions.EVENT_TYPE NOT IN ("*")', []),
    ],
)
def test_items_the_reader_interacted_with(condition: str, expected: list[str]) -> None:
    assert where(condition, Context(interactions=READER)) == expected


def test_no_history_means_no_interacted_items() -> None:
    assert where('Interactions.EVENT_TYPE IN ("*")') == []


def test_only_the_newest_interactions_of_each_type_count() -> None:
    table = ItemTable.from_records([{"item_id": f"i{k}"} for k in range(200)])
    reader = history(list(range(150)) + [160], ["click"] * 150 + ["read"])
    kept = shown('EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("*")', Context(reader), table)
    assert kept == [f"i{k}" for k in range(100, 200) if k != 160]
    narrow = Context(reader, interactions_per_type=3)
    clicked = shown('INCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click")', narrow, table)
    assert clicked == ["i0", "i1", "i2"]


def test_interactions_with_a_parameter_chained_with_items() -> None:
    text = (
        "EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ($SEEN) | "
        'INCLUDE ItemID WHERE Items.LANGUAGE = "en"'
    )
    assert shown(text, Context(READER, values={"SEEN": '"read"'})) == ["p2"]
    assert shown(text, Context(READER)) == ["p0", "p2"]


# -- catalog versions ------------------------------------------------------------------------


def test_a_new_catalog_is_seen_and_results_are_private() -> None:
    f = parse('EXCLUDE ItemID WHERE Items.AUTHOR IN ("ann")')
    first = f.mask(TABLE)
    assert first.tolist() == [False, True, True, False, True]
    first[:] = False
    assert f.mask(TABLE).tolist() == [False, True, True, False, True]
    changed = ItemTable.from_records([{**CATALOG[0], "author": "zed"}, CATALOG[3]])
    assert f.mask(changed).tolist() == [True, False]
    assert changed.positions(["p3", "nope", "p0"]).tolist() == [1, -1, 0]


@pytest.mark.parametrize("seed", range(5))
def test_typed_columns_match_the_general_build(seed: int) -> None:
    """The numpy/Arrow build of common columns equals the per-value one it replaces."""
    import random

    from clickrec.filters import NumericColumn, TermColumn, column_of
    from clickrec.filters.compile import _row

    rng = random.Random(seed)
    words = ["a", "b", "c", "", "3", "x y"]
    columns = [
        [rng.choice(words) if rng.random() < 0.8 else None for _ in range(300)],
        [
            [rng.choice(words) for _ in range(rng.randint(0, 3))] if rng.random() < 0.8 else None
            for _ in range(300)
        ],
        [
            rng.uniform(-5, 5) if rng.random() < 0.7 else (None if rng.random() < 0.5 else 7)
            for _ in range(300)
        ],
    ]
    for values in columns:
        fast = column_of(values)
        rows = [_row(v) for v in values]
        if isinstance(fast, NumericColumn):
            expected = np.array([r[0] if r else np.nan for r in rows], dtype=np.float64)
            np.testing.assert_array_equal(fast.values, expected)
            continue
        slow = TermColumn.from_rows(rows)
        assert fast.codes == slow.codes
        for name in ("items", "item_codes", "offsets", "numbers"):
            np.testing.assert_array_equal(getattr(fast, name), getattr(slow, name))
