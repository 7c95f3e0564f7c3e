# ruff: noqa: F811  (the fixtures imported from test_quality_stage are parameters here)
"""The comparison evidence read column by column into coded arrays, and the final report
reusing the last quality round's crowd assessment."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import select as sa_select
from sqlalchemy import update
from sqlmodel import col, func, select

from crowdloop import quality
from crowdloop.connectors.base import Connector
from crowdloop.db import session_scope
from crowdloop.models.spec import CampaignSpec
from crowdloop.models.tables import Item, Judgment, JudgmentStatus
from crowdloop.stages import quality_check, quality_report
from crowdloop.stages.preferences import CODED_COLUMNS, coded_judgments, judgments_frame
from crowdloop.stages.quality_check import check_workers, comparison_evidence
from crowdloop.stages.sync import settle_items
from tests.test_quality_stage import (  # noqa: F401  (fixtures)
    CAMPAIGN,
    campaign,
    connector,
    run_round,
    sim,
)


def _reference_evidence(campaign_id: str) -> pd.DataFrame:
    """The evidence as the previous code built it: every row fetched, then a frame of
    object columns from the row tuples."""
    # The previous query: one joined row per answer, the times as datetimes.
    query = (
        sa_select(
            col(Judgment.worker_id),
            col(Judgment.item_id),
            col(Item.left_id),
            col(Item.right_id),
            col(Judgment.label),
            col(Item.golden_answer),
            col(Item.is_golden),
            col(Judgment.submitted_at),
            col(Judgment.received_at),
            col(Judgment.id),
        )
        .join(Item, col(Item.id) == col(Judgment.item_id))
        .where(
            col(Judgment.campaign_id) == campaign_id,
            col(Judgment.status) == JudgmentStatus.VALID,
            col(Item.kind) == "compare",
            col(Judgment.worker_id).is_not(None),
        )
    )
    with session_scope() as s:
        rows = s.execute(query).all()
    raw = ["worker", "item", "left", "right", "label", "answer", "golden", "submitted",
           "received", "seq"]  # fmt: skip
    frame = pd.DataFrame.from_records(rows, columns=raw)
    for side in ("left", "right"):
        missing = frame[side].isna() | (frame[side] == "")
        frame[side] = frame[side].where(~missing, frame["item"].astype(str) + f":{side}")
    frame["golden"] = frame["answer"].where(frame["golden"].astype(bool), None)
    at = pd.to_datetime(frame["submitted"].fillna(frame["received"]))
    if getattr(at.dt, "tz", None) is not None:
        at = at.dt.tz_localize(None)
    frame["time"] = (at - pd.Timestamp(1970, 1, 1)).dt.total_seconds()
    frame = frame[quality_check.EVIDENCE_COLUMNS]
    return frame.sort_values(["time", "seq"], kind="stable", ignore_index=True)


def _plain(frame: pd.DataFrame) -> list[list[Any]]:
    """Cell values with every missing value as None, column by column."""
    return [[None if pd.isna(v) else v for v in frame[c].astype(object)] for c in frame.columns]


def test_coded_evidence_has_the_row_built_frames_contents(
    campaign: CampaignSpec, connector: Connector
) -> None:
    run_round(connector)
    with session_scope() as s:
        # Some answers without a submission time (ordered by receipt), some pairs without
        # response ids (sides named from the pair), so both fallbacks are read.
        ids = [j for (j,) in s.execute(sa_select(col(Judgment.id)).limit(40)).all()]
        s.execute(update(Judgment).where(col(Judgment.id).in_(ids)).values(submitted_at=None))
        # Times the database turns into microseconds: a whole second, the last microsecond
        # before one (SQLite's own fractional seconds round to milliseconds), before 1970.
        for j, at in zip(
            ids[:3],
            (
                datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
                datetime(2026, 1, 2, 3, 4, 5, 999_999, tzinfo=UTC),
                datetime(1969, 12, 31, 23, 59, 59, 500_000, tzinfo=UTC),
            ),
            strict=True,
        ):
            s.execute(update(Judgment).where(col(Judgment.id) == j).values(received_at=at))
        pairs = s.execute(sa_select(col(Item.id)).where(col(Item.kind) == "compare").limit(3)).all()
        s.execute(update(Item).where(col(Item.id).in_([p for (p,) in pairs])).values(left_id=""))
    with session_scope() as s:
        coded = comparison_evidence(s, CAMPAIGN)
    reference = _reference_evidence(CAMPAIGN)
    assert len(coded) > 500
    assert list(coded.columns) == list(reference.columns)
    assert _plain(coded) == _plain(reference)
    assert coded["golden"].notna().any() and coded["golden"].isna().any()
    # Categories: the values present in the answers, sorted (pairs of the campaign nobody
    # answered are read but not kept); the sides share one list, labels and answers one.
    for columns in (["worker"], ["item"], ["left", "right"], ["label", "golden"]):
        present = sorted({v for c in columns for v in reference[c].dropna()})
        for c in columns:
            assert list(coded[c].cat.categories) == present
    # Compact: codes, not a Python string per cell.
    assert all(isinstance(coded[c].dtype, pd.CategoricalDtype) for c in ("worker", "item"))
    assert coded["label"].cat.codes.dtype.itemsize <= 4

    # assess_crowd reads the coded frame as it read the object one.
    workers_a, audit_a = quality.assess_crowd(coded)
    workers_b, audit_b = quality.assess_crowd(reference)
    pd.testing.assert_frame_equal(workers_a, workers_b)
    assert _plain(audit_a) == _plain(audit_b)


def test_report_reuses_the_last_rounds_assessment_until_new_answers_arrive(
    campaign: CampaignSpec, connector: Connector, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = quality_check.assess_crowd

    def counted(frame: pd.DataFrame, policy: Any = None) -> Any:
        calls.append(len(frame))
        return real(frame, policy)

    monkeypatch.setattr(quality_check, "assess_crowd", counted)
    run_round(connector)
    check_workers(CAMPAIGN, connector)
    assert len(calls) == 1
    reused = quality_report.distrust_report(CAMPAIGN)
    assert len(calls) == 1  # nothing new since the round: not assessed again
    quality_check._ASSESSED.clear()
    recomputed = quality_report.distrust_report(CAMPAIGN)
    assert len(calls) == 2
    assert reused == recomputed
    assert reused["golden_items"] > 0

    # A new answer (a copy of one, from another worker): the next round assesses it, and
    # the report uses that assessment.
    with session_scope() as s:
        one = s.execute(sa_select(Judgment).limit(1)).scalar_one()
        s.add(
            Judgment(
                external_id="late-answer",
                campaign_id=one.campaign_id,
                item_id=one.item_id,
                connector=one.connector,
                worker_id="late-worker",
                label=one.label,
                submitted_at=one.submitted_at,
            )
        )
    check_workers(CAMPAIGN, connector)
    assert len(calls) == 3 and calls[2] > calls[1]
    quality_report.distrust_report(CAMPAIGN)
    assert len(calls) == 3
    # An answer leaving the readable set (quarantined) changes the evidence too.
    with session_scope() as s:
        first = s.execute(sa_select(col(Judgment.id)).limit(1)).scalar_one()
        s.execute(
            update(Judgment)
            .where(col(Judgment.id) == first)
            .values(status=JudgmentStatus.QUARANTINED)
        )
    quality_report.distrust_report(CAMPAIGN)
    assert len(calls) == 4 and calls[3] == calls[2] - 1


def test_assess_crowd_reads_coded_and_string_frames_alike() -> None:
    """The categorical paths (worker codes, response codes, label codes) give exactly what
    the string columns give, on a campaign-shaped frame."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    from bench_assess import synthetic_frame

    coded = synthetic_frame(20_000, seed=3, coded=True)
    plain = synthetic_frame(20_000, seed=3, coded=False)
    assert isinstance(coded["worker"].dtype, pd.CategoricalDtype)
    workers_a, audit_a = quality.assess_crowd(coded)
    workers_b, audit_b = quality.assess_crowd(plain)
    pd.testing.assert_frame_equal(workers_a, workers_b)
    assert _plain(audit_a) == _plain(audit_b)
    assert workers_a["p_blind"].max() > 0.9 and workers_a["p_blind"].min() < 0.1


