"""Benchmark: the SFT half of a campaign (written prompts and responses, verified by other
workers) on simulated crowds with writers and verifiers bad at one job.

Each crowd is the demo's (30 honest, 8 noisy, 6 random, 4 left-biased) plus workers of
`crowdloop.simulator.crowd.BAD_WRITERS` / `BAD_VERIFIERS`: lazy writers, copy-pasters
(one text everywhere), copiers (other people's texts, half of them with cosmetic edits),
off-topic writers; rubber-stampers, harsh verifiers (reject 80% of everything) and random
verifiers. The demonstrations section of the demo's campaign runs on it (no Prefect:
`crowdloop.stages.rounds.bare_ops`) at the demo's size (12 topics x 2 prompts) and 4x
(12 x 8), two ways:

- today: no text checks, Dawid-Skene verdicts, every accepted text exported, authors
  blocked later kept, golden verifications at their share only, nobody blocked on their
  verification answers or failed checks (the settings before issue 14; the verify task
  carries the topic in both, so "today" here is already better on off-topic prompts than
  it was);
- default: the demo's campaign as shipped: text rules and duplicate checks, the pooled
  weighted vote, export threshold 0.7, texts of authors blocked later verified again,
  golden verifications for verifiers not yet cleared, content-blind verifiers and writers
  failing the checks twice blocked.

Scored against the oracle the simulator answers from (`crowdloop.simulator.world`): a prompt is
good if it asks for five of its slot's topic; a response if 4 of its 5 items are valid;
a text is a copy if its normalised text (prompts) or its set of list items (responses)
is that of an earlier text by another writer (cosmetic edits do not hide it; this is not
the checks' own shingle similarity). A row is bad if its prompt or response is not good
or is a copy. "Good texts lost" is the share of good, original texts that ended rejected
(by the checks or the verdict, or below the export threshold); "MV lost" is what
majority vote over every verification answer of the same run would have lost.

    .venv/bin/python bench/bench_demonstrations.py                    # every crowd, seeds 0-2
    .venv/bin/python bench/bench_demonstrations.py --crowds copiers --seeds 0 --sizes 1
    .venv/bin/python bench/bench_demonstrations.py --out rows.json
    .venv/bin/python bench/bench_demonstrations.py --table rows.json
    .venv/bin/python bench/bench_demonstrations.py --signatures 1000 10000  # earlier campaigns
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from sqlmodel import col, select

from crowdloop.db import session_scope
from crowdloop.demo.run import DemoSize, write_demo_inputs
from crowdloop.models.spec import load_campaign
from crowdloop.models.tables import (
    Item,
    Judgment,
    JudgmentStatus,
    Prompt,
    Response,
    WorkerRecord,
)
from crowdloop.simulator import world
from crowdloop.simulator.config import CrowdConfig, SimulatorConfig
from crowdloop.simulator.crowd import ACCEPT_QUALITY, BAD_VERIFIERS, BAD_WRITERS
from crowdloop.simulator.runner import SimulatorServer
from crowdloop.stages import demonstrations
from crowdloop.stages.export import sft_rows
from crowdloop.stages.plan import register_campaign
from crowdloop.stages.report import record_spend
from crowdloop.stages.rounds import bare_ops, connector_for, run_rounds
from crowdloop.textcheck import normalise

SIZES = {
    1: DemoSize(topics=12, demo_prompts_per_topic=2, golden_verifications=40),
    4: DemoSize(topics=12, demo_prompts_per_topic=8, golden_verifications=40),
}
BASE = {"honest": 30, "noisy": 8, "spammer": 6, "left_bias": 4}
CROWDS: dict[str, tuple[str, CrowdConfig]] = {
    "control": ("demo crowd (30 honest, 8 noisy, 6 random, 4 left-bias)", CrowdConfig(**BASE)),
    "copiers": (
        "+ 4 copy-pasters, 5 copiers (16% of writers)",
        CrowdConfig(**BASE, copy_paste=4, copier=5),
    ),
    "off_topic": ("+ 8 off-topic writers", CrowdConfig(**BASE, off_topic=8)),
    "lazy": ("+ 8 lazy writers", CrowdConfig(**BASE, lazy=8)),
    "rubber": ("+ 16 rubber-stampers (25%)", CrowdConfig(**BASE, rubber_stamp=16)),
    "harsh": ("+ 16 harsh verifiers (25%)", CrowdConfig(**BASE, harsh=16)),
    "random_verifiers": ("+ 16 random verifiers", CrowdConfig(**BASE, random_verifier=16)),
    "mixed": (
        "+ 3 copiers, 2 copy-pasters, 3 off-topic, 3 lazy, 4 rubber, 4 harsh",
        CrowdConfig(**BASE, copier=3, copy_paste=2, off_topic=3, lazy=3, rubber_stamp=4, harsh=4),
    ),
}
TODAY = {
    "aggregation": "dawid_skene",
    "checks": {
        part: {"min_chars": 1, "min_words": 1, "min_lines": 1, "max_chars": None, "pattern": None}
        for part in ("prompt", "response")
    }
    | {"duplicates": False, "off_topic": False},
    "trusted_confidence": 0.5,
    "golden_per_verifier": 0,
    "verifier_blind_confidence": None,
    "block_after_check_failures": None,
    "export": {"path": "sft.jsonl", "min_confidence": 0.0, "blocked_authors": "keep"},
}
CONFIGS: dict[str, dict[str, Any]] = {"today": TODAY, "default": {}}


def _prompt_good(text: str, topic: str | None) -> bool:
    return world.prompt_ok(text) and (not topic or world.prompt_topic(text) == topic)


def _response_good(prompt: str, text: str) -> bool:
    return world.response_quality(prompt, text) >= ACCEPT_QUALITY


def _fingerprint(kind: str, text: str) -> str:
    if kind == "response":
        items = sorted({i.strip().lower() for i in world.parse_list(text)})
        if len(items) >= 2:
            return "|".join(items)
    return normalise(text)


def run_one(root: Path, crowd: CrowdConfig, seed: int, size: int, config: str) -> dict[str, Any]:
    name = f"{config}-{size}x-{seed}-{int(time.time() * 1000) % 10**8}"
    folder = root / name
    os.environ["CROWDLOOP_DATABASE_URL"] = f"sqlite:///{folder / 'db.sqlite'}"
    overrides: dict[str, Any] = {
        "preferences": None,
        "retraining": None,
        "poll_interval_s": 0.05,
        "demonstrations": CONFIGS[config],
    }
    path = write_demo_inputs(folder, name, SIZES[size], seed, overrides)
    started = time.perf_counter()
    with SimulatorServer(SimulatorConfig(seed=seed, crowd=crowd)) as sim:
        os.environ["CROWDLOOP_SIMULATOR_URL"] = sim.url
        os.environ["CROWDLOOP_SIMULATOR_TOKEN"] = sim.token
        spec = load_campaign(path)
        with session_scope() as s:
            register_campaign(s, spec)
        with connector_for(name) as connector:
            run_rounds(name, demonstrations.DEMO_STAGES, bare_ops(connector), advance=True)
            cost = float(record_spend(name, connector))
        workers = sim.state.workers()
    archetype = {w.id: w.archetype for w, _ in workers}
    blocked = {w.id for w, b in workers if b}
    rows = sft_rows(name)
    with session_scope() as s:
        prompts = list(s.exec(select(Prompt).where(Prompt.campaign_id == name)))
        responses = list(s.exec(select(Response).where(Response.campaign_id == name)))
        votes = s.exec(
            select(Item.subject_id, Judgment.label)
            .join(Item, col(Item.id) == col(Judgment.item_id))
            .where(
                Judgment.campaign_id == name,
                Item.kind == "verify",
                col(Item.is_golden).is_(False),
                Item.attempt == 0,
                Judgment.status == JudgmentStatus.VALID,
            )
        ).all()
        order = {
            j.item_id: j.submitted_at
            for j in s.exec(select(Judgment).where(Judgment.campaign_id == name))
        }
        writes = Counter(
            j.worker_id
            for j in s.exec(
                select(Judgment)
                .join(Item, col(Item.id) == col(Judgment.item_id))
                .where(Judgment.campaign_id == name, Item.kind != "verify")
            )
        )
        reasons = {
            r.worker_id: r.block_reason or ""
            for r in s.exec(select(WorkerRecord).where(WorkerRecord.campaign_id == name))
        }
        verifies = Counter(
            j.worker_id
            for j in s.exec(
                select(Judgment)
                .join(Item, col(Item.id) == col(Judgment.item_id))
                .where(Judgment.campaign_id == name, Item.kind == "verify")
            )
        )
    prompt_by_id = {p.id: p for p in prompts}
    # Oracle: good and original, per text.
    texts = [("prompt", p.id, p.text, p.author, p.origin_item) for p in prompts] + [
        ("response", r.id, r.text, r.author, r.origin_item) for r in responses
    ]
    texts.sort(key=lambda t: (str(order.get(t[4] or "", "")), t[1]))
    first_by: dict[tuple[str, str], str | None] = {}
    first_text: dict[tuple[str, str], str] = {}
    copied_from: dict[str, str] = {}
    copy: set[str] = set()
    for kind, tid, text, author, _ in texts:
        fp = (kind, _fingerprint(kind, text))
        if fp in first_by:  # someone else's text, or the writer's own pasted again
            copy.add(tid)
            copied_from[tid] = first_text[fp]
        else:
            first_by[fp] = author
            first_text[fp] = text
    good = {p.id for p in prompts if _prompt_good(p.text, p.topic)} | {
        r.id
        for r in responses
        if _response_good(prompt_by_id[r.prompt_id].text, r.text) and r.prompt_id in prompt_by_id
    }
    off_topic = {
        p.id for p in prompts if world.prompt_ok(p.text) and not _prompt_good(p.text, p.topic)
    }
    for r in responses:
        items = {i.strip().lower() for i in world.parse_list(r.text)}
        topic = prompt_by_id[r.prompt_id].topic
        if items and topic and not items & set(world.CATALOG[topic]):
            off_topic.add(r.id)
    exported = {(row["prompt_id"], row["response_id"]) for row in rows}
    exported_ids = {i for pair in exported for i in pair}
    bad_rows = sum(1 for p, r in exported if not ({p, r} <= good) or p in copy or r in copy)
    dup_rows = sum(1 for p, r in exported if p in copy or r in copy)
    off_rows = sum(1 for p, r in exported if p in off_topic or r in off_topic)
    # Good texts lost: good, original texts that did not end accepted above the threshold
    # (for a prompt: did not reach the export through any response is not counted; its
    # verdict is what is scored).
    threshold = load_campaign(path).demonstrations.export.min_confidence  # type: ignore[union-attr]
    final = {p.id: (p.verdict, p.confidence or 0.0) for p in prompts} | {
        r.id: (r.verdict, r.confidence or 0.0) for r in responses
    }
    judged = {t: v for t, v in final.items() if v[0] in ("accept", "reject")}
    good_judged = [t for t in judged if t in good and t not in copy]
    lost = sum(
        1 for t in good_judged if not (judged[t][0] == "accept" and judged[t][1] >= threshold)
    )
    tallies: dict[str, Counter[str]] = defaultdict(Counter)
    for subject, label in votes:
        tallies[subject or ""][label or ""] += 1
    mv = {t: ("accept" if c["accept"] > c["reject"] else "reject") for t, c in tallies.items()}
    # Majority vote sees only what went to verification; a text the checks rejected is
    # "lost" for it too when good (it would have had to be verified to be kept).
    mv_lost = sum(1 for t in good_judged if mv.get(t, "reject") != "accept")
    honest = {w for w, a in archetype.items() if a == "honest"}
    bad_w = {w for w, a in archetype.items() if a in BAD_WRITERS}
    bad_v = {w for w, a in archetype.items() if a in BAD_VERIFIERS}
    text_of = {t[1]: t[2] for t in texts}
    examples = [
        {"copy": text_of[i], "of": copied_from[i]} for p, r in exported for i in (p, r) if i in copy
    ]
    lost_examples = [
        {"text": text_of[t], "verdict": judged[t], "votes": dict(tallies.get(t, {}))}
        for t in good_judged
        if not (judged[t][0] == "accept" and judged[t][1] >= threshold)
    ]
    off_examples = [
        {"text": text_of[i], "verdict": final[i], "votes": dict(tallies.get(i, {}))}
        for p, r in exported
        for i in (p, r)
        if i in off_topic
    ]
    return {
        # Why honest workers were blocked (the bar: at most 2% of them).
        "honest_blocked_reasons": sorted(reasons.get(w, "") for w in honest & blocked),
        "dup_examples": examples[:5],
        "lost_examples": lost_examples[:8],
        "off_examples": off_examples[:5],
        "cost": cost,
        "rows": len(exported),
        "bad_rows": bad_rows,
        "dup_rows": dup_rows,
        "off_rows": off_rows,
        "good_judged": len(good_judged),
        "lost": lost,
        "mv_lost": mv_lost,
        "bad_writers": len(bad_w),
        "bad_writers_active": len({w for w in bad_w if writes[w] >= 1}),
        "bad_writers_blocked": len(bad_w & blocked),
        "bad_verifiers": len(bad_v),
        "bad_verifiers_active": len({w for w in bad_v if verifies[w] >= 1}),
        "bad_verifiers_blocked": len(bad_v & blocked),
        "honest": len(honest),
        "honest_blocked": len(honest & blocked),
        "exported_texts": len(exported_ids),
        "seconds": round(time.perf_counter() - started, 1),
    }


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| crowd | size | method | rows | bad rows | dup + off-topic rows | good texts lost "
        "(MV on same answers) | cost (USD) | bad writers blocked | bad verifiers blocked "
        "| honest blocked |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, (label, _) in CROWDS.items():
        for size in sorted({r["size"] for r in rows}):
            mine = [r for r in rows if r["crowd"] == key and r["size"] == size]
            if not mine:
                continue
            seeds = ",".join(str(r["seed"]) for r in mine)
            first = True
            for config in CONFIGS:
                runs = [r[config] for r in mine if config in r]
                if not runs:
                    continue

                def tot(f: str, runs: list[dict[str, Any]] = runs) -> int:
                    return sum(int(r[f]) for r in runs)

                rows_n = max(tot("rows"), 1)
                good_n = max(tot("good_judged"), 1)
                cell = f"{key}: {label} (seeds {seeds})" if first else ""
                first = False
                lines.append(
                    f"| {cell} | {size}x | {config} | {tot('rows')} "
                    f"| {tot('bad_rows')} ({tot('bad_rows') / rows_n:.1%}) "
                    f"| {tot('dup_rows')} + {tot('off_rows')} "
                    f"({(tot('dup_rows') + tot('off_rows')) / rows_n:.1%}) "
                    f"| {tot('lost') / good_n:.1%} ({tot('mv_lost') / good_n:.1%}) "
                    f"| {statistics.mean(r['cost'] for r in runs):.2f} "
                    f"| {tot('bad_writers_blocked')}/{tot('bad_writers_active')} "
                    f"| {tot('bad_verifiers_blocked')}/{tot('bad_verifiers_active')} "
                    f"| {tot('honest_blocked')}/{tot('honest')} |"
                )
    return "\n".join(lines)


def verdict(rows: list[dict[str, Any]]) -> str:
    """The issue's Done-when, crowd by crowd and size by size, for the default."""
    out = []
    for key in CROWDS:
        for size in sorted({r["size"] for r in rows}):
            mine = [r for r in rows if r["crowd"] == key and r["size"] == size]
            if not mine or any("default" not in r or "today" not in r for r in mine):
                continue
            d = [r["default"] for r in mine]
            t = [r["today"] for r in mine]
            n = max(sum(r["rows"] for r in d), 1)
            dup_off = sum(r["dup_rows"] + r["off_rows"] for r in d) / n
            bad = sum(r["bad_rows"] for r in d) / n
            good = max(sum(r["good_judged"] for r in d), 1)
            lost, mv_lost = sum(r["lost"] for r in d) / good, sum(r["mv_lost"] for r in d) / good
            cost = statistics.mean(r["cost"] for r in d) / statistics.mean(r["cost"] for r in t)
            honest = sum(r["honest_blocked"] for r in d) / max(sum(r["honest"] for r in d), 1)
            checks = {
                "dup+off <= 1%": dup_off <= 0.01,
                "bad <= 2%": bad <= 0.02,
                "lost <= MV": lost <= mv_lost,
                "cost <= +15%": cost <= 1.15,
                "honest blocked <= 2%": honest <= 0.02,
            }
            failed = [k for k, ok in checks.items() if not ok]
            out.append(
                f"{key} {size}x: dup+off {dup_off:.1%}, bad {bad:.1%}, lost {lost:.1%} "
                f"(MV {mv_lost:.1%}), cost {cost:.0%} of today's, honest blocked {honest:.1%}"
                f" -> {'holds' if not failed else 'FAILS: ' + ', '.join(failed)}"
            )
    return "\n".join(out)


