"""Integer codes for string columns read from the database a chunk at a time.

A column of ids read as strings holds one Python (or Arrow) string per row; the same
column as int32 codes into a book of its distinct values holds 4 bytes a row and each
distinct string once. `encode` codes one chunk (extending the book), `coded` turns the
codes of every chunk into a categorical whose categories are sorted as a groupby or
``np.unique`` over the strings sorts them, so frames built this way group, sort and
factorise like the string frames they replace.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


def encode(values: Sequence[Any] | np.ndarray, book: dict[str, int]) -> np.ndarray:
    """int32 codes of ``values`` in ``book`` (new values appended); -1 for None."""
    # Distinct values first (hashed in C, in order of first appearance), then the book
    # looked up and extended without a Python-level step per value (a setdefault per row
    # was ~2 s of the evidence read's CPU at 10^5 answers, six columns). New values get
    # the next codes in order of first appearance, as a lookup per row gave them.
    codes, uniques = pd.factorize(np.asarray(values, dtype=object))
    lookup = np.fromiter(map(book.get, uniques, repeat(-1)), dtype=np.int32, count=len(uniques))
    new = np.flatnonzero(lookup < 0)
    if new.size:
        lookup[new] = np.arange(len(book), len(book) + new.size, dtype=np.int32)
        book.update(zip(uniques[new].tolist(), lookup[new].tolist(), strict=True))
    return np.append(lookup, np.int32(-1))[codes]  # code -1 (None) takes the last entry


def coded(
    codes: np.ndarray,
    book: dict[str, int] | list[str] | pa.Array,
    present: np.ndarray | None = None,
    *,
    arrow: bool = False,
) -> pd.Categorical:
    """A categorical of ``codes`` into ``book`` (its values in code order, as a dict, a
    list or an Arrow string array; -1: missing) over the ``present`` codes
    (default: every value of the book), its categories in sorted order, as a groupby or
    np.unique over the strings sees them.

    With ``arrow`` the categories are a string Index (Arrow-backed: ~24 bytes an id of 20
    characters against a Python string's 72), so the book's strings are freed with it; for
    a reader that takes the categories' values only now and then (a Python string is
    made each time one is read). An Arrow book is sorted by Arrow (UTF-8 byte order is
    code point order, as Python sorts strings), never made into Python strings; it needs
    ``arrow``."""
    return coded_together([codes], book, present, arrow=arrow)[0]


def coded_together(
    columns: Sequence[np.ndarray],
    book: dict[str, int] | list[str] | pa.Array,
    present: np.ndarray | None = None,
    *,
    arrow: bool = False,
) -> list[pd.Categorical]:
    """`coded` of each of ``columns`` (codes into the one ``book``: a pair's two sides),
    sharing one dtype: the categories are made once, not a copy per column (with Arrow
    categories ~8 MiB a copy for the ~190k response ids of 10^6 judgments)."""
    book_size = len(book)
    used = np.arange(book_size) if present is None else present
    rank = np.full(book_size + 1, -1, dtype=np.int32)  # a missing value's code stays -1
    if isinstance(book, pa.Array):
        if not arrow:
            raise ValueError("an Arrow book makes Arrow categories: pass arrow=True")
        values = book.take(pa.array(used))
        by_name = pc.array_sort_indices(values).to_numpy()
        categories = pd.Index(pd.array(values.take(pa.array(by_name)), dtype="str"))
    else:
        names = np.array(list(book), dtype=object)
        by_name = np.argsort(names[used], kind="stable")
        categories = pd.Index(names[used][by_name], dtype="str" if arrow else object)
    rank[used[by_name]] = np.arange(len(used), dtype=np.int32)
    first = pd.Categorical.from_codes(rank[columns[0]], categories=categories)
    # The others take the first's dtype as it is: no second check of the categories.
    out = [first] + [pd.Categorical.from_codes(rank[c], dtype=first.dtype) for c in columns[1:]]
    if arrow:
        # The dtype's check that the categories are unique built and cached their hash
        # table, over a Python string made per Arrow string (measured: 23.5 MiB for 300k
        # ids of 20 characters, where the Arrow strings are 7 MiB), alive with the column.
        # Dropped: the categories are unique by construction (a book's values); a reader
        # that looks categories up (get_indexer, isin) builds it again for as long as it
        # needs it.
        first.categories._reset_cache("_engine")
    return out


def side_codes(left: pd.Series, right: pd.Series) -> tuple[np.ndarray, np.ndarray, pd.Index]:
    """``pd.factorize`` of ``left`` and ``right`` concatenated (two columns of one kind of
    id, a pair's sides: one numbering, by first appearance over ``left`` then ``right``;
    -1 for a missing value), as int32 codes of each column and the uniques it gives.

    On two categoricals with the same categories (`coded`'s sides) from their codes, and
    on integer columns from the integers: the concatenated column and factorize's int64
    codes were 24 bytes a row at once."""
    if (
        isinstance(left.dtype, pd.CategoricalDtype)
        and isinstance(right.dtype, pd.CategoricalDtype)
        and left.cat.categories.equals(right.cat.categories)
    ):
        values = (left.cat.codes.to_numpy(), right.cat.codes.to_numpy())
        size = len(left.cat.categories)
    elif left.dtype.kind == "i" and right.dtype.kind == "i" and len(left) and len(right):
        values = (left.to_numpy(), right.to_numpy())
        size = int(max(values[0].max(), values[1].max())) + 1
    else:
        values = None
    if values is not None and not any(v.size and v.min() < 0 for v in values):
        first = pd.unique(np.concatenate(values))
        among = np.full(size, -1, dtype=np.int32)
        among[first] = np.arange(first.size, dtype=np.int32)
        if isinstance(left.dtype, pd.CategoricalDtype):
            uniques = pd.CategoricalIndex(pd.Categorical.from_codes(first, dtype=left.dtype))
        else:
            uniques = pd.Index(first)
        return among[values[0]], among[values[1]], uniques
    sides, uniques = pd.factorize(pd.concat([left, right], ignore_index=True))
    n = len(left)
    return sides[:n].astype(np.int32), sides[n:].astype(np.int32), uniques
