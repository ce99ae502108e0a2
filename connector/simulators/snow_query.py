"""ServiceNow encoded queries (``sysparm_query``): parse, filter and sort, for the simulator.

Grammar handled (ServiceNow Table API docs, see protocols.md A.1)::

    query     := group ("^NQ" group)*              groups are OR'ed
    group     := term ("^" term)*                  terms are AND'ed
    term      := condition | "OR" condition        OR joins the previous condition (binds tighter than ^)
               | "ORDERBY" field | "ORDERBYDESC" field | "EQ"
    condition := field op value                    field may be dot-walked: assignment_group.name

Behaviour copied from the real platform, because clients must cope with it:

* A condition whose field the table does not have is dropped, so a typo *widens* the result
  (``glide.invalid_query.returns_no_rows=false``, the default). With ``invalid_returns_no_rows`` the
  whole query matches nothing instead.
* Empty values behave like SQL NULL (KB0715430): they match ``ISEMPTY`` and ``field=`` (empty value) only,
  so ``state!=3`` does not return a record whose state is empty.
* ``LIKE``/``STARTSWITH``/``ENDSWITH`` are case-insensitive; other comparisons are exact.

A column whose every non-empty value is an integer (``state``, ``priority``) compares and sorts
numerically, so ``state<0`` is right and ``-2`` sorts before ``-1``; every other column compares as a
string, which is right for ``YYYY-MM-DD HH:MM:SS`` and 32-hex sys_ids. Not supported: ``javascript:``
values (taken literally), ``^^`` escapes, ``RLQUERY``, relative-date operators.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

Record = dict[str, str]
ValueOf = Callable[[Record, str], str]
"""(record, possibly dot-walked field name) -> raw value, "" when absent."""

_CONDITION = re.compile(
    r"(?P<field>[A-Za-z0-9_.]+?)"
    r"(?P<op>NOT IN|NOT LIKE|ISNOTEMPTY|ISEMPTY|STARTSWITH|ENDSWITH|BETWEEN|LIKE|IN|!=|>=|<=|=|>|<)"
    r"(?P<value>.*)",
    re.DOTALL,
)
_INTEGER = re.compile(r"-?[0-9]+")


@dataclass(frozen=True)
class Condition:
    field: str
    op: str  # "" when the term could not be parsed; such a condition is never valid
    value: str


@dataclass(frozen=True)
class OrderBy:
    field: str
    descending: bool


Clause = tuple[Condition, ...]  # conditions OR'ed together
Group = tuple[Clause, ...]  # clauses AND'ed together


@dataclass(frozen=True)
class EncodedQuery:
    groups: tuple[Group, ...]  # OR'ed together; no groups means "everything"
    order_by: tuple[OrderBy, ...]


def parse_query(text: str) -> EncodedQuery:
    """Parse an encoded query; malformed terms become conditions that are later dropped, never errors."""
    groups: list[Group] = []
    order_by: list[OrderBy] = []
    for group_text in text.split("^NQ"):
        clauses: list[list[Condition]] = []
        for term in group_text.split("^"):
            if term in ("", "EQ"):
                continue
            if term.startswith("ORDERBYDESC"):
                order_by.append(OrderBy(term[len("ORDERBYDESC") :], descending=True))
            elif term.startswith("ORDERBY"):
                order_by.append(OrderBy(term[len("ORDERBY") :], descending=False))
            elif term.startswith("OR") and clauses:
                clauses[-1].append(_parse_condition(term[2:]))
            else:
                clauses.append([_parse_condition(term)])
        if clauses:
            groups.append(tuple(tuple(clause) for clause in clauses))
    return EncodedQuery(groups=tuple(groups), order_by=tuple(order_by))


def _parse_condition(term: str) -> Condition:
    match = _CONDITION.fullmatch(term)
    if match is None:
        return Condition(field=term, op="", value="")
    return Condition(field=match["field"], op=match["op"], value=match["value"])


def select(
    rows: Sequence[Record],
    query: EncodedQuery,
    *,
    value_of: ValueOf,
    is_field: Callable[[str], bool],
    invalid_returns_no_rows: bool = False,
) -> list[Record]:
    """Rows matching ``query``, sorted by its ORDERBY terms with sys_id as the final tie-breaker."""
    groups, has_invalid = _drop_invalid(query.groups, is_field)
    if has_invalid and invalid_returns_no_rows:
        return []
    order_by = [order for order in query.order_by if is_field(order.field)]
    used = {cond.field for group in groups for clause in group for cond in clause}
    used.update(order.field for order in order_by)
    numeric = {field for field in used if _is_integer_column(rows, field, value_of)}

    matched = [row for row in rows if _matches_any(row, groups, value_of, numeric)] if groups else list(rows)
    matched.sort(key=lambda row: row.get("sys_id", ""))
    for order in reversed(order_by):  # stable sorts: the first ORDERBY ends up as the primary key
        matched.sort(key=_sort_key(order.field, order.field in numeric, value_of), reverse=order.descending)
    return matched


def _drop_invalid(
    groups: tuple[Group, ...], is_field: Callable[[str], bool]
) -> tuple[tuple[Group, ...], bool]:
    kept_groups: list[Group] = []
    has_invalid = False
    for group in groups:
        kept_clauses: list[Clause] = []
        for clause in group:
            kept = tuple(cond for cond in clause if cond.op and is_field(cond.field))
            has_invalid = has_invalid or len(kept) != len(clause)
            if kept:
                kept_clauses.append(kept)
        if not kept_clauses:  # every condition of the group was dropped: it matches everything
            return (), True
        kept_groups.append(tuple(kept_clauses))
    return tuple(kept_groups), has_invalid


def _is_integer_column(rows: Sequence[Record], field: str, value_of: ValueOf) -> bool:
    seen = False
    for row in rows:
        value = value_of(row, field)
        if value:
            if _INTEGER.fullmatch(value) is None:
                return False
            seen = True
    return seen


def _sort_key(field: str, numeric: bool, value_of: ValueOf) -> Callable[[Record], tuple[int, int, str]]:
    def key(row: Record) -> tuple[int, int, str]:
        value = value_of(row, field)
        if not value:
            return (0, 0, "")  # empty sorts first, like NULL in the instance database
        if numeric:
            return (1, int(value), "")
        return (1, 0, value)

    return key


def _matches_any(row: Record, groups: tuple[Group, ...], value_of: ValueOf, numeric: set[str]) -> bool:
    return any(
        all(
            any(_matches(cond, value_of(row, cond.field), cond.field in numeric) for cond in clause)
            for clause in group
        )
        for group in groups
    )


def _matches(cond: Condition, actual: str, numeric: bool) -> bool:
    op, want = cond.op, cond.value
    if op == "ISEMPTY":
        return actual == ""
    if op == "ISNOTEMPTY":
        return actual != ""
    if actual == "":
        return op == "=" and want == ""
    if op in ("LIKE", "NOT LIKE"):
        return (want.lower() in actual.lower()) == (op == "LIKE")
    if op == "STARTSWITH":
        return actual.lower().startswith(want.lower())
    if op == "ENDSWITH":
        return actual.lower().endswith(want.lower())
    if op in ("IN", "NOT IN"):
        numbers, texts = _in_list(want, numeric)
        found = actual in texts or (bool(numbers) and int(actual) in numbers)
        return found == (op == "IN")
    if op == "BETWEEN":
        low, _, high = want.partition("@")
        return _compare(actual, low, numeric) >= 0 and _compare(actual, high, numeric) <= 0
    return _ORDER_TESTS[op](_compare(actual, want, numeric))


_ORDER_TESTS: dict[str, Callable[[int], bool]] = {
    "=": lambda order: order == 0,
    "!=": lambda order: order != 0,
    ">": lambda order: order > 0,
    ">=": lambda order: order >= 0,
    "<": lambda order: order < 0,
    "<=": lambda order: order <= 0,
}


@lru_cache(maxsize=64)
def _in_list(want: str, numeric: bool) -> tuple[frozenset[int], frozenset[str]]:
    """An ``IN`` list as sets, so a row is looked up instead of compared with every item (an instance
    uses its index: answering ``sys_idIN`` with 100 ids must not cost 100 scans). Same matches as
    :func:`_compare` item by item: integer items compare as integers in a numeric column, every other
    item as a string."""
    items = want.split(",")
    if not numeric:
        return frozenset(), frozenset(items)
    numbers = frozenset(int(i) for i in items if _INTEGER.fullmatch(i))
    return numbers, frozenset(i for i in items if not _INTEGER.fullmatch(i))


def _compare(actual: str, want: str, numeric: bool) -> int:
    """-1, 0 or 1; integers when the column is numeric and the literal is an integer, else strings."""
    if numeric and _INTEGER.fullmatch(want):
        left, right = int(actual), int(want)
        return (left > right) - (left < right)
    return (actual > want) - (actual < want)
