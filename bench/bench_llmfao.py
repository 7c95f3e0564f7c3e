"""Benchmark on real crowd data (LLMFAO): aggregators, crowd vs GPT-4, quality filtering, overlap.

    .venv/bin/python bench/bench_llmfao.py                 # the data next to the repository
    .venv/bin/python bench/bench_llmfao.py --data DIR --seeds 20

LLMFAO (github.com/dustalov/llmfao, CC BY 4.0, Dmitry Ustalov): 2,139 pairs of LLM answers to
13 prompts, 8,931 crowd judgments (left / right / tie) by 124 workers, and one GPT-4
judgment per pair. Items ranked here are the 59 models, over all prompts.

Sections:

(a) Model rankings by each aggregator in `crowdloop.aggregation` (Bradley-Terry; the
    worker-aware BT and Dawid-Skene modules when they exist, imported lazily) and by
    evalica's Bradley-Terry, with pairwise Spearman / Kendall agreement. Dawid-Skene is a
    label aggregator: it gives each pair a posterior over left/right/tie, and the ranking is
    a Bradley-Terry fit with one comparison per pair whose outcome is P(left) + P(tie) / 2.
(b) The crowd's majority per pair (strict plurality of left/right/tie) against GPT-4,
    overall and without ties; also crowdloop's pair verdict and single judgments.
(c) What golden filtering would have changed. The crowd file has no golden answers, so a
    worker's quality is estimated by a proxy: agreement with GPT-4 where both took a side
    (GPT-4 as the "golden" answer: a proxy, and a biased one, since GPT-4 has its own
    preferences), leave-one-out agreement with the other workers' plurality on the same
    pair, and Dawid-Skene's unsupervised skill. The lowest-scoring workers are dropped and
    the Bradley-Terry ranking refitted.
(d) Overlap: Bradley-Terry on the first k judgments of every pair (recorded order, i.e.
    what overlap k would have collected) and on k random ones, against the full-data
    ranking; and a replay of crowdloop's dynamic overlap (start at 2, ask once more while
    the pair verdict's confidence is below the target, at most 5) over the recorded order.
(e) Run times of each step.

Prints figures only; asserts nothing.
"""

from __future__ import annotations

import argparse
import importlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import kendalltau, spearmanr

from crowdloop.aggregation.bradley_terry import LABEL_OUTCOMES, bradley_terry
from crowdloop.aggregation.pairs import pair_verdicts
from crowdloop.quality import GoldenPolicy, assess_workers

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "llmfao"
LABELS = ("left", "right", "tie")
TIMES: dict[str, float] = {}

Ranker = Callable[[pd.DataFrame], pd.Series]


