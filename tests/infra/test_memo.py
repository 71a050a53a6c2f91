"""The bounded memo: never more than `limit` entries; a full memo empties and refills with what is in use."""

from __future__ import annotations

from proxy.infra.memo import Memo


def test_memo_stays_bounded_and_refills() -> None:
    memo: Memo[str, int] = Memo(3)
    assert [memo.put(k, i) for i, k in enumerate("abc")] == [0, 1, 2] and memo.get("b") == 1
    assert memo.put("d", 3) == 3  # full: emptied first, then kept
    assert dict(memo) == {"d": 3} and memo.get("a") is None
    memo.put("d", 4)  # an update of a known key in a non-full memo keeps the others
    memo.put("e", 5)
    assert dict(memo) == {"d": 4, "e": 5} and len(memo) <= memo.limit
