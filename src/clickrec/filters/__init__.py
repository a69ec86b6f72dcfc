"""Amazon Personalize's filter expression language, parsed and compiled to item masks.

`parse(text)` gives a `Filter`; `Filter.parameters` names the `$NAME`s a request must (for
INCLUDE) or may (for EXCLUDE) bind; `Filter.mask(ItemTable, Context)` says which items
may be shown.
"""

from clickrec.filters.ast import FilterError, FilterSyntaxError
from clickrec.filters.compile import (
    MAX_INTERACTIONS_PER_TYPE,
    CompiledFilter,
    Context,
    Filter,
    History,
    ItemColumn,
    ItemColumns,
    ItemTable,
    NumericColumn,
    TermColumn,
    column_of,
    flatten,
    parse,
)
from clickrec.filters.parser import (
    MAX_EXPRESSION_LENGTH,
    MAX_IN_VALUES,
    MAX_NESTING,
    parse_chain,
    parse_values,
)

__all__ = [
    "MAX_EXPRESSION_LENGTH",
    "MAX_INTERACTIONS_PER_TYPE",
    "MAX_IN_VALUES",
    "MAX_NESTING",
    "CompiledFilter",
    "Context",
    "Filter",
    "FilterError",
    "FilterSyntaxError",
    "History",
    "ItemColumn",
    "ItemColumns",
    "ItemTable",
    "NumericColumn",
    "TermColumn",
    "column_of",
    "flatten",
    "parse",
    "parse_chain",
    "parse_values",
]