@contextmanager
def timed(name: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        TIMES[name] = time.perf_counter() - start


def heading(text: str) -> None:
    print(f"\n=== {text} " + "=" * max(0, 86 - len(text)))


# --- data ------------------------------------------------------------------------------------


def load(data: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Crowd judgments (recorded order, sides as recorded) and GPT-4's judgment per pair."""
    crowd = pd.read_csv(data / "crowd-comparisons.csv", dtype={"worker": str})
    crowd = crowd.rename(columns={"id": "pair", "winner": "label"})
    crowd["order"] = np.arange(len(crowd))
    gpt4 = pd.read_csv(data / "gpt4-crowd-comparisons.csv")
    gpt4 = gpt4.rename(columns={"id": "pair", "winner": "label"})
    return crowd[["pair", "worker", "left", "right", "label", "order"]], gpt4


# --- rankers ---------------------------------------------------------------------------------


def bt(frame: pd.DataFrame, *, prior: float = 1.0, weights: np.ndarray | None = None) -> pd.Series:
    """crowdloop's Bradley-Terry over models (log-strengths)."""
    models = pd.Index(sorted(set(frame["left"]) | set(frame["right"])))
    outcome = (
        frame["outcome"].to_numpy(np.float64)
        if "outcome" in frame
        else frame["label"].map(LABEL_OUTCOMES).to_numpy(np.float64)
    )
    fit = bradley_terry(
        models.get_indexer(frame["left"]),
        models.get_indexer(frame["right"]),
        outcome,
        len(models),
        prior=prior,
        weights=weights,
    )
    return pd.Series(fit.scores, index=models)


def bt_mle(frame: pd.DataFrame) -> pd.Series:
    return bt(frame, prior=0.0)


def evalica_bt(frame: pd.DataFrame) -> pd.Series:
    import evalica

    winners = frame["label"].map(
        {"left": evalica.Winner.X, "right": evalica.Winner.Y, "tie": evalica.Winner.Draw}
    )
    result = evalica.bradley_terry(frame["left"], frame["right"], winners, tie_weight=0.5)
    return pd.Series(np.log(result.scores.to_numpy(np.float64)), index=result.scores.index)


def optional(module: str) -> ModuleType | None:
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def worker_aware_ranker(module: ModuleType) -> Ranker:
    def rank(frame: pd.DataFrame) -> pd.Series:
        fitted = module.WorkerAwareBT().fit(frame[["worker", "left", "right", "label"]])
        return pd.Series(fitted.scores_, dtype=np.float64)

    return rank


def dawid_skene_posteriors(module: ModuleType, frame: pd.DataFrame) -> Any:
    model = module.NumpyDawidSkene()
    return model.fit(frame.rename(columns={"pair": "task"})[["task", "worker", "label"]])


def dawid_skene_ranker(module: ModuleType) -> Ranker:
    def rank(frame: pd.DataFrame) -> pd.Series:
        probas = dawid_skene_posteriors(module, frame).probas_.reindex(
            columns=list(LABELS), fill_value=0.0
        )
        pairs = frame.drop_duplicates("pair").set_index("pair").loc[probas.index]
        per_pair = pd.DataFrame(
            {
                "left": pairs["left"].to_numpy(),
                "right": pairs["right"].to_numpy(),
                "outcome": (probas["left"] + probas["tie"] / 2).to_numpy(),
            }
        )
        return bt(per_pair)

    return rank


def rankers() -> tuple[dict[str, Ranker], list[str]]:
    found: dict[str, Ranker] = {"bradley_terry": bt, "bradley_terry_mle": bt_mle}
    skipped = []
    worker_aware = optional("crowdloop.aggregation.worker_aware")
    if worker_aware is not None and hasattr(worker_aware, "WorkerAwareBT"):
        found["worker_aware"] = worker_aware_ranker(worker_aware)
    else:
        skipped.append("worker_aware (crowdloop.aggregation.worker_aware not present)")
    dawid_skene = optional("crowdloop.aggregation.dawid_skene")
    if dawid_skene is not None and hasattr(dawid_skene, "NumpyDawidSkene"):
        found["dawid_skene+bt"] = dawid_skene_ranker(dawid_skene)
    else:
        skipped.append("dawid_skene (crowdloop.aggregation.dawid_skene not present)")
    found["evalica_bt"] = evalica_bt
    return found, skipped


# --- comparing rankings ------------------------------------------------------------------------


def agreement(a: pd.Series, b: pd.Series) -> tuple[float, float]:
    common = a.index.intersection(b.index)
    rho = float(spearmanr(a[common], b[common]).statistic)
    tau = float(kendalltau(a[common], b[common]).statistic)
    return rho, tau


def ranks(scores: pd.Series) -> pd.Series:
    return scores.rank(ascending=False, method="min").astype(int)


def top(scores: pd.Series, n: int) -> set[str]:
    return set(scores.sort_values(ascending=False).index[:n])


# --- sections --------------------------------------------------------------------------------


def section_rankings(crowd: pd.DataFrame, data: Path) -> dict[str, pd.Series]:
    heading("(a) model rankings by aggregator (59 models, 8,931 judgments)")
    found, skipped = rankers()
    scores: dict[str, pd.Series] = {}
    for name, rank in found.items():
        with timed(f"fit {name}"):
            scores[name] = rank(crowd)
    for s in skipped:
        print(f"skipped: {s}")
    names = list(scores)
    table = pd.DataFrame({n: ranks(scores[n]) for n in names})
    table = table.sort_values(names[0])
    print(f"rank of each model (sorted by {names[0]}; '=' same rank as {names[0]}):")
    shown = table.copy().astype(str)
    for n in names[1:]:
        same = table[n] == table[names[0]]
        shown.loc[same, n] = "="
    print(shown.to_string())
    print("\nSpearman rho / Kendall tau between aggregators:")
    matrix = pd.DataFrame(index=names, columns=names, dtype=object)
    for a in names:
        for b in names:
            rho, tau = agreement(scores[a], scores[b])
            matrix.loc[a, b] = f"{rho:.3f}/{tau:.3f}"
    print(matrix.to_string())
    print("\ntop-10 overlap with bradley_terry:")
    for n in names[1:]:
        print(f"  {n:<20} {len(top(scores[n], 10) & top(scores[names[0]], 10))}/10")
    reference = data / "evalica-reference-scores.csv"
    if reference.is_file():
        ref = pd.read_csv(reference)
        ref_bt = ref[ref["algorithm"] == "bradley_terry"].set_index("item")["score"]
        mine = np.exp(scores["evalica_bt"])
        mine = mine / mine.sum() * ref_bt.sum()
        rho, tau = agreement(np.log(ref_bt), scores["evalica_bt"])
        diff = float(np.max(np.abs(mine.reindex(ref_bt.index) - ref_bt)))
        print(
            f"\nevalica_bt vs evalica-reference-scores.csv (bradley_terry): rho {rho:.4f}, "
            f"tau {tau:.4f}, max |score diff| after normalising {diff:.2e}"
        )
        rho, tau = agreement(np.log(ref_bt), scores["bradley_terry"])
        print(f"crowdloop bradley_terry vs the reference: rho {rho:.4f}, tau {tau:.4f}")
    return scores


def plurality(frame: pd.DataFrame) -> pd.DataFrame:
    """Per pair: vote counts and the strict plurality label ('' when there is none)."""
    counts = pd.crosstab(frame["pair"], frame["label"]).reindex(columns=list(LABELS), fill_value=0)
    top_count = counts.max(axis=1)
    unique = (counts.eq(top_count, axis=0)).sum(axis=1) == 1
    counts["majority"] = np.where(unique, counts[list(LABELS)].idxmax(axis=1), "")
    return counts


def kappa(a: pd.Series, b: pd.Series) -> float:
    from sklearn.metrics import cohen_kappa_score

    return float(cohen_kappa_score(a, b))


def section_gpt4(crowd: pd.DataFrame, gpt4: pd.DataFrame, full: pd.Series) -> pd.Series:
    heading("(b) crowd majority per pair vs GPT-4")
    with timed("crowd vs gpt-4"):
        votes = plurality(crowd)
        g = gpt4.set_index("pair")["label"]
        both = votes.join(g.rename("gpt4"), how="inner")
        decided = both[both["majority"] != ""]
        print(
            f"pairs: {len(both)}; with a strict crowd plurality: {len(decided)} "
            f"({len(both) - len(decided)} split evenly)"
        )
        print(f"crowd majority labels: {decided['majority'].value_counts().to_dict()}")
        print(f"GPT-4 labels:          {both['gpt4'].value_counts().to_dict()}")
        agree = (decided["majority"] == decided["gpt4"]).mean()
        print(
            f"3-way agreement (left/right/tie): {agree:.3f} over {len(decided)} pairs, "
            f"Cohen's kappa {kappa(decided['majority'], decided['gpt4']):.3f}"
        )
        sided = decided[(decided["majority"] != "tie") & (decided["gpt4"] != "tie")]
        print(
            f"excluding ties (neither says tie): {(sided['majority'] == sided['gpt4']).mean():.3f} "
            f"over {len(sided)} pairs"
        )
        no_crowd_tie = decided[decided["majority"] != "tie"]
        print(
            f"pairs the crowd majority decided (not tie): GPT-4 agrees on "
            f"{(no_crowd_tie['majority'] == no_crowd_tie['gpt4']).mean():.3f} of "
            f"{len(no_crowd_tie)}"
        )
        verdicts = pair_verdicts(crowd[["pair", "label"]]).set_index("pair").join(g.rename("gpt4"))
        v_sided = verdicts[(verdicts["winner"] != "tie") & (verdicts["gpt4"] != "tie")]
        print(
            f"crowdloop pair verdict (Beta posterior, tie band): 3-way "
            f"{(verdicts['winner'] == verdicts['gpt4']).mean():.3f} over {len(verdicts)} pairs; "
            f"without ties {(v_sided['winner'] == v_sided['gpt4']).mean():.3f} over {len(v_sided)}"
        )
        j = crowd.merge(gpt4[["pair", "label"]].rename(columns={"label": "gpt4"}), on="pair")
        j_sided = j[(j["label"] != "tie") & (j["gpt4"] != "tie")]
        print(
            f"single judgments: {(j['label'] == j['gpt4']).mean():.3f} agree with GPT-4 "
            f"(3-way, {len(j)}); {(j_sided['label'] == j_sided['gpt4']).mean():.3f} where "
            f"both took a side ({len(j_sided)})"
        )
        sides = crowd.drop_duplicates("pair").set_index("pair")[["left", "right"]]
        gpt_frame = sides.join(g).reset_index()
        gpt_scores = bt(gpt_frame)
        rho, tau = agreement(gpt_scores, full)
        print(
            f"Bradley-Terry on GPT-4's 2,139 judgments vs the crowd's: rho {rho:.3f}, tau {tau:.3f}"
        )
    return gpt_scores


def loo_majority_agreement(crowd: pd.DataFrame) -> pd.DataFrame:
    """Per judgment: does it match the strict plurality of the *other* judgments of its pair?"""
    counts = pd.crosstab(crowd["pair"], crowd["label"]).reindex(columns=list(LABELS), fill_value=0)
    per = counts.loc[crowd["pair"]].to_numpy()
    mine = np.stack([(crowd["label"] == lab).to_numpy() for lab in LABELS], axis=1)
    others = per - mine.astype(int)
    best = others.max(axis=1)
    unique = (others == best[:, None]).sum(axis=1) == 1
    scored = unique & (best > 0)
    agree = (others.argmax(axis=1) == mine.argmax(axis=1)) & scored
    return pd.DataFrame({"worker": crowd["worker"].to_numpy(), "scored": scored, "agree": agree})


def section_filtering(
    crowd: pd.DataFrame, gpt4: pd.DataFrame, full: pd.Series, gpt_scores: pd.Series
) -> None:
    heading("(c) what golden filtering would have changed (proxies: no golden answers recorded)")
    min_scored = 10
    with timed("worker proxies"):
        j = crowd.merge(gpt4[["pair", "label"]].rename(columns={"label": "gpt4"}), on="pair")
        sided = j[(j["label"] != "tie") & (j["gpt4"] != "tie")]
        hit = (sided["label"] == sided["gpt4"]).groupby(sided["worker"])
        gpt_proxy = pd.DataFrame({"scored": hit.size(), "agree": hit.mean()})
        loo = loo_majority_agreement(crowd)
        loo = loo[loo["scored"]]
        loo_proxy = loo.groupby("worker").agg(scored=("agree", "size"), agree=("agree", "mean"))
        proxies: dict[str, pd.DataFrame] = {
            "gpt4 (both took a side)": gpt_proxy,
            "leave-one-out plurality": loo_proxy,
        }
        ds = optional("crowdloop.aggregation.dawid_skene")
        if ds is not None and hasattr(ds, "NumpyDawidSkene"):
            skills = dawid_skene_posteriors(ds, crowd).skills_
            n = crowd.groupby("worker").size()
            proxies["dawid-skene skill"] = pd.DataFrame(
                {"scored": n.reindex(skills.index), "agree": skills}
            )
    per_worker = crowd.groupby("worker").size()
    print(
        f"{len(per_worker)} workers; judgments per worker: median {per_worker.median():.0f}, "
        f"max {per_worker.max()}; workers are ranked only with >= {min_scored} scored judgments"
    )
    base_gpt = agreement(full, gpt_scores)[0]
    rows = []
    for name, proxy in proxies.items():
        eligible = proxy[proxy["scored"] >= min_scored].sort_values("agree")
        q = eligible["agree"].quantile([0.1, 0.5, 0.9]).round(3).tolist()
        print(f"proxy {name!r}: {len(eligible)} eligible workers, agreement p10/p50/p90 {q}")
        for share in (0.1, 0.2):
            drop = list(eligible.index[: round(len(eligible) * share)])
            rows.append(_refit(crowd, full, gpt_scores, f"{name}: bottom {share:.0%}", drop))
    # The golden policy itself, with GPT-4's side as the golden answer: block when
    # P(accuracy < 0.5) >= 0.8 after at least 10 answers, i.e. worse than a coin vs GPT-4.
    policy = GoldenPolicy(min_golden=min_scored, min_accuracy=0.5, block_confidence=0.8)
    assessed = assess_workers(
        pd.DataFrame({"worker": sided["worker"], "correct": sided["label"] == sided["gpt4"]}),
        policy,
    )
    blocked = list(assessed.loc[assessed["status"] == "blocked", "worker"])
    rows.append(_refit(crowd, full, gpt_scores, "golden policy vs GPT-4 (acc<0.5)", blocked))
    table = pd.DataFrame(rows).set_index("filter")
    print(table.to_string())
    print(f"(no filtering: rho vs GPT-4 ranking {base_gpt:.3f})")


def _refit(
    crowd: pd.DataFrame, full: pd.Series, gpt_scores: pd.Series, label: str, drop: list[str]
) -> dict[str, Any]:
    with timed(f"refit {label}"):
        kept = crowd[~crowd["worker"].isin(drop)]
        scores = bt(kept)
    rho, tau = agreement(scores, full)
    moved = (ranks(scores) - ranks(full).reindex(scores.index)).abs()
    biggest = moved.sort_values(ascending=False).head(2)
    return {
        "filter": label,
        "workers": len(drop),
        "judgments dropped": f"{len(crowd) - len(kept)} ({1 - len(kept) / len(crowd):.1%})",
        "rho/tau vs all": f"{rho:.3f}/{tau:.3f}",
        "top10 same": f"{len(top(scores, 10) & top(full, 10))}/10",
        "max rank move": ", ".join(f"{m} {int(d)}" for m, d in biggest.items()),
        "rho vs GPT-4 BT": f"{agreement(scores, gpt_scores)[0]:.3f}",
    }


def section_overlap(crowd: pd.DataFrame, full: pd.Series, seeds: int) -> None:
    heading("(d) overlap: judgments per pair vs agreement with the full-data ranking")
    position = crowd.groupby("pair").cumcount()
    recorded = crowd.groupby("pair").size()
    print(f"recorded judgments per pair: {recorded.value_counts().sort_index().to_dict()}")
    rows = []
    with timed("subsampling"):
        for k in range(1, 6):
            first = crowd[position < k]
            rho, tau = agreement(bt(first), full)
            rand_rho, rand_tau = [], []
            for seed in range(seeds):
                shuffled = crowd.sample(frac=1.0, random_state=seed)
                pick = shuffled[shuffled.groupby("pair").cumcount() < k]
                r, t = agreement(bt(pick), full)
                rand_rho.append(r)
                rand_tau.append(t)
            rows.append(
                {
                    "k": k,
                    "judgments": len(first),
                    "share": f"{len(first) / len(crowd):.1%}",
                    "first-k rho/tau": f"{rho:.3f}/{tau:.3f}",
                    f"random-k rho (mean±sd, {seeds})": (
                        f"{np.mean(rand_rho):.3f}±{np.std(rand_rho):.3f}"
                    ),
                    "random-k tau": f"{np.mean(rand_tau):.3f}±{np.std(rand_tau):.3f}",
                }
            )
    print(pd.DataFrame(rows).set_index("k").to_string())
    print(
        "\ndynamic overlap replayed on the recorded order (start 2, +1 while the pair "
        "verdict's confidence < target, max 5, never more than recorded):"
    )
    rows = []
    with timed("dynamic overlap"):
        for target in (0.7, 0.8, 0.9):
            used = dynamic_overlap(crowd, position, recorded, target=target)
            chosen = crowd[position < used.reindex(crowd["pair"]).to_numpy()]
            rho, tau = agreement(bt(chosen), full)
            rows.append(
                {
                    "target confidence": target,
                    "judgments": len(chosen),
                    "saved vs recorded": f"{1 - len(chosen) / len(crowd):.1%}",
                    "rho/tau vs all": f"{rho:.3f}/{tau:.3f}",
                    "top10 same": f"{len(top(bt(chosen), 10) & top(full, 10))}/10",
                }
            )
    print(pd.DataFrame(rows).set_index("target confidence").to_string())


def dynamic_overlap(
    crowd: pd.DataFrame,
    position: pd.Series,
    recorded: pd.Series,
    *,
    target: float,
    start: int = 2,
    cap: int = 5,
) -> pd.Series:
    """Judgments per pair crowdloop's dynamic overlap would have asked for (recorded order)."""
    limit = recorded.clip(upper=cap)
    used = recorded.clip(upper=start)
    while True:
        so_far = crowd[position < used.reindex(crowd["pair"]).to_numpy()]
        verdicts = pair_verdicts(so_far[["pair", "label"]]).set_index("pair")
        unsure = verdicts["confidence"].reindex(used.index) < target
        more = unsure & (used < limit)
        if not more.any():
            return used
        used = used + more.astype(int)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seeds", type=int, default=20, help="random subsamples per k")
    args = parser.parse_args()
    if not (args.data / "crowd-comparisons.csv").is_file():
        raise SystemExit(f"LLMFAO data not found in {args.data}")
    started = time.perf_counter()
    with timed("load"):
        crowd, gpt4 = load(args.data)
    print(
        f"LLMFAO: {crowd['pair'].nunique()} pairs, {len(crowd)} judgments, "
        f"{crowd['worker'].nunique()} workers, labels {crowd['label'].value_counts().to_dict()}"
    )
    scores = section_rankings(crowd, args.data)
    full = scores["bradley_terry"]
    gpt_scores = section_gpt4(crowd, gpt4, full)
    section_filtering(crowd, gpt4, full, gpt_scores)
    section_overlap(crowd, full, args.seeds)
    heading("(e) run times")
    for name, seconds in TIMES.items():
        print(f"  {name:<55} {seconds * 1000:9.1f} ms")
    print(f"  {'total':<55} {(time.perf_counter() - started) * 1000:9.1f} ms")


if __name__ == "__main__":
    main()
