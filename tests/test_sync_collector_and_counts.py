"""The sync's collector pause and the wait's exact counts (sync12).

- A page is read and stored with the collector off; it is on again between pages.
- The wait takes its exact count after the first poll, not before it as well: once when
  everything is in by then, and between busy polls it subtracts what they stored.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from crowdloop.models.domain import Stage, SubmissionPage
from crowdloop.stages import sync
from crowdloop.stages.sync import SyncResult


def test_each_page_is_read_and_stored_with_the_collector_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[tuple[str, bool]] = []

    def pages() -> Iterator[SubmissionPage]:
        for n in range(2):
            seen.append(("read", gc.isenabled()))
            yield SubmissionPage(submissions=(), cursor=f"c{n}", has_more=n == 0)
            seen.append(("between", gc.isenabled()))

    def store(*_args: object) -> None:
        seen.append(("store", gc.isenabled()))

    monkeypatch.setattr(sync, "_store_page", store)
    it = pages()
    result = SyncResult()
    while sync._store_next(it, "c", None, 1, result, 0):  # type: ignore[arg-type]
        seen.append(("loop", gc.isenabled()))
    assert seen == [
        ("read", False),
        ("store", False),
        ("loop", True),
        ("between", False),
        ("read", False),
        ("store", False),
        ("loop", True),
        ("between", False),
    ]
    assert gc.isenabled()


def _wait(
    monkeypatch: pytest.MonkeyPatch, stored: list[int], counts: list[int]
) -> tuple[list[int], list[int]]:
    """Run the wait over polls storing `stored[i]` each, the exact counts answering
    `counts` in turn; returns (the exact counts taken, the progress reported)."""
    polls = iter(stored)
    answers = iter(counts)
    taken: list[int] = []
    progress: list[int] = []

    def outstanding(_campaign: str, _stages: list[Stage] | None = None) -> int:
        taken.append(next(answers))
        return taken[-1]

    monkeypatch.setattr(sync, "outstanding", outstanding)
    monkeypatch.setattr(sync, "sync_stage", lambda *_a: SyncResult(stored=next(polls), pages=1))
    sync.wait_and_sync(
        "c",
        [Stage.COMPARE],
        None,  # type: ignore[arg-type]
        poll_interval_s=0,
        timeout_s=60,
        sleep=lambda _s: None,
        on_progress=lambda _got, left: progress.append(left),
    )
    return taken, progress


def test_everything_in_by_the_first_poll_is_one_count(monkeypatch: pytest.MonkeyPatch) -> None:
    taken, progress = _wait(monkeypatch, stored=[12], counts=[0])
    assert taken == [0] and progress == [0]


def test_busy_polls_are_subtracted_until_the_estimate_says_done(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 10 left after the first poll (counted), then 4 and 6 stored: 6 by the estimate, then
    # the estimate reaches 0 and is checked by a count.
    taken, progress = _wait(monkeypatch, stored=[5, 4, 6], counts=[10, 0])
    assert taken == [10, 0] and progress == [10, 6, 0]


def test_a_quiet_poll_is_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    # Someone else stored the rest: the quiet poll's count sees it.
    taken, progress = _wait(monkeypatch, stored=[5, 0], counts=[10, 0])
    assert taken == [10, 0] and progress == [10, 0]