def _corpus(n: int, seed: int) -> tuple[list[str], list[str], list[str]]:
    """n written lists, a cosmetic copy of each, and n fresh lists by other writers."""
    import random

    rng = random.Random(seed)
    prompts = [world.make_prompt(t, 0) for t in world.CATALOG]
    originals = [world.write_response(rng.choice(prompts), rng, good=True) for _ in range(n)]
    copies = [world.cosmetic_copy(t, rng) for t in originals]
    fresh = [world.write_response(rng.choice(prompts), rng, good=True) for _ in range(n)]
    return originals, copies, fresh


def _minhash_pass(originals: list[str], probes: list[str]) -> list[bool]:
    from crowdloop.textcheck import DuplicateIndex

    index = DuplicateIndex(threshold=0.7)
    for i, text in enumerate(originals):
        index.add(str(i), text)
    return [index.find(t) is not None for t in probes]


def _brute_pass(originals: list[str], probes: list[str]) -> list[bool]:
    from crowdloop.textcheck import jaccard, shingles

    sets = [shingles(normalise(t)) for t in originals]
    exact = {normalise(t) for t in originals}
    out = []
    for t in probes:
        norm = normalise(t)
        sh = shingles(norm)
        out.append(norm in exact or any(jaccard(sh, other) >= 0.7 for other in sets))
    return out


