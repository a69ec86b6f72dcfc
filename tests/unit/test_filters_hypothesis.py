"""Property tests of the filter parser: any text is a filter or a FilterError, never a crash;
every well-formed expression parses and names its parameters."""

from __future__ import annotations

import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from clickrec.filters import FilterError, parse

PROFILE = settings(max_examples=300, derandomize=True, deadline=None, database=None)

FIELDS = st.sampled_from(["CATEGORIES", "AUTHOR", "PUBLISHED_AT", "tags", "Premium"])
NAMES = st.from_regex(r"[A-Z][A-Z0-9_]{0,10}", fullmatch=True)
STRINGS = st.text(
    alphabet=st.characters(blacklist_categories=["Cs", "Cc"], blacklist_characters='"\\'),
    max_size=20,
).map(lambda s: f'"{s}"')
NUMBERS = st.integers(-(10**9), 10**9).map(str)


@st.composite
def expressions(draw: st.DrawFn) -> tuple[str, set[str]]:
    params: set[str] = set()

    def comparison() -> str:
        field = draw(FIELDS)
        if draw(st.booleans()):
            name = draw(NAMES)
            params.add(name)
            values = f"${name}"
        else:
            values = ", ".join(draw(st.lists(STRINGS | NUMBERS, min_size=1, max_size=5)))
        op = draw(st.sampled_from(["IN", "NOT IN"]))
        return f"Items.{field} {op} ({values})"

    parts = [comparison() for _ in range(draw(st.integers(1, 4)))]
    joined = parts[0]
    for part in parts[1:]:
        joined = f"{joined} {draw(st.sampled_from(['AND', 'OR', 'and']))} {part}"
    action = draw(st.sampled_from(["INCLUDE", "EXCLUDE", "exclude"]))
    return f"{action} ItemID WHERE {joined}", params


@PROFILE
@given(st.text(max_size=300))
def test_any_text_is_a_filter_or_a_filter_error(text: str) -> None:
    with contextlib.suppress(FilterError):
        parse(text)


@PROFILE
@given(st.lists(expressions(), min_size=1, max_size=3))
def test_well_formed_chains_parse_and_name_their_parameters(
    chain: list[tuple[str, set[str]]],
) -> None:
    text = " | ".join(expr for expr, _ in chain)
    parsed = parse(text)
    assert parsed.parameters == frozenset(p for _, params in chain for p in params)
    assert len(parsed.chain.expressions) == len(chain)


@PROFILE
@given(expressions(), st.integers(0, 200), st.text(min_size=1, max_size=3))
def test_a_well_formed_expression_broken_anywhere_fails_cleanly(
    expr: tuple[str, set[str]], at: int, junk: str
) -> None:
    text = expr[0]
    cut = min(at, len(text))
    with contextlib.suppress(FilterError):
        parse(text[:cut] + junk + text[cut:])
