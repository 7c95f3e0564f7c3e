"""`crowdloop.codes`: chunked reads coded by Arrow give the categoricals `encode` gave."""

from __future__ import annotations

import numpy as np
import pandas as pd

from crowdloop.codes import ArrowCodes, coded, coded_together, encode


def test_arrow_codes_give_the_categoricals_of_a_python_book() -> None:
    chunks = [["b", "a", None, "b"], ["c", "a"], [], ["d", None, "c"]]
    coder = ArrowCodes()
    book: dict[str, int] = {}
    python_codes = []
    for chunk in chunks:
        coder.add(chunk)
        python_codes.append(encode(chunk, book))
    (codes,), names = coder.codes()
    got = coded(codes, names)
    want = coded(np.concatenate(python_codes), book)
    assert got.tolist() == want.tolist() == ["b", "a", np.nan, "b", "c", "a", "d", np.nan, "c"]
    assert list(got.categories) == list(want.categories) == ["a", "b", "c", "d"]
    np.testing.assert_array_equal(got.codes, want.codes)


def test_two_columns_in_turn_share_one_book_and_one_dtype() -> None:
    coder = ArrowCodes()
    lefts, rights = [["r1", "r2"], ["r3"]], [["r2", "r4"], ["r1"]]
    for left, right in zip(lefts, rights, strict=True):
        coder.add(left)
        coder.add(right)
    (left_codes, right_codes), sides = coder.codes(parts=2)
    left, right = coded_together([left_codes, right_codes], sides)
    assert left.tolist() == ["r1", "r2", "r3"]
    assert right.tolist() == ["r2", "r4", "r1"]
    assert left.dtype is right.dtype
    assert list(left.categories) == ["r1", "r2", "r3", "r4"]
    frame = pd.DataFrame({"left": left, "right": right})
    assert (frame["left"] != frame["right"]).all()  # same categories: comparable


def test_no_chunks_give_empty_codes() -> None:
    (codes,), book = ArrowCodes().codes()
    assert codes.size == 0 and book == []
    assert len(coded(codes, book)) == 0
