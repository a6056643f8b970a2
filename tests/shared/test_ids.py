"""uuid7 ids sort in creation order, even within one millisecond."""

import uuid

from shared.db import ids
from shared.db.ids import uuid7, uuid7_many


def test_ids_made_in_a_row_sort_in_creation_order_and_are_version_7():
    made = [uuid7() for _ in range(20_000)]
    assert made == sorted(made)
    assert len(set(made)) == len(made)
    parsed = uuid.UUID(made[0])
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
    assert str(parsed) == made[0]


def test_ids_made_many_at_once_sort_between_those_made_one_by_one():
    made = [uuid7(), *uuid7_many(5000), uuid7(), *uuid7_many(3), uuid7()]
    assert made == sorted(made) and len(set(made)) == len(made)
    assert all(uuid.UUID(value).version == 7 and str(uuid.UUID(value)) == value for value in made)
    assert uuid7_many(0) == []


def test_a_run_that_would_overflow_the_counter_moves_to_the_next_millisecond(monkeypatch):
    before = uuid7()
    # Still within the last id's millisecond, its 74-bit counter two short of its end.
    monkeypatch.setattr(ids, "_last_ms", ids._last_ms + 60_000)
    monkeypatch.setattr(ids, "_last_rand", (1 << ids._RAND_BITS) - 3)
    borrowed = ids._last_ms + 1
    made = uuid7_many(10)
    assert [before, *made] == sorted([before, *made]) and len(set(made)) == 10
    assert {uuid.UUID(value).int >> 80 for value in made} == {borrowed}


def test_ids_made_many_at_once_are_those_made_one_by_one_even_across_a_carry(monkeypatch):
    ms, first = 1_764_466_000_000, (1 << 62) - 3  # the counter carries into its top 12 bits
    monkeypatch.setattr(ids, "_reserve", lambda n: (ms, first))
    assert uuid7_many(6) == [ids._text(ms, rand) for rand in range(first, first + 6)]
