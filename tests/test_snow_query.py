"""The simulator's ``IN`` / ``NOT IN``: looked up in a set, with exactly the matches (and order) of
comparing each item with :func:`connector.simulators.snow_query._compare`, the rule it replaced."""

from __future__ import annotations

import random

import pytest

from connector.simulators.snow_query import Record, _compare, parse_query, select


def value_of(record: Record, name: str) -> str:
    return record.get(name, "")


def item_by_item(rows: list[Record], field: str, op: str, want: str, numeric: bool) -> list[Record]:
    """The reference: every item compared with :func:`_compare`; empty values match nothing."""

    def hit(row: Record) -> bool:
        actual = row.get(field, "")
        if actual == "":
            return False
        found = any(_compare(actual, item, numeric) == 0 for item in want.split(","))
        return found == (op == "IN")

    return sorted((r for r in rows if hit(r)), key=lambda r: r["sys_id"])


ROWS: list[Record] = [
    {"sys_id": f"{i:032x}", "state": state, "task": task, "number": f"CHG{i:07d}"}
    for i, (state, task) in enumerate(
        [("-2", "a1"), ("3", "b2"), ("03", "c3"), ("4", ""), ("", "a1"), ("-1", "zz"), ("10", "b2,")]
    )
]


@pytest.mark.parametrize("op", ["IN", "NOT IN"])
@pytest.mark.parametrize(
    ("field", "want"),
    [
        ("state", "3,4"),
        ("state", "-2,03"),  # a numeric column: 03 is 3
        ("state", "3,x,-1"),  # a non-integer item in a numeric column compares as text
        ("state", ""),
        ("task", "a1,b2"),
        ("task", "b2,"),  # an empty item; "b2," itself is not an item
        ("task", "A1"),  # exact, case-sensitive
        ("number", "CHG0000002,CHG0000006,nope"),
    ],
)
def test_in_matches_what_comparing_every_item_matches(field: str, want: str, op: str) -> None:
    numeric = field == "state"
    got = select(ROWS, parse_query(f"{field}{op}{want}"), value_of=value_of, is_field=lambda f: True)
    assert got == item_by_item(ROWS, field, op, want, numeric)


def test_a_long_id_list_answers_the_same_rows_in_the_same_order() -> None:
    rng = random.Random(3)
    rows = [
        {"sys_id": f"{rng.getrandbits(128):032x}", "task": f"{rng.getrandbits(20):05x}", "n": str(i)}
        for i in range(2000)
    ]
    ids = [r["task"] for r in rng.sample(rows, 100)] + ["0" * 32, "not-an-id"]
    query = parse_query("taskIN" + ",".join(ids) + "^ORDERBYn")
    got = select(rows, query, value_of=value_of, is_field=lambda f: True)
    want = sorted(item_by_item(rows, "task", "IN", ",".join(ids), numeric=False), key=lambda r: int(r["n"]))
    assert got == want and len(got) >= 100
