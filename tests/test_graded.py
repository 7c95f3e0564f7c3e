"""Graded preferences: the ordinal model, the simulated graded answers, the campaign file,
golden levels and preflight."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from scipy.optimize import approx_fprime

from crowdloop.aggregation.graded import GradedScale, OrdinalPreferenceModel, mean_of_votes
from crowdloop.connectors.errors import NotSupported
from crowdloop.demo.graded import simulate_graded
from crowdloop.models.domain import Capability, CompareTask, PreferenceAnswer, VerifyTask
from crowdloop.models.spec import LLAMA2_LEVELS, CampaignSpec, SpecError, load_campaign
from crowdloop.simulator.config import CrowdConfig
from crowdloop.simulator.crowd import Crowd, build_workers
from crowdloop.simulator.graded import graded_answer, level_of, true_grade
from crowdloop.stages.graded import level_passes
from crowdloop.stages.plan import check_inputs
from crowdloop.stages.preferences import TIE_BAND
from crowdloop.stages.preflight import required_capabilities
from crowdloop.stages.routing import routed
from crowdloop.stages.sync import level_problem

CAMPAIGNS = Path(__file__).resolve().parents[1] / "campaigns"
LABELS = tuple(level.label for level in LLAMA2_LEVELS)


# --- the model ------------------------------------------------------------------------------


@pytest.mark.parametrize("unsure", [True, False])
def test_scale_codes_are_ordered_and_invertible(unsure: bool) -> None:
    scale = GradedScale(levels=4, unsure=unsure)
    signed = np.array([-4, -3, -2, -1, *([0] if unsure else []), 1, 2, 3, 4])
    codes = scale.code(signed)
    assert codes.tolist() == list(range(scale.categories))
    assert scale.signed(codes).tolist() == signed.tolist()
    cuts = scale.cut_matrix() @ np.array([0.5, 1.0, 1.5, 2.0][: scale.positive_cuts]).cumsum()
    assert np.all(np.diff(cuts) > 0) and np.allclose(cuts, -cuts[::-1])


@pytest.mark.parametrize("unsure", [True, False])
def test_gradient_matches_finite_differences(unsure: bool) -> None:
    rng = np.random.default_rng(1)
    n = 200
    labels = rng.choice(["left", "right", "tie"] if unsure else ["left", "right"], n)
    frame = pd.DataFrame(
        {
            "worker": rng.integers(0, 8, n).astype(str),
            "left": rng.integers(0, 6, n).astype(str),
            "right": rng.integers(6, 12, n).astype(str),
            "label": labels,
            "level": np.where(labels == "tie", None, rng.integers(1, 5, n)),
        }
    )
    model = OrdinalPreferenceModel(GradedScale(4, unsure))
    x0, data, n_items, n_workers = model.prepare(frame)
    x = x0 + rng.normal(0, 0.3, len(x0))
    _, grad = model.objective(x, data, n_items, n_workers)
    numeric = approx_fprime(x, lambda z: model.objective(z, data, n_items, n_workers)[0], 1e-6)
    assert np.abs(grad - numeric).max() < 1e-3 * max(1.0, np.abs(grad).max())


def score(verdicts: pd.DataFrame, truth: pd.DataFrame) -> tuple[float, float]:
    merged = truth.merge(verdicts, on="pair")
    merged = merged[merged["true_side"] != "tie"]
    side = merged["side"] == merged["true_side"]
    exact = side & (merged["level"] == merged["true_level"])
    return float(side.mean()), float(exact.mean())


def test_ordinal_model_beats_the_mean_of_votes_on_a_crowd_with_spammers() -> None:
    crowd = CrowdConfig(honest=20, noisy=6, spammer=16, left_bias=4)
    answers, truth = simulate_graded(crowd, 3, 2, 3, LABELS)
    scale = GradedScale(levels=4)
    model = OrdinalPreferenceModel(scale).fit(answers)
    pairs = answers.drop_duplicates("pair")[["pair", "left", "right"]]
    ordinal = model.verdicts(pairs, tie_band=TIE_BAND)
    ours, naive = score(ordinal, truth), score(mean_of_votes(answers, scale), truth)
    assert ours[0] >= naive[0] and ours[1] > naive[1] + 0.1, (ours, naive)
    # Spammers are told apart by their discrimination, with no golden set.
    archetype = {w.id: w.archetype for w in build_workers(crowd, 3)}
    disc = model.workers_["discrimination"]
    spam = [w for w in disc.index if archetype[w] == "spammer"]
    honest = [w for w in disc.index if archetype[w] == "honest"]
    assert disc[spam].median() < 0.5 < disc[honest].median()


# --- the simulated workers ---------------------------------------------------------------------


def task(left_valid: int, right_valid: int, unsure: bool = True) -> CompareTask:
    rivers = ["nile", "amazon", "danube", "rhine", "thames"]
    junk = ["pencil", "cloud", "spoon", "window", "shoe"]

    def listing(k: int) -> str:
        return "\n".join(f"{i + 1}. {x}" for i, x in enumerate(rivers[:k] + junk[: 5 - k]))

    return CompareTask(
        instruction="?",
        prompt="List the top 5 rivers.",
        left=listing(left_valid),
        right=listing(right_valid),
        scale=LABELS,
        unsure=unsure,
    )


def answers_of(archetype: str, payload: CompareTask, n: int = 400, **kw: Any) -> list[Any]:
    rng = random.Random(0)
    shared = random.Random(1)
    options = {"noise": 0.1, "factor": 1.0, "left_bias_rate": 0.6, **kw}
    return [graded_answer(archetype, rng, payload, shared=shared, **options) for _ in range(n)]


def test_truth_is_the_quality_gap_in_fifths() -> None:
    assert true_grade(task(5, 1)) == ("left", 4)
    assert true_grade(task(2, 4)) == ("right", 2)
    assert true_grade(task(3, 3)) == ("tie", 0)
    assert level_of(0.2, 4) == 1 and level_of(-1.0, 4) == 4 and level_of(0.6, 2) == 2


def test_an_honest_worker_answers_near_the_truth_and_their_scale_use_shifts_the_level() -> None:
    payload = task(4, 2)  # left, level 2
    honest = answers_of("honest", payload)
    assert np.mean([a["choice"] == "left" for a in honest]) > 0.95
    assert np.mean([a.get("level") == 2 for a in honest]) > 0.6
    inflating = answers_of("honest", payload, factor=1.8)
    assert np.mean([a.get("level", 0) for a in inflating]) > np.mean(
        [a.get("level", 0) for a in honest]
    )
    assert {a["choice"] for a in answers_of("honest", task(3, 3))} >= {"tie"}
    assert all(a["choice"] != "tie" for a in answers_of("honest", task(3, 3, unsure=False)))


def test_a_spammer_answers_every_option_alike() -> None:
    spam = answers_of("spammer", task(5, 0), n=2700)
    counts = pd.Series([f"{a['choice']}{a.get('level', '')}" for a in spam]).value_counts()
    assert len(counts) == 9 and counts.min() > 2700 / 9 * 0.75
    assert all(a["choice"] == "tie" for a in answers_of("always_tie", task(5, 0)))
    assert all(a["choice"] == "left" for a in answers_of("same_side", task(0, 5)))


def test_a_level_goes_with_a_side() -> None:
    with pytest.raises(ValidationError, match="a level goes with a side"):
        PreferenceAnswer(choice="tie", level=2)
    assert PreferenceAnswer(choice="left", level=2, rationale="fuller list").level == 2


# --- the campaign file, golden levels, preflight ------------------------------------------------


def graded_copy(tmp_path: Path) -> Path:
    shutil.copytree(CAMPAIGNS / "graded", tmp_path / "graded")
    text = (CAMPAIGNS / "graded.yaml").read_text(encoding="utf-8")
    path = tmp_path / "graded.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_demo_campaign_file_loads_with_its_scale(tmp_path: Path) -> None:
    spec = load_campaign(graded_copy(tmp_path))
    assert spec.preferences is not None and spec.preferences.graded is not None
    assert spec.preferences.graded.labels == LABELS
    check_inputs(spec)
    need = required_capabilities(spec)
    assert {Capability.GRADED_PAIRWISE, Capability.RATIONALE} <= need


def test_levels_out_of_order_are_refused_on_their_line(tmp_path: Path) -> None:
    path = graded_copy(tmp_path)
    text = path.read_text(encoding="utf-8").replace(
        "{label: better, margin: 0.667}", "{label: better, margin: 0.1}"
    )
    path.write_text(text, encoding="utf-8")
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "margin: 0.1}" in t)
    with pytest.raises(SpecError) as info:
        load_campaign(path)
    message = str(info.value)
    assert f"graded.yaml:{line}: field 'preferences.graded.levels.2.margin'" in message
    assert "\n" not in message


def test_a_golden_level_off_the_scale_names_its_line(tmp_path: Path) -> None:
    path = graded_copy(tmp_path)
    golden = tmp_path / "graded" / "golden-pairs.jsonl"
    rows = [json.loads(line) for line in golden.read_text(encoding="utf-8").splitlines()]
    rows[2]["level"] = "hugely better"
    golden.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(SpecError, match=r"golden-pairs.jsonl:3: field 'level': 'hugely better'"):
        check_inputs(load_campaign(path))


def test_routing_a_graded_campaign_needs_a_judge_that_answers_levels() -> None:
    spec = CampaignSpec.model_validate(
        {
            "name": "x",
            "preferences": {
                "candidates_file": "c.jsonl",
                "export": {"path": "p.jsonl"},
                "graded": {},
            },
            "routing": {},
        }
    )
    work = routed(spec)
    assert work is not None
    assert set(work.capabilities) == {Capability.PAIRWISE, Capability.GRADED_PAIRWISE}


def test_a_connector_without_graded_comparisons_is_refused_at_preflight(tmp_path: Path) -> None:
    from crowdloop.connectors.replay.connector import ReplayConnector
    from crowdloop.stages.preflight import check_capabilities

    spec = load_campaign(graded_copy(tmp_path))
    assert Capability.GRADED_PAIRWISE not in ReplayConnector.capabilities
    connector = ReplayConnector.__new__(ReplayConnector)
    with pytest.raises(NotSupported, match="graded_pairwise"):
        check_capabilities(spec, connector)


def test_golden_levels_pass_within_one_step() -> None:
    assert level_passes(3, 4) and level_passes(4, 4) and not level_passes(2, 4)
    assert level_passes(None, None) and not level_passes(None, 2)


def test_an_answer_off_the_campaigns_scale_is_quarantined_at_sync() -> None:
    assert level_problem(PreferenceAnswer(choice="left", level=4), 4) is None
    assert level_problem(PreferenceAnswer(choice="tie"), 4) is None
    assert level_problem(PreferenceAnswer(choice="left"), 4) == (
        "a graded comparison answered without a level"
    )
    assert "not on the campaign's 4-level scale" in str(
        level_problem(PreferenceAnswer(choice="right", level=5), 4)
    )
    assert level_problem(PreferenceAnswer(choice="left", level=1), 0) == (
        "a level on a plain comparison"
    )
    assert level_problem(PreferenceAnswer(choice="left"), 0) is None


def test_careful_workers_sometimes_give_a_rationale_and_careless_ones_never() -> None:
    crowd = Crowd(CrowdConfig(honest=10, spammer=10, noisy=0, left_bias=0), 5)
    verify = VerifyTask(
        instruction="?", target="prompt", prompt="", text="List the top 5 rivers.", rationale=True
    )
    plain = verify.model_copy(update={"rationale": False})
    given: dict[str, list[bool]] = {"honest": [], "spammer": []}
    for n in range(40):
        for worker in crowd.workers:
            _, answer = crowd.work(worker, f"t{n}", verify, "accept")
            given[worker.archetype].append("rationale" in answer)
            _, bare = crowd.work(worker, f"t{n}", plain, "accept")
            assert "rationale" not in bare
    assert 0.2 < np.mean(given["honest"]) < 0.4
    assert not any(given["spammer"])