def test_an_assessment_of_another_database_is_never_reused(
    campaign: CampaignSpec, connector: Connector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cache is per database: the same campaign name with the same judgment ids
    elsewhere (another test's database, another deployment's URL) is other evidence. In CI
    a test's report once got an earlier test's assessment of the same-named campaign."""
    calls: list[int] = []
    real = quality_check.assess_crowd

    def counted(frame: pd.DataFrame, policy: Any = None) -> Any:
        calls.append(len(frame))
        return real(frame, policy)

    monkeypatch.setattr(quality_check, "assess_crowd", counted)
    monkeypatch.setattr(quality_check, "_ASSESSED", {})  # earlier tests' entries left out
    run_round(connector)
    check_workers(CAMPAIGN, connector)
    assert len(calls) == 1
    (where, entry), *rest = quality_check._ASSESSED.items()
    assert not rest and where[1] == CAMPAIGN
    key, (crowd, audit) = entry
    poisoned = crowd.assign(p_blind=1.0)  # what another database's crowd might look like
    quality_check._ASSESSED.clear()
    quality_check._ASSESSED[("sqlite:///elsewhere.db", CAMPAIGN)] = (key, (poisoned, audit))
    report = quality_report.distrust_report(CAMPAIGN)
    assert len(calls) == 2  # assessed again on this database's answers
    assert report == quality_report.distrust_report(CAMPAIGN)
    assert len(calls) == 2  # and that assessment is reused here


def test_assess_crowd_is_the_same_whatever_the_log_likelihood_block(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The per-worker log-likelihood is summed a block of answers at a time: the result is
    the one summed over the whole (answers x grid) array, whatever the block, up to the
    order of the additions (a bincount per block and column)."""
    import sys
    from pathlib import Path

    import numpy as np

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    from bench_assess import synthetic_frame

    rng = np.random.default_rng(5)
    n, n_workers = 5_000, 37
    label = rng.integers(0, 3, n).astype(np.int8)
    p_left = rng.random(n)
    p_left[rng.random(n) < 0.05] = np.nan  # golden ties
    # One tie probability per answer and tie-share column (`CrowdPolicy.tie_grid`).
    tie = rng.random((n, len(quality.CrowdPolicy().tie_grid))) * 0.3
    clarity = rng.random(n)
    use = rng.random(n) < 0.9
    wcode = rng.integers(0, n_workers, n).astype(np.int32)
    grid = np.asarray(quality.CrowdPolicy().accuracy_grid)
    policy = quality.CrowdPolicy()
    whole = quality._judge_log_lik(label, p_left, tie, grid, clarity, policy.golden_tie)
    whole[~use] = 0.0
    expected = np.zeros((n_workers, whole.shape[1]))
    np.add.at(expected, wcode, whole)
    for block in (1_000, 333, 65_536):
        monkeypatch.setattr(quality, "_LL_BLOCK", block)
        got = quality._judge_log_lik_per_worker(
            label, p_left, tie, grid, clarity, policy, use, wcode, n_workers
        )
        np.testing.assert_allclose(got, expected, rtol=1e-12)

    frame = synthetic_frame(20_000, seed=4, coded=True)
    monkeypatch.setattr(quality, "_LL_BLOCK", 65_536)
    workers_a, audit_a = quality.assess_crowd(frame)
    monkeypatch.setattr(quality, "_LL_BLOCK", 777)
    workers_b, audit_b = quality.assess_crowd(frame)
    pd.testing.assert_frame_equal(workers_a, workers_b, check_exact=False, rtol=1e-9)
    assert _plain(audit_a) == _plain(audit_b)


def test_the_temperature_search_sums_what_the_whole_log_likelihood_sums(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`_RealAnswers` splits each worker's log-likelihood into a part fixed across the
    temperatures tried (golden pairs, real pairs' tie shares) and the real pairs' sides:
    at every temperature, the same sums as the whole (answers x grid) log-likelihood's,
    golden ties, clear golden pairs and unused answers included, whatever the block."""
    import numpy as np

    rng = np.random.default_rng(11)
    n, n_workers = 6_000, 29
    policy = quality.CrowdPolicy()
    grid = np.asarray(policy.accuracy_grid)
    label = rng.integers(0, 3, n).astype(np.int8)
    real = rng.random(n) < 0.7
    golden_answer = rng.integers(-1, 2, n)  # -1: a golden pair answered tie
    gl = np.where(
        golden_answer == 0,
        policy.clear_cut,
        np.where(golden_answer == 1, 1 - policy.clear_cut, np.nan),
    )
    clear = ~real & ~np.isnan(gl)
    tie = 0.03 + rng.random((n, len(policy.tie_grid))) * 0.6
    use = rng.random(n) < 0.9
    wcode = rng.integers(0, n_workers, n).astype(np.int32)
    delta = rng.normal(size=int(real.sum())) * 2
    for block in (65_536, 500):
        monkeypatch.setattr(quality, "_LL_BLOCK", block)
        split = quality._RealAnswers.of(
            label, gl[~real], tie, grid, clear, policy, use, wcode, n_workers, real, delta
        )
        for temperature in policy.temperatures:
            p = np.where(real, 0.5, gl)
            p[real] = quality._sigmoid(temperature * delta)
            whole = quality._judge_log_lik_per_worker(
                label, p, tie, grid, quality._clarity(clear, p, policy), policy, use, wcode,
                n_workers,
            )  # fmt: skip
            got = split.per_worker(temperature, grid, len(policy.tie_grid))
            np.testing.assert_allclose(got, whole, rtol=1e-12)


def test_aggregation_writes_the_same_rows_whatever_the_chunk(
    campaign: CampaignSpec, connector: Connector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scores and verdicts are written a chunk at a time: the stored rows are the same as
    with one chunk for everything."""
    from crowdloop.models.tables import CandidateScore, PairOutcome
    from crowdloop.stages import preferences

    run_round(connector)
    assert settle_items(CAMPAIGN, max_requeue_rounds=3)["collected"] > 0

    def stored() -> tuple[list[Any], list[Any]]:
        with session_scope() as s:
            outcomes = s.execute(
                sa_select(PairOutcome.__table__).order_by(col(PairOutcome.item_id))  # type: ignore[attr-defined]
            ).all()
            scores = s.execute(
                sa_select(
                    col(CandidateScore.response_id),
                    col(CandidateScore.prompt_id),
                    col(CandidateScore.score),
                    col(CandidateScore.method),
                ).order_by(col(CandidateScore.response_id))
            ).all()
        return [tuple(r) for r in outcomes], [tuple(r) for r in scores]

    monkeypatch.setattr(preferences, "ROW_CHUNK", 10**9)
    whole = preferences.aggregate_preferences(CAMPAIGN, "worker_aware")
    one_chunk = stored()
    monkeypatch.setattr(preferences, "ROW_CHUNK", 7)
    chunked = preferences.aggregate_preferences(CAMPAIGN, "worker_aware")
    assert chunked == whole and whole.pairs > 7
    assert stored() == one_chunk
    assert len(one_chunk[1]) > 7


@pytest.mark.parametrize("method", ["bradley_terry", "worker_aware"])
def test_score_pairs_names_the_prompts_whose_graph_splits(method: str) -> None:
    """The worker-aware path finds split prompts from the connected components alone (no
    plain Bradley-Terry fit); both methods name the same prompts, sorted, and only them."""
    from crowdloop.stages.preferences import score_pairs

    # p2: a > b and c > d, never compared across; p1: one connected chain; p0: a triangle
    # whose responses also reach across two workers.
    rows = [
        ("x1", "p1", "r1", "r2", "w1", "left"),
        ("x2", "p1", "r2", "r3", "w2", "tie"),
        ("x3", "p2", "s1", "s2", "w1", "left"),
        ("x4", "p2", "s3", "s4", "w2", "right"),
        ("x5", "p0", "t1", "t2", "w1", "right"),
        ("x6", "p0", "t2", "t3", "w2", "left"),
        ("x7", "p0", "t3", "t1", "w1", "left"),
        ("x8", "p3", "u1", "u2", "w2", "left"),
        ("x9", "p3", "u3", "u4", "w1", "tie"),
    ]
    frame = pd.DataFrame(rows, columns=["pair", "prompt", "left", "right", "worker", "label"])
    frame["level"] = None
    _, verdicts, disconnected = score_pairs(frame, method)
    assert disconnected == ["p2", "p3"]
    assert sorted(verdicts["pair"]) == [f"x{i}" for i in range(1, 10)]


def test_the_reports_coded_judgments_are_the_string_frame_and_give_the_same_report(
    campaign: CampaignSpec, connector: Connector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The final report reads the judgments as codes (`coded_judgments`): the same rows in
    the same order as `judgments_frame`, categories sorted, and the same report to the
    last digit as from the string frame (agreement's float sum follows the pairs' order)."""
    run_round(connector)
    assert settle_items(CAMPAIGN, max_requeue_rounds=3)["collected"] > 0
    check_workers(CAMPAIGN, connector)  # some answers excluded: they must not be read
    run_round(connector)  # the pairs they left short, answered again
    assert settle_items(CAMPAIGN, max_requeue_rounds=3)["collected"] > 0
    strings = judgments_frame(CAMPAIGN).drop(columns="level")
    coded = coded_judgments(CAMPAIGN)
    assert len(coded) > 500
    with session_scope() as s:
        excluded = s.exec(select(func.count()).where(col(Judgment.excluded).is_(True))).one()
    assert excluded > 0
    assert list(coded.columns) == list(strings.columns) == CODED_COLUMNS
    assert _plain(coded) == _plain(strings)
    for c in CODED_COLUMNS:
        assert isinstance(coded[c].dtype, pd.CategoricalDtype)
        assert list(coded[c].cat.categories) == sorted(coded[c].cat.categories)
    assert list(coded["left"].cat.categories) == list(coded["right"].cat.categories)

    quality_check._ASSESSED.clear()
    from_codes = quality_report.quality_report(CAMPAIGN, n_boot=10)
    monkeypatch.setattr(
        quality_report, "coded_judgments", lambda cid: judgments_frame(cid).drop(columns="level")
    )
    from_strings = quality_report.quality_report(CAMPAIGN, n_boot=10)
    assert json.dumps(from_codes, sort_keys=True, default=str) == json.dumps(
        from_strings, sort_keys=True, default=str
    )
    assert from_codes["agreement_alpha"] is not None and from_codes["rankings"]
    assert all(r["model"] for ranking in from_codes["rankings"].values() for r in ranking)


def test_the_aggregation_reads_codes_and_fits_the_same_verdicts_as_from_strings(
    campaign: CampaignSpec, connector: Connector
) -> None:
    """The aggregation's evidence is `coded_judgments`' frame (categoricals), and
    `score_pairs`, `settled_pairs` and `unsure_pairs` give on it exactly what they give
    on the string frame of the same judgments: the fits see the same codes in the same
    order (floats compared to the last bit), unanswered pairs included."""
    from crowdloop.models.spec import DynamicOverlapSpec
    from crowdloop.stages.preferences import (
        evidence_frame,
        score_pairs,
        settled_pairs,
        unanswered_pairs,
        unsure_pairs,
    )

    run_round(connector)
    assert settle_items(CAMPAIGN, max_requeue_rounds=3)["collected"] > 0
    check_workers(CAMPAIGN, connector)
    run_round(connector)
    assert settle_items(CAMPAIGN, max_requeue_rounds=3)["collected"] > 0
    coded = evidence_frame(CAMPAIGN)
    strings = judgments_frame(CAMPAIGN).drop(columns="level")
    assert len(coded) > 500
    for c in CODED_COLUMNS:
        assert isinstance(coded[c].dtype, pd.CategoricalDtype)
    assert _plain(coded) == _plain(strings)
    # A pair no answer is left on, as `unanswered_pairs` gives one (plus the real ones).
    first = strings.iloc[0]
    extra = pd.DataFrame(
        {
            "pair": ["zz-unanswered"],
            "prompt": [first["prompt"]],
            "left": [first["left"]],
            "right": ["zz-response"],
        }
    )
    unanswered = pd.concat([unanswered_pairs(CAMPAIGN, strings), extra], ignore_index=True)
    dynamic = DynamicOverlapSpec(min_answer_value=0.01, settle_pairs=True)
    for method in ("worker_aware", "bradley_terry"):
        a_scores, a, a_split = score_pairs(coded, method, unanswered, values=True)
        b_scores, b, b_split = score_pairs(strings, method, unanswered, values=True)
        assert a_scores == b_scores and a_split == b_split
        assert list(a["pair"]) == sorted(a["pair"]) and "zz-unanswered" in set(a["pair"])
        assert _plain(a) == _plain(b)
        assert list(settled_pairs(a, coded)) == list(settled_pairs(b, strings))
        assert list(unsure_pairs(a, coded, dynamic)) == list(unsure_pairs(b, strings, dynamic))