def dedup_cost(n: int, reps: int) -> None:
    """MinHash + LSH against an exact all-pairs Jaccard scan on the same texts: recall on
    cosmetic copies, false hits on fresh texts, wall and CPU time (A B A B ...)."""
    import resource

    originals, copies, fresh = _corpus(n, 11)
    probes = copies + fresh
    timings: dict[str, list[tuple[float, float]]] = {"minhash": [], "all_pairs": []}
    found: dict[str, list[bool]] = {}
    for _ in range(reps):
        for name, fn in (("minhash", _minhash_pass), ("all_pairs", _brute_pass)):
            wall, cpu = time.perf_counter(), time.process_time()
            found[name] = fn(originals, probes)
            timings[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    for name, runs in timings.items():
        hits = found[name]
        recall = sum(hits[:n]) / n
        false = sum(hits[n:]) / n
        print(
            f"{name}: {n} texts indexed, {2 * n} looked up: copies found {recall:.1%}, fresh "
            f"texts flagged {false:.1%}; wall median {statistics.median(r[0] for r in runs):.3f}"
            f" s, CPU median {statistics.median(r[1] for r in runs):.3f} s"
        )
    ratio = statistics.median(r[0] for r in timings["all_pairs"]) / statistics.median(
        r[0] for r in timings["minhash"]
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"all-pairs / minhash wall: {ratio:.1f}x; peak RSS of the process {peak:.0f} MiB")


def signature_cost(n: int) -> None:
    """The signature table (`crowdloop.stages.signatures`) in a fresh SQLite database: n
    accepted lists of an "earlier" campaign signed, then n cosmetic copies and n fresh
    lists looked up one by one from a new campaign; recall, false hits, time per lookup,
    and the process's peak RSS before and after the lookups (flat: nothing is loaded)."""
    import resource

    from crowdloop.models.tables import Campaign
    from crowdloop.stages.signatures import find_earlier, record_accepted

    originals, copies, fresh = _corpus(n, 11)
    with tempfile.TemporaryDirectory(prefix="crowdloop-bench-signatures-") as tmp:
        os.environ["CROWDLOOP_DATABASE_URL"] = f"sqlite:///{tmp}/db.sqlite"
        with session_scope() as s:
            for name in ("earlier", "new"):
                s.add(Campaign(id=name, spec={}, spec_hash="-", connector="simulator"))
            s.add(Prompt(id="p", campaign_id="earlier", text="List the top 5 rivers.",
                         source="crowd"))  # fmt: skip
            s.flush()
            rows = [
                Response(
                    id=f"r{i}",
                    campaign_id="earlier",
                    prompt_id="p",
                    text=t,
                    source="crowd",
                    verdict="accept",
                )
                for i, t in enumerate(originals)
            ]
            s.add_all(rows)
            s.flush()
            started = time.perf_counter()
            record_accepted(s, "response", rows)
            signed = time.perf_counter() - started
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        hits: list[bool] = []
        started, cpu = time.perf_counter(), time.process_time()
        with session_scope() as s:
            for text in copies + fresh:
                hits.append(find_earlier(s, "response", "new", text, None, 0.7) is not None)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"signatures: {n} texts signed in {signed:.2f} s; {2 * n} looked up: copies found "
        f"{sum(hits[:n]) / n:.1%}, fresh texts flagged {sum(hits[n:]) / n:.1%}; "
        f"{1000 * wall / (2 * n):.2f} ms wall, {1000 * cpu / (2 * n):.2f} ms CPU per lookup; "
        f"peak RSS {before:.0f} MiB before the lookups, {after:.0f} MiB after"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sizes", type=int, nargs="+", choices=list(SIZES), default=[1, 4])
    parser.add_argument("--crowds", nargs="+", choices=list(CROWDS), default=list(CROWDS))
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    parser.add_argument("--table", type=Path, nargs="+", help="print the table of saved rows")
    parser.add_argument(
        "--dedup", type=int, nargs="+", metavar="N", help="only the duplicate check's cost"
    )
    parser.add_argument(
        "--signatures", type=int, nargs="+", metavar="N",
        help="only the signature table's lookups against N signed texts",
    )  # fmt: skip
    args = parser.parse_args()
    if args.signatures:
        for n in args.signatures:
            signature_cost(n)
        return
    if args.dedup:
        for n in args.dedup:
            dedup_cost(n, reps=3)
        return
    if args.table:
        rows = [row for path in args.table for row in json.loads(path.read_text())["rows"]]
        print(table(rows))
        print()
        print(verdict(rows))
        return
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="crowdloop-bench-demos-") as tmp:
        root = Path(tmp)
        for size in args.sizes:
            for crowd_key in args.crowds:
                for seed in args.seeds:
                    crowd = CROWDS[crowd_key][1]
                    runs = {c: run_one(root, crowd, seed, size, c) for c in args.configs}
                    rows.append({"crowd": crowd_key, "seed": seed, "size": size, **runs})
                    print(
                        f"{crowd_key} {size}x seed {seed}: "
                        + " | ".join(
                            f"{c}: {r['rows']} rows, bad {r['bad_rows']}, dup {r['dup_rows']},"
                            f" off {r['off_rows']}, lost {r['lost']}/{r['good_judged']} "
                            f"(MV {r['mv_lost']}), {r['cost']:.2f} USD, writers blocked "
                            f"{r['bad_writers_blocked']}/{r['bad_writers_active']}, verifiers "
                            f"{r['bad_verifiers_blocked']}/{r['bad_verifiers_active']}, honest "
                            f"{r['honest_blocked']}, {r['seconds']}s"
                            for c, r in runs.items()
                        ),
                        flush=True,
                    )
                    if args.out:
                        args.out.write_text(json.dumps({"rows": rows}, default=str))
    print()
    print(table(rows))
    print()
    print(verdict(rows))


if __name__ == "__main__":
    main()
