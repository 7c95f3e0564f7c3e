"""Which aggregation ranks better per dollar: Plackett-Luce, Bradley-Terry over the implied
pairs (three weightings), or mean rank.

The simulated crowd (crowdloop.simulator.crowd) ranks the demo's ranking candidates
(crowdloop.demo.ranking: six model answers per prompt) in sets of `k`, each set by
`overlap` distinct random workers; no golden filtering, so this measures the aggregators
alone on the same rankings. Cost is rankings x the campaign default reward (0.08 USD).
Accuracy is Kendall's tau-b of each prompt's aggregated order against the hidden
qualities (mean over prompts), and the share of pairs with different true qualities that
the order gets right.

    .venv/bin/python bench/bench_ranking.py --seeds 0 1 2 --overlaps 1 2 3 5

`--campaign` instead runs the demo campaign file (campaigns/ranking.yaml: golden rankings,
worker checks and all) on the simulated marketplace without Prefect, per seed and crowd,
each in a fresh SQLite database, and sets the exported order beside mean rank over the
same trusted rankings and over every ranking (the naive baseline):

    .venv/bin/python bench/bench_ranking.py --campaign --seeds 0 1 2 --crowds typical spammy
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from collections import defaultdict
from decimal import Decimal
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from crowdloop.aggregation.rankings import ranking_scores, worker_weights
from crowdloop.demo.ranking import RANKING_MODELS, kendall_tau
from crowdloop.demo.run import crowd_catch
from crowdloop.demo.top5 import generate_candidates
from crowdloop.ids import seeded_rng
from crowdloop.models.domain import RankTask
from crowdloop.models.spec import load_campaign
from crowdloop.simulator.config import CrowdConfig, SimulatorConfig
from crowdloop.simulator.crowd import Crowd
from crowdloop.simulator.runner import SimulatorServer
from crowdloop.simulator.world import response_quality
from crowdloop.stages.ranking import ranking_sets

REWARD = Decimal("0.08")
CAMPAIGNS = Path(__file__).resolve().parent.parent / "campaigns"
CROWDS: dict[str, CrowdConfig] = {
    "typical": CrowdConfig(honest=30, noisy=8, spammer=6, left_bias=4),
    "spammy": CrowdConfig(honest=20, noisy=8, spammer=16, left_bias=4),
    "same_side": CrowdConfig(honest=26, noisy=6, same_side=12, spammer=0, left_bias=0),
    "noisy": CrowdConfig(honest=10, noisy=30, spammer=4, left_bias=4),
}
METHODS: dict[str, tuple[str, str]] = {
    "Plackett-Luce": ("plackett_luce", "choices"),
    "BT, pairs weighted 2/K (K-1 per ranking)": ("bradley_terry", "choices"),
    "BT, pairs weighted 1/C(K,2) (1 per ranking)": ("bradley_terry", "one"),
    "BT, every pair a vote (C(K,2) per ranking)": ("bradley_terry", "pairs"),
    "mean rank (naive)": ("mean_rank", "choices"),
    "PL, workers weighted": ("plackett_luce", "workers"),
    "BT 2/K, workers weighted": ("bradley_terry", "workers"),
}


def run(
    seed: int, crowd_name: str, overlap: int, k: int, prompts_per_topic: int
) -> dict[str, dict[str, float]]:
    crowd = Crowd(CROWDS[crowd_name], seed)
    rows = generate_candidates(None, seed, RANKING_MODELS, prompts_per_topic=prompts_per_topic)
    by_prompt: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        by_prompt[row["prompt_id"]].append(row)
    ids = sorted({r["response_id"] for r in rows})
    code = {r: i for i, r in enumerate(ids)}
    quality = {r["response_id"]: response_quality(r["prompt"], r["response"]) for r in rows}
    rankings: list[tuple[list[int], list[int]]] = []
    who: list[str] = []
    for pid, cands in sorted(by_prompt.items()):
        text = {c["response_id"]: c["response"] for c in cands}
        for j, members in enumerate(ranking_sets(list(text), k, 3, f"{seed}/{pid}")):
            shown = list(members)
            seeded_rng(seed, "bench-order", pid, j).shuffle(shown)
            task = RankTask(
                instruction="Rank",
                prompt=cands[0]["prompt"],
                responses=tuple(text[r] for r in shown),
            )
            workers = crowd.permutation(f"{pid}/{j}")
            for _ in range(overlap):
                worker = crowd.by_id[next(workers)]
                _, answer = crowd.work(worker, f"{pid}/{j}/{worker.id}", task, None)
                rankings.append(([code[r] for r in shown], answer["ranks"]))
                who.append(worker.id)
    out: dict[str, dict[str, float]] = {}
    for name, (method, how) in METHODS.items():
        if how == "workers":
            weights = worker_weights(rankings, who, len(ids), method)  # type: ignore[arg-type]
            scores = ranking_scores(rankings, len(ids), method, "choices", weights)  # type: ignore[arg-type]
        else:
            scores = ranking_scores(rankings, len(ids), method, how)  # type: ignore[arg-type]
        taus, right, total = [], 0, 0
        for cands in by_prompt.values():
            rids = [c["response_id"] for c in cands]
            s = [scores[code[r]] for r in rids]
            q = [quality[r] for r in rids]
            taus.append(kendall_tau(s, q))
            for a, b in combinations(range(len(rids)), 2):
                if q[a] != q[b]:
                    total += 1
                    right += int((s[a] - s[b]) * (q[a] - q[b]) > 0)
        out[name] = {"tau": float(np.mean(taus)), "pair_accuracy": right / total}
    out["_cost"] = {"usd": float(REWARD * len(rankings)), "rankings": float(len(rankings))}
    return out


def run_campaign(seed: int, crowd_name: str, folder: Path) -> dict[str, float]:
    """The demo ranking campaign on a fresh database and simulator; its figures."""
    import yaml

    from crowdloop.demo.ranking import order_tau, score_rankings_against_truth
    from crowdloop.stages import ranking
    from crowdloop.stages.rounds import run_bare

    folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(CAMPAIGNS / "ranking", folder / "ranking", dirs_exist_ok=True)
    data = yaml.safe_load((CAMPAIGNS / "ranking.yaml").read_text())
    data["output_dir"] = "out"
    data["ranking"]["export"] = {
        "pairs_path": "out/pairs.jsonl",
        "rankings_path": "out/rankings.jsonl",
    }
    (folder / "ranking.yaml").write_text(yaml.safe_dump(data))
    os.environ["CROWDLOOP_DATABASE_URL"] = f"sqlite:///{folder / 'crowdloop.db'}"
    with SimulatorServer(SimulatorConfig(seed=seed, crowd=CROWDS[crowd_name])) as sim:
        os.environ["CROWDLOOP_SIMULATOR_URL"] = sim.url
        os.environ["CROWDLOOP_SIMULATOR_TOKEN"] = sim.token
        spec = load_campaign(folder / "ranking.yaml")
        assert spec.ranking is not None
        cost = run_bare(spec)
        ranking.aggregate_rankings(spec.name, spec.ranking)
        ranking.export_rankings(spec.name, spec.ranking)
        truth = score_rankings_against_truth(
            spec.name, folder / "out" / "rankings.jsonl", folder / "out" / "pairs.jsonl"
        )
        trusted_mean_rank = order_tau(spec.name, ranking.rankings_frame(spec.name), "mean_rank")
        catch = crowd_catch(sim.url)
    return {
        "tau": truth.tau,
        "trusted_mean_rank_tau": trusted_mean_rank,
        "naive_tau": truth.baseline_tau,
        "pairs": truth.pairs,
        "pairs_right": truth.pairs_right,
        "cost": float(cost),
        "bad_blocked": catch.spammers_blocked,
        "bad": catch.spammers,
        "honest_blocked": catch.honest_blocked,
    }


def campaign_table(seeds: list[int], crowds: list[str], root: Path) -> list[dict[str, Any]]:
    results = []
    print(
        "| crowd | exported order (PL on trusted rankings) | mean rank, trusted rankings "
        "| naive: mean rank, every ranking | TRL pairs (truly better chosen) | cost (USD) "
        "| random rankers blocked | honest blocked |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for crowd_name in crowds:
        runs = [run_campaign(seed, crowd_name, root / f"{crowd_name}-{seed}") for seed in seeds]
        results.append({"crowd": crowd_name, "seeds": seeds, "runs": runs})

        def cell(key: str, runs: list[dict[str, float]] = runs) -> str:
            values = [r[key] for r in runs]
            return f"{np.mean(values):.3f} (min {min(values):.3f})"

        print(
            f"| {crowd_name} | {cell('tau')} | {cell('trusted_mean_rank_tau')} | "
            f"{cell('naive_tau')} | {np.mean([r['pairs'] for r in runs]):.0f} "
            f"({np.mean([r['pairs_right'] for r in runs]):.3f}) | "
            f"{np.mean([r['cost'] for r in runs]):.2f} | "
            f"{sum(int(r['bad_blocked']) for r in runs)}/{sum(int(r['bad']) for r in runs)} | "
            f"{sum(int(r['honest_blocked']) for r in runs)} |"
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--crowds", nargs="+", default=list(CROWDS), choices=list(CROWDS))
    parser.add_argument("--overlaps", type=int, nargs="+", default=[1, 2, 3, 5])
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--prompts-per-topic", type=int, default=2)
    parser.add_argument("--out", help="write the raw results as JSON")
    parser.add_argument("--campaign", action="store_true", help="run the demo campaign file")
    parser.add_argument("--workdir", default="bench/out/ranking", help="--campaign's folders")
    args = parser.parse_args()
    if args.campaign:
        table = campaign_table(args.seeds, args.crowds, Path(args.workdir))
        if args.out:
            Path(args.out).write_text(json.dumps({"args": vars(args), "results": table}, indent=1))
        return
    results: list[dict[str, Any]] = []
    for crowd_name in args.crowds:
        for overlap in args.overlaps:
            runs = [run(s, crowd_name, overlap, args.k, args.prompts_per_topic) for s in args.seeds]
            results.append({"crowd": crowd_name, "overlap": overlap, "runs": runs})
    print(f"| crowd | rankings per set (cost USD) | {' | '.join(METHODS)} |")
    print(f"|---|---|{'---|' * len(METHODS)}")
    for r in results:
        runs = r["runs"]
        cost = np.mean([x["_cost"]["usd"] for x in runs])
        cells = []
        for name in METHODS:
            taus = [x[name]["tau"] for x in runs]
            acc = np.mean([x[name]["pair_accuracy"] for x in runs])
            cells.append(f"{np.mean(taus):.3f} (min {min(taus):.3f}; pairs {acc:.3f})")
        print(f"| {r['crowd']} | {r['overlap']} ({cost:.2f}) | {' | '.join(cells)} |")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"args": vars(args), "results": results}, fh, indent=1)


if __name__ == "__main__":
    main()
