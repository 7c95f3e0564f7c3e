"""An exam that can no longer qualify enough workers ends at once with the reason.

A crowd larger than the exam's seats (`quality.exam.takers` a pair) spreads each pair's
seats over different workers: most takers meet too few of the pairs to pass, and once every
seat is answered no exam answer can come any more. The wait for `min_passers` used to poll
until `exam.wait_s` (an hour by default) without a word, and a rerun did the same again
(bench/bench_quality.py's large crowd under the exam; docs/quality-bench.md, stall14). Now it raises
`ExamStarved`: which stage, how many passed against how many needed, and why.

The simulator's clock stands still (`time_scale=0`) and moves only when the test's fake
sleep moves it; the wait runs on the test's own clock, so nothing here reads the real one
or sleeps.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import select

from crowdloop.connectors.registry import build_connector
from crowdloop.db import session_scope
from crowdloop.models.domain import Stage
from crowdloop.models.tables import Batch, ExamStatus
from crowdloop.simulator.config import CrowdConfig
from crowdloop.simulator.runner import SimulatorServer
from crowdloop.stages import exam as exam_stage
from crowdloop.stages.rounds import bare_ops, run_rounds
from tests.test_exam import CAMPAIGN, exam_results, register, spec_dict, start_sim, write_inputs

# 40 careful workers, 10 seats a pair: 120 seats over 40 workers, ~3 of the 12 pairs each,
# so hardly anyone can get 9 right. The wait allows an hour, as the spec's default does.
CROWD = CrowdConfig(honest=40, noisy=0, spammer=0, left_bias=0)
EXAM = {"takers": 10, "min_passers": 10, "wait_s": 3600.0}
DAY = 24 * 3600.0


class StillWaiting(Exception):
    """The exam kept polling with every exam seat answered."""


class FakeTime:
    """The wait's clock and sleep: each sleep moves it, and the simulator's clock by a day
    (every exam answer is in after the first), nothing else does. Gives up after `polls`
    sleeps: a wait that should have ended by then fails the test instead of hanging it."""

    def __init__(self, server: SimulatorServer | None, polls: int = 20) -> None:
        self.server, self.polls = server, polls
        self.now = 0.0
        self.sleeps = 0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        if self.sleeps > self.polls:
            raise StillWaiting(f"still waiting after {self.sleeps - 1} poll(s)")
        self.now += seconds
        if self.server is not None:
            self.server.state.advance_clock(DAY)


def compare_batches() -> list[Batch]:
    with session_scope() as s:
        return list(s.exec(select(Batch).where(Batch.stage == Stage.COMPARE.value)).all())


def test_a_starved_exam_ends_at_once_with_the_reason(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_inputs(tmp_path)
    register(spec_dict(tmp_path, **EXAM))
    server = start_sim(monkeypatch, CROWD, time_scale=0)
    try:
        fake = FakeTime(server)
        with build_connector("simulator", {}, None) as c:
            with pytest.raises(exam_stage.ExamNotReady, match="exam starved") as raised:
                exam_stage.exam_round(CAMPAIGN, c, sleep=fake.sleep, clock=fake.clock)
            # One sleep moved the simulator a day on; the next poll saw every seat answered.
            assert fake.sleeps == 1 and fake.now < 1.0
            assert isinstance(raised.value, exam_stage.ExamStarved)
            results = exam_results()
            passed = sum(r.status == ExamStatus.PASSED for r in results.values())
            assert passed < 10
            assert sum(r.answered for r in results.values()) == 12 * 10  # every seat
            message = str(raised.value)
            assert "\n" not in message
            assert f"{CAMPAIGN}: exam starved: {passed} worker(s) passed, 10 needed" in message
            assert "all 12 x 10 exam seats are answered" in message
            assert f"{len(results)} taker(s) met" in message
            # The round loop (bench, bare runs; the flow's exam task runs the same step)
            # stops on it at its first poll, and production is never published.
            with pytest.raises(exam_stage.ExamStarved, match="exam starved"):
                run_rounds(CAMPAIGN, [Stage.COMPARE], bare_ops(c), advance=False)
            assert compare_batches() == []
            assert server.stats()["tasks_created"] == 12  # the exam, published once
    finally:
        server.stop()


def test_an_exam_with_seats_still_open_keeps_waiting(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not starved while a seat is unanswered: the wait goes on to `wait_s` and raises the
    plain ExamNotReady (a rerun waits on)."""
    write_inputs(tmp_path)
    register(spec_dict(tmp_path, **{**EXAM, "wait_s": 0.3}))
    server = start_sim(monkeypatch, CROWD, time_scale=0)  # no answer ever arrives
    try:
        fake = FakeTime(None)
        with (
            build_connector("simulator", {}, None) as c,
            pytest.raises(exam_stage.ExamNotReady, match="rerun to keep waiting") as raised,
        ):
            exam_stage.exam_round(CAMPAIGN, c, sleep=fake.sleep, clock=fake.clock)
        assert type(raised.value) is exam_stage.ExamNotReady  # not starved
        assert fake.sleeps == 7  # polled until 0.3 s of its own time had passed
        assert compare_batches() == []
    finally:
        server.stop()
