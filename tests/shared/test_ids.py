"""uuid7 ids sort in creation order, even within one millisecond."""

import uuid

from shared.ids import uuid7


def test_ids_made_in_a_row_sort_in_creation_order_and_are_version_7():
    ids = [uuid7() for _ in range(20_000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    parsed = uuid.UUID(ids[0])
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
