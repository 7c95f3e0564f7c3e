"""Multi-aspect ratings: the aggregation on synthetic data, the spec, answer checks,
golden grading, preflight, the simulated raters, the estimate and the report section."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from crowdloop.aggregation.ratings import RatingFit, Scale, Vote, mean_of_votes, worker_linear
from crowdloop.connectors.errors import NotSupported
from crowdloop.models.domain import RatedAspect, RateTask, RatingAnswer, Submission
from crowdloop.models.spec import SpecError, load_campaign
from crowdloop.simulator.config import CrowdConfig
from crowdloop.simulator.crowd import Crowd, Worker
from crowdloop.simulator.rating import true_score
from crowdloop.simulator.world import render_list
from crowdloop.stages.preflight import check_capabilities
from crowdloop.stages.rating import golden_passes, rating_inputs, rating_markdown, rating_problem
from crowdloop.text import md_escape

CAMPAIGNS = Path(__file__).resolve().parent.parent / "campaigns"


# --- aggregation ------------------------------------------------------------------------


def _crowd(
    seed: int,
    *,
    responses: int = 60,
    aspects: int = 3,
    honest: int = 12,
    random_raters: int = 0,
    constant_raters: int = 0,
    overlap: int = 3,
    shared_bias: float = 0.0,
) -> tuple[list[Vote], np.ndarray, np.ndarray, np.ndarray]:
    """Votes on 0-4 scales from raters with a known bias per aspect and scale use (and
    some random or constant clickers); returns (votes, truth, bias, scale)."""
    rng = np.random.default_rng(seed)
    truth = rng.uniform(0.3, 3.7, (responses, aspects))
    workers = honest + random_raters + constant_raters
    bias = rng.normal(shared_bias, 0.6, (workers, aspects))
    scale = np.exp(rng.normal(0, 0.35, workers))
    votes = []
    for i in range(responses):
        for w in rng.choice(workers, overlap, replace=False):
            for j in range(aspects):
                if w < honest:
                    seen = truth[i, j] + rng.normal(0, 0.4)
                    y = float(np.clip(np.round(2 + bias[w, j] + scale[w] * (seen - 2)), 0, 4))
                elif w < honest + random_raters:
                    y = float(rng.integers(0, 5))
                else:
                    y = 4.0
                votes.append(Vote(i * aspects + j, j, int(w), y))
    return votes, truth, bias, scale


def _fit(
    votes: list[Vote], truth: np.ndarray, workers: int, anchors: dict[int, float] | None = None
) -> tuple[RatingFit, np.ndarray]:
    n_cells = truth.size
    aspects = truth.shape[1]
    cell_aspect = [c % aspects for c in range(n_cells)]
    scales = [Scale(0, 4)] * aspects
    fit = worker_linear(votes, n_cells, workers, cell_aspect, scales, anchors)
    mean, _ = mean_of_votes(votes, n_cells, cell_aspect, scales)
    return fit, mean


def test_worker_linear_recovers_bias_and_scale_use_and_beats_the_mean_of_votes() -> None:
    votes, truth, bias, scale = _crowd(0, responses=120, honest=10, overlap=4)
    fit, mean = _fit(votes, truth, 10)
    assert fit.converged
    # Every rater gave ~48 ratings of 3 aspects: their scale use and per-aspect bias are
    # recovered up to noise (bias in scale points, about the scale's middle).
    assert np.corrcoef(fit.scale, scale)[0, 1] > 0.9
    assert np.corrcoef(fit.bias, bias.ravel())[0, 1] > 0.9
    error = np.abs(fit.score - truth.ravel()).mean()
    naive = np.abs(mean - truth.ravel()).mean()
    assert error < 0.8 * naive
    # The reported uncertainty is honest: most truths lie within two standard deviations.
    assert np.mean(np.abs(fit.score - truth.ravel()) <= 2 * fit.sd) > 0.85


def test_random_and_constant_raters_count_for_nothing() -> None:
    votes, truth, _, _ = _crowd(1, honest=14, random_raters=5, constant_raters=3)
    fit, mean = _fit(votes, truth, 22)
    assert fit.reliability[:14].min() > 0.5
    assert fit.reliability[14:].max() < 0.2
    # What a rater's answers weigh in a truth: scale use squared over noise variance.
    weight = fit.scale**2 / fit.noise**2
    assert weight[14:].max() < 0.2 * np.median(weight[:14])
    error = np.abs(fit.score - truth.ravel()).mean()
    naive = np.abs(mean - truth.ravel()).mean()
    assert error < 0.75 * naive


def test_golden_items_anchor_a_crowd_that_is_lenient_as_a_whole() -> None:
    """Every rater scores a point high: without golden items the consensus is the crowd's
    scale (one point high); golden items with known scores bring it back."""
    votes, truth, _, _ = _crowd(2, responses=80, honest=12, shared_bias=1.0)
    loose, _ = _fit(votes, truth, 12)
    golden = {c: float(truth.ravel()[c]) for c in range(0, 3 * 16)}  # 16 responses known
    anchored, _ = _fit(votes, truth, 12, golden)
    rest = np.arange(3 * 16, truth.size)
    shift_loose = float(np.mean(loose.score[rest] - truth.ravel()[rest]))
    shift_anchored = float(np.mean(anchored.score[rest] - truth.ravel()[rest]))
    assert shift_loose > 0.5
    assert abs(shift_anchored) < 0.25
    assert np.all(anchored.sd[:48] == 0)  # known cells are not estimated


# --- answers, golden grading ------------------------------------------------------------


def _payload() -> dict[str, object]:
    return RateTask(
        instruction="Rate it.",
        prompt="List the top 5 fruits.",
        response="1. apple",
        aspects=(
            RatedAspect(name="helpfulness", low=0, high=4),
            RatedAspect(name="clarity", low=1, high=7),
        ),
    ).model_dump()


def test_answers_that_do_not_fit_their_task_are_named() -> None:
    payload = _payload()
    assert rating_problem(payload, {"helpfulness": 4, "clarity": 1}) is None
    assert "'clarity' has no score" in str(rating_problem(payload, {"helpfulness": 2}))
    assert "not on its scale 1-7" in str(rating_problem(payload, {"helpfulness": 2, "clarity": 0}))
    assert "'tone' is not an aspect" in str(
        rating_problem(payload, {"helpfulness": 2, "clarity": 3, "tone": 1})
    )
    with pytest.raises(ValidationError):
        RatingAnswer.model_validate({"scores": {"helpfulness": "high"}})
    # An unused rationale leaves the wire form as it was.
    assert "rationale" not in RatingAnswer(scores={"a": 1}).model_dump()


def test_sync_quarantines_a_rating_off_its_scale_and_stores_a_good_one_raw() -> None:
    from crowdloop.stages.sync import _row

    def row(scores: dict[str, int]) -> dict[str, object]:
        sub = Submission(
            external_id="s1",
            task_key="k1",
            worker_id="w1",
            answer=RatingAnswer(scores=scores, rationale="short and right"),
            submitted_at=datetime(2026, 12, 6, tzinfo=UTC),
        )
        return _row("c", "simulator", sub, {"k1": "it1"}, {"it1": "rate"}, {"it1": _payload()})

    bad = row({"helpfulness": 9, "clarity": 3})
    assert bad["status"] == "quarantined" and "not on its scale 0-4" in str(bad["reason"])
    good = row({"helpfulness": 3, "clarity": 5})
    assert good["status"] == "valid" and good["label"] == "rating"
    assert good["text"] == '{"clarity": 5, "helpfulness": 3}'
    assert good["rationale"] == "short and right"


def test_golden_ratings_are_graded_per_aspect_by_distance() -> None:
    known = {"helpfulness": 4, "correctness": 0, "coherence": 2}
    assert golden_passes({"helpfulness": 3, "correctness": 1, "coherence": 2}, known, 1.0) == (3, 3)
    assert golden_passes({"helpfulness": 2, "correctness": 0, "coherence": 4}, known, 1.0) == (1, 3)
    assert golden_passes({"helpfulness": 4}, known, 0.0) == (1, 3)  # missing aspects fail


# --- spec -------------------------------------------------------------------------------


def _campaign(tmp_path: Path, rating: str, extra: str = "", golden: str | None = None) -> Path:
    rows = [
        f'{{"prompt_id": "p{p}", "prompt": "List the top 5 fruits.", '
        f'"response_id": "p{p}r{i}", "response": "1. apple {i}"}}'
        for p in range(2)
        for i in range(3)
    ]
    (tmp_path / "candidates.jsonl").write_text("\n".join(rows) + "\n")
    if golden is not None:
        (tmp_path / "golden.jsonl").write_text(golden)
    path = tmp_path / "campaign.yaml"
    path.write_text(
        "name: rt\n"
        f"{extra}"
        "rating:\n"
        "  candidates_file: candidates.jsonl\n"
        f"{rating}"
        "  export: {path: ratings.jsonl}\n"
    )
    return path


def test_spec_errors_are_one_line_naming_file_line_and_field(tmp_path: Path) -> None:
    path = _campaign(
        tmp_path,
        "  aspects:\n    - {name: helpfulness, low: 0, high: 4}\n"
        "    - {name: clarity, low: 3, high: 3}\n",
    )
    with pytest.raises(SpecError) as flat:
        load_campaign(path)
    assert str(flat.value) == (
        f"{path}:6: field 'rating.aspects.1': Value error, high (3) must be above low (3)"
    )
    with pytest.raises(SpecError) as long:
        load_campaign(_campaign(tmp_path, "  aspects: [{name: tone, low: 0, high: 20}]\n"))
    assert str(long.value).endswith(
        "campaign.yaml:4: field 'rating.aspects.0.high': Input should be less than or equal to 10"
    )
    with pytest.raises(SpecError) as wide:
        load_campaign(_campaign(tmp_path, "  aspects: [{name: tone, low: -10, high: 10}]\n"))
    assert "\n" not in str(wide.value) and "at most 11 points" in str(wide.value)
    with pytest.raises(SpecError, match=r"field 'rating.overlap': .*greater than or equal to 1"):
        load_campaign(_campaign(tmp_path, "  overlap: 0\n"))
    with pytest.raises(SpecError, match=r"field 'rating.aspects.0': .*column of the exported"):
        load_campaign(_campaign(tmp_path, "  aspects: [{name: prompt}]\n"))
    prefs = "preferences: {candidates_file: candidates.jsonl, export: {path: p.jsonl}}\n"
    with pytest.raises(SpecError, match=r"field 'rating': .*campaign of their own"):
        load_campaign(_campaign(tmp_path, "", extra=prefs))
    # HelpSteer's five aspects on 0-4 by default.
    spec = load_campaign(_campaign(tmp_path, ""))
    assert spec.rating is not None
    assert [a.name for a in spec.rating.aspects][:2] == ["helpfulness", "correctness"]


def test_golden_rows_are_checked_against_the_aspects_before_anything_is_made(
    tmp_path: Path,
) -> None:
    good = '{"id": "g1", "prompt": "p", "response": "r", "scores": {"helpfulness": 4}}\n'
    off = '{"id": "g2", "prompt": "p", "response": "r", "scores": {"helpfulness": 7}}\n'
    path = _campaign(
        tmp_path,
        "  aspects: [{name: helpfulness}]\n  golden_file: golden.jsonl\n",
        golden=good + off,
    )
    spec = load_campaign(path).rating
    assert spec is not None
    with pytest.raises(SpecError) as bad:
        rating_inputs(spec)
    assert str(bad.value) == (
        f"{tmp_path / 'golden.jsonl'}:2: field 'scores.helpfulness': "
        "aspect 'helpfulness': 7 is not on its scale 0-4"
    )
    (tmp_path / "golden.jsonl").write_text(good.replace("helpfulness", "tone"))
    with pytest.raises(SpecError, match=r"golden.jsonl:1: field 'scores.tone': 'tone' is not"):
        rating_inputs(spec)


# --- preflight --------------------------------------------------------------------------


def test_connectors_without_the_capability_are_refused_at_preflight(tmp_path: Path) -> None:
    from crowdloop.connectors.registry import get_connector_class as connector_class

    spec = load_campaign(_campaign(tmp_path, ""))
    for name in ("toloka", "prolific", "scale", "replay", "labelstudio"):
        connector = object.__new__(connector_class(name))
        with pytest.raises(NotSupported) as refused:
            check_capabilities(spec, connector)
        message = str(refused.value)
        assert name in message and "multi-aspect rating" in message and "\n" not in message
    check_capabilities(spec, object.__new__(connector_class("simulator")))
    # The AI judge rates too (connectors/aijudge/kinds.py, RatingKind).
    check_capabilities(spec, object.__new__(connector_class("aijudge")))


# --- the simulated raters ---------------------------------------------------------------


def test_simulated_raters_follow_the_truth_their_style_or_their_archetype() -> None:
    aspects = (RatedAspect(name="helpfulness", low=0, high=4),)
    tasks = [
        RateTask(
            instruction="Rate it.",
            prompt="List the top 5 fruits.",
            response=render_list(items),
            aspects=aspects,
        )
        for items in (
            ["apple", "banana", "cherry", "mango", "pear"],
            ["apple", "banana", "x", "y", "z"],
            ["q", "x", "y", "z", "w"],
        )
    ]
    crowd = Crowd(CrowdConfig(honest=1, spammer=1, same_side=1), seed=3)

    def scores(archetype: str, n: int) -> list[int]:
        worker = Worker(id=f"w-{archetype}", archetype=archetype, speed="fast")  # type: ignore[arg-type]
        return [
            crowd.work(worker, f"t{k}-{i}", task, None)[1]["scores"]["helpfulness"]
            for k in range(n)
            for i, task in enumerate(tasks)
        ]

    truth = [true_score(t.prompt, t.response, aspects[0]) for t in tasks]
    assert truth[0] > truth[1] > truth[2]
    honest = np.array(scores("honest", 40)).reshape(40, 3).mean(axis=0)
    assert honest[0] > honest[1] > honest[2]  # a careful rater orders them as the truth
    assert set(scores("same_side", 5)) == {4}
    assert len(set(scores("spammer", 20))) >= 4


# --- estimate and report ----------------------------------------------------------------


def test_the_estimate_prices_the_demo_campaigns_rating_tasks() -> None:
    from crowdloop.stages.estimate import estimate_spec

    spec = load_campaign(CAMPAIGNS / "rating.yaml")
    estimate = estimate_spec(spec)
    # 72 answers and 18 golden tasks (share 0.2), 3 ratings each at 0.05, no fee.
    assert estimate.expected == Decimal(90) * 3 * Decimal("0.05")
    assert estimate.worst > estimate.expected


def test_the_report_section_escapes_what_comes_from_outside() -> None:
    summary = {
        "items": 2,
        "golden_items": 1,
        "items_collected": 2,
        "ratings": 6,
        "excluded": 1,
        "quarantined": 0,
        "golden_passed": 4,
        "golden_graded": 5,
        "aspects": [
            {
                "aspect": "help|ful",
                "votes": 6,
                "mean_abs_deviation": 0.5,
                "correlation": None,
                "consensus_vs_mean": 0.25,
            }
        ],
        "caveat": None,
        "workers": [
            {
                "worker": "<img src=x>|w",
                "ratings": 3,
                "mean_bias": 0.5,
                "scale_use": 1.1,
                "reliability": 0.8,
            }
        ],
    }
    text = "\n".join(rating_markdown(summary, md_escape))
    assert "<img" not in text and "&lt;img src=x&gt;\\|w" in text
    assert "| help\\|ful | 6 | 0.50 | — | 0.25 |" in text
    assert "| +0.50 | 1.10 | 0.80 |" in text
    assert "Caveat" not in text
    warned = "\n".join(rating_markdown({**summary, "caveat": "one rating per response"}, md_escape))
    assert "**Caveat:** one rating per response" in warned


def test_the_simulator_connector_quarantines_garbled_rating_answers() -> None:
    from crowdloop.connectors.simulator.connector import _read_assignment
    from crowdloop.models.domain import Quarantined

    def assignment(answer: object) -> dict[str, object]:
        return {
            "id": "asg-00000001",
            "task_id": "task-0000001",
            "task_key": "camp-1:rate:item-1",
            "task_kind": "rate",
            "worker_id": "w001",
            "submitted_at": "2026-12-06T00:05:00+00:00",
            "answer": answer,
            "review_status": "pending",
        }

    good = _read_assignment(assignment({"scores": {"helpfulness": 3}, "rationale": "fine"}))
    assert isinstance(good, Submission) and isinstance(good.answer, RatingAnswer)
    assert good.answer.scores == {"helpfulness": 3} and good.answer.rationale == "fine"
    for garbled, reason in (
        ({"scores": {"helpfulness": "lots"}}, "scores.helpfulness"),
        ({"scores": {}}, "scores"),
        ({"ranks": [1, 2, 3]}, "scores"),
    ):
        bad = _read_assignment(assignment(garbled))
        assert isinstance(bad, Quarantined)
        assert bad.reason.startswith("bad rating answer for a rate task") and reason in bad.reason
