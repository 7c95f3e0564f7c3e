"""Several Prefect process workers, one PostgreSQL: the stack, the campaigns and the checks
that `tests/live/test_workers_pg.py` and `bench/bench_workers.py` share.

The stack (README, "Several workers on one PostgreSQL"): a Prefect server whose own
database is a fresh PostgreSQL database (`PREFECT_API_DATABASE_CONNECTION_URL`, asyncpg),
`crowdloop simulator serve`, the `campaign` and `sync` deployments of
`deployments/prefect.yaml` deployed with a fresh crowdloop PostgreSQL database as
`CROWDLOOP_DATABASE_URL`, and N `prefect worker start` processes on the one process pool,
each taking at most `limit` runs at a time. Both databases are made for the stack and
dropped after it, with the connections still open to them.

What "the same datasets as when run alone" can mean here. The simulator draws every answer,
delay and worker order from (its seed, the worker, the task key), and task keys come from
the campaign's name and data, so a campaign's crowd answers do not depend on when its
tasks were published or what else ran beside it, with two exceptions, both avoided by the
campaigns below: a worker blocked on the marketplace is blocked for every campaign there
(so `quality.on_fail` is `exclude`: untrusted answers are dropped on our side only), and
sleepers and copiers answer by the order work was handed out (not in the default crowd).
Demonstration checks compare a text with every campaign's texts in the database (by design:
a copy from another campaign is a copy), so SFT data legitimately depends on what else
ran; the campaigns here are preference campaigns. With that, the exported preference files
must be byte for byte those of the same campaign files run alone against a fresh database
and a fresh simulator with the same seed: any difference is work lost, duplicated or
mixed between campaigns.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import yaml
from sqlalchemy import func
from sqlmodel import col, select

from tests.conftest import pg_url, throwaway_pg_database
from tests.live.conftest import (
    LiveStack,
    Service,
    Simulator,
    announced_simulator,
    base_env,
    free_port,
    start,
    wait_for,
    wait_for_server,
)
from tests.live.readme import ROOT, service_commands

POOL = "crowdloop"  # the work pool deployments/prefect.yaml names
CAMPAIGN = "run-campaign/campaign"
SYNC = "sync-open-campaigns/sync"
SIM_SEED = 5
# Simulated seconds per real second when a campaign runs alone: the slowest answer (1,800
# simulated seconds) comes within 20 ms. The shared marketplace's clock is moved by
# `run_concurrently` instead. Answers do not depend on the clock, only on when they come.
ALONE_TIME_SCALE = 100_000


@dataclass(frozen=True)
class Size:
    campaigns: int = 4
    topics: int = 2
    prompts_per_topic: int = 2
    golden_share: float = 0.15
    # Dynamic overlap (the default: ask once, then again where unsure) takes 4-6 rounds; a
    # fixed overlap of 3 takes 1-2 (re-queues of excluded answers).
    dynamic_overlap: bool = True

    @property
    def pairs_per_campaign(self) -> int:
        return self.topics * self.prompts_per_topic * 6  # 4 models: 6 pairs a prompt


def campaign_name(index: int) -> str:
    return f"pgw-{index}"


def write_campaigns(folder: Path, size: Size) -> list[Path]:
    """One preferences campaign file per campaign, each with its own inputs (seeded by its
    index), in `folder/<name>/campaign.yaml`; its datasets land beside it."""
    from crowdloop.demo import top5
    from crowdloop.simulator import world
    from crowdloop.stages.plan import golden_count

    files = []
    topics = list(world.CATALOG)
    for index in range(size.campaigns):
        name = campaign_name(index)
        out = folder / name
        chosen = topics[index % len(topics) :] + topics[: index % len(topics)]
        chosen = chosen[: size.topics]
        candidates = top5.generate_candidates(
            chosen, index, prompts_per_topic=size.prompts_per_topic
        )
        golden = top5.generate_golden_pairs(
            chosen, index, max(1, golden_count(size.pairs_per_campaign, size.golden_share))
        )
        top5.write_jsonl(out / "candidates.jsonl", candidates)
        top5.write_jsonl(out / "golden-pairs.jsonl", golden)
        spec = {
            "name": name,
            "connector": {"name": "simulator"},
            "poll_interval_s": 0.2,
            "stage_timeout_s": 900,
            "seed": index,
            "output_dir": ".",
            # Untrusted answers are excluded on our side only: a marketplace block would
            # reach the other campaigns on the same marketplace (see the module's doc).
            "quality": {
                "min_golden": 3,
                "min_accuracy": 0.7,
                "block_confidence": 0.8,
                "on_fail": "exclude",
            },
            "preferences": {
                "candidates_file": "candidates.jsonl",
                "pairing": {"design": "all"},
                "golden_file": "golden-pairs.jsonl",
                "golden_share": size.golden_share,
                "min_confidence": 0.6,
                "export": {"path": "preferences.jsonl"},
                **({} if size.dynamic_overlap else {"dynamic_overlap": None, "overlap": 3}),
            },
        }
        path = out / "campaign.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
        files.append(path)
    return files


def copy_campaigns(files: list[Path], folder: Path) -> list[Path]:
    """The same campaign files and inputs in another folder (their datasets land there)."""
    copies = []
    for path in files:
        dest = folder / path.parent.name
        dest.mkdir(parents=True, exist_ok=True)
        for src in path.parent.glob("*.*"):
            if src.suffix in (".yaml", ".jsonl") and src.name != "preferences.jsonl":
                (dest / src.name).write_bytes(src.read_bytes())
        copies.append(dest / path.name)
    return copies


def dataset_digest(campaign_file: Path) -> str:
    """sha256 of the campaign's exported preference file (rows sorted, same data same bytes)."""
    return hashlib.sha256((campaign_file.parent / "preferences.jsonl").read_bytes()).hexdigest()


# --- the stack --------------------------------------------------------------------------------


@dataclass
class WorkersStack:
    live: LiveStack  # the server, its client helpers, the deploying shell's environment
    workers: list[Service]
    db_url: str  # crowdloop's database, captured into the deployments
    prefect_db_url: str  # the Prefect server's own database
    base: Path
    extra: list[Service] = field(default_factory=list)


def start_simulator(name: str, base: Path, env: dict[str, str]) -> Simulator:
    """`crowdloop simulator serve` with its clock standing still (`run_concurrently`
    moves it)."""
    argv = ["crowdloop", "simulator", "serve", "--port", "0", "--seed", str(SIM_SEED),
            "--time-scale", "0", "--state", str(base / f"{name}.json")]  # fmt: skip
    return announced_simulator(start(name, argv, env, ROOT))


@contextmanager
def workers_stack(base: Path, workers: int = 2, limit: int = 3) -> Iterator[WorkersStack]:
    """The stack, stopped (every process group) and its databases dropped on the way out."""
    commands = service_commands()
    # Log names of their own (build/live/<name>.log): two stacks at once (a test and a
    # benchmark) must not read each other's simulator announcement or worker logs.
    tag = f"pgw-{uuid4().hex[:6]}"
    home = base / "home"
    home.mkdir(parents=True, exist_ok=True)
    common = base_env(home)
    common["PREFECT_HOME"] = str(base / "prefect-home")
    services: list[Service] = []
    with ExitStack() as dbs:
        prefect_db = dbs.enter_context(throwaway_pg_database("pgw_prefect"))
        crowdloop_db = dbs.enter_context(throwaway_pg_database("pgw_crowdloop"))
        try:
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            api_url = f"{url}/api"
            server_env = {
                **common,
                "PREFECT_SERVER_API_PORT": str(port),
                "PREFECT_API_DATABASE_CONNECTION_URL": pg_url(prefect_db, "asyncpg"),
            }
            server = start(f"{tag}-prefect-server", commands.services["server"], server_env, ROOT)
            services.append(server)
            simulator = start_simulator(f"{tag}-simulator", base, common)
            services.append(simulator.service)
            wait_for_server(api_url, server)
            env = {
                **common,
                "PREFECT_API_URL": api_url,
                "CROWDLOOP_DATABASE_URL": pg_url(crowdloop_db),
                "CROWDLOOP_SIMULATOR_URL": simulator.url,
                "CROWDLOOP_SIMULATOR_TOKEN": simulator.token,
            }
            live = LiveStack(ROOT, home, url, api_url, simulator, env, commands, services)
            live.cli(["prefect", "work-pool", "create", POOL, "--type", "process"])
            deploy = ["prefect", "--no-prompt", "deploy", "--prefect-file",
                      "deployments/prefect.yaml", "-n", "campaign", "-n", "sync"]  # fmt: skip
            live.cli(deploy)
            # Workers need only the server: runs get their settings from the deployment.
            worker_env = {**common, "PREFECT_API_URL": api_url, "PREFECT_WORKER_QUERY_SECONDS": "1"}
            elsewhere = base / "worker-cwd"
            elsewhere.mkdir(exist_ok=True)
            started = []
            for i in range(workers):
                argv = ["prefect", "worker", "start", "--pool", POOL, "--name", f"pgw-{i}",
                        "--limit", str(limit)]  # fmt: skip
                started.append(start(f"{tag}-worker-{i}", argv, worker_env, elsewhere))
            services.extend(started)

            def online() -> bool:
                with live.client() as c:
                    return len(c.read_workers_for_work_pool(POOL)) >= workers

            wait_for(f"{workers} workers on the work pool", online, 120, services)
            yield WorkersStack(
                live, started, pg_url(crowdloop_db), pg_url(prefect_db, "asyncpg"), base
            )
        finally:
            for service in reversed(services):
                service.stop()
            from crowdloop.db import dispose_engine

            dispose_engine(pg_url(crowdloop_db))


# --- running campaigns ----------------------------------------------------------------------


def start_run(stack: WorkersStack, deployment: str, params: dict[str, Any]) -> UUID:
    with stack.live.client() as c:
        found = c.read_deployment_by_name(deployment)
        run = c.create_flow_run_from_deployment(found.id, parameters=params)
    return UUID(str(run.id))


@dataclass
class Outcome:
    campaign_runs: dict[str, Any]  # campaign name -> its flow run, read back once final
    sync_runs: list[Any]  # every sync run, read back once final
    wall_s: float  # from the campaign runs' creation to the last run's end
    clock_started_s: float  # when the marketplace's clock started moving
    clock_started_at: datetime | None  # the same, in UTC
    second_run: Any = None  # the second run of one campaign, read back once final


def run_concurrently(
    stack: WorkersStack, files: list[Path], timeout: float, second_run_of: Path | None = None
) -> Outcome:
    """Every campaign file through the `campaign` deployment at once and, beside them, a
    run of the `sync` deployment whenever the previous one is over (what its schedule does
    every 5 minutes, back to back); waits for all of them with a deadline. With
    `second_run_of`, one more run of that campaign file once every campaign is driven (an
    operator pressing Run twice; it may land on either worker).

    The marketplace's clock stands still until a sync run has passed over every campaign
    while their runs drive them (and so skipped them all): nobody answers before that, so
    the sync meets the campaigns mid-run however slowly the runs start. Then the clock
    moves 15 simulated minutes per poll (every answer comes within 30)."""
    from crowdloop.db import session_scope
    from crowdloop.models.tables import CampaignLease

    live = stack.live
    begin = time.monotonic()
    runs = {
        path.parent.name: start_run(stack, CAMPAIGN, {"campaign_file": str(path)}) for path in files
    }
    syncs: list[UUID] = []
    second: list[UUID] = []
    clock_started: list[float] = []
    clock_started_at: list[datetime] = []
    met_all = f"0 synced, {len(files)} skipped"

    def state(run_id: UUID) -> Any:
        return live.flow_run_state(run_id)

    def final(run_id: UUID) -> bool:
        found = state(run_id)
        return bool(found is not None and found.is_final())

    def all_driven() -> bool:
        with session_scope(stack.db_url) as s:
            return len(s.exec(select(CampaignLease.campaign_id)).all()) == len(files)

    def all_done() -> bool:
        campaigns_done = all(final(r) for r in runs.values())
        # The first sync once every campaign run drives its campaign (registered and
        # holding its lease), the next ones back to back.
        if not campaigns_done and ((not syncs and all_driven()) or (syncs and final(syncs[-1]))):
            syncs.append(start_run(stack, SYNC, {}))
            if second_run_of is not None and not second:
                second.append(start_run(stack, CAMPAIGN, {"campaign_file": str(second_run_of)}))
        if not clock_started and any(
            (found := state(r)) is not None and (found.message or "").startswith(met_all)
            for r in syncs
        ):
            clock_started.append(time.monotonic() - begin)
            clock_started_at.append(datetime.now(UTC))
        if clock_started:
            live.simulator.advance(900)
        return campaigns_done and all(final(r) for r in syncs + second)

    wait_for("the campaigns and the syncs beside them", all_done, timeout, live.services)
    wall = time.monotonic() - begin
    with live.client() as c:
        return Outcome(
            {name: c.read_flow_run(r) for name, r in runs.items()},
            [c.read_flow_run(r) for r in syncs],
            wall,
            clock_started[0] if clock_started else float("nan"),
            clock_started_at[0] if clock_started_at else None,
            c.read_flow_run(second[0]) if second else None,
        )


def run_alone(files: list[Path]) -> dict[str, str]:
    """Each campaign file run alone, one after the other, on a fresh database and a fresh
    simulator with the same seed (in this process, its clock running): the flows' round
    loop as plain calls (`rounds.run_bare`), then the aggregation and the export the
    `preferences` part of the flow runs. Returns each campaign's dataset digest."""
    import os

    from crowdloop.db import dispose_engine
    from crowdloop.models.spec import load_campaign
    from crowdloop.simulator.config import SimulatorConfig
    from crowdloop.simulator.runner import SimulatorServer
    from crowdloop.stages import export, preferences
    from crowdloop.stages.rounds import run_bare

    settings = ("CROWDLOOP_DATABASE_URL", "CROWDLOOP_SIMULATOR_URL", "CROWDLOOP_SIMULATOR_TOKEN")
    kept = {k: os.environ.get(k) for k in settings}
    digests = {}
    try:
        for path in files:
            config = SimulatorConfig(seed=SIM_SEED, time_scale=ALONE_TIME_SCALE)
            with throwaway_pg_database("pgw_alone") as db, SimulatorServer(config) as sim:
                os.environ.update(
                    CROWDLOOP_DATABASE_URL=pg_url(db),
                    CROWDLOOP_SIMULATOR_URL=sim.url,
                    CROWDLOOP_SIMULATOR_TOKEN=sim.token,
                )
                spec = load_campaign(path)
                assert spec.preferences is not None
                run_bare(spec)
                preferences.aggregate_preferences(spec.name, spec.preferences.aggregation)
                export.export_preferences(
                    spec.name, spec.preferences.export.path, spec.preferences.min_confidence
                )
                dispose_engine(pg_url(db))
            digests[spec.name] = dataset_digest(path)
    finally:
        for k, v in kept.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return digests


# --- what the database and the marketplace say ------------------------------------------------


@dataclass
class Ledger:
    """One campaign's work, as crowdloop recorded it and as the marketplace holds it."""

    status: str
    task_records: int
    open_intents: int  # push ledger rows still at "intent" (a create call not confirmed)
    tasks_without_external_id: int
    judgments: int
    duplicate_judgments: int  # (connector, external id) stored twice
    items_open: int  # still pending or pushed
    pool_tasks: int  # the simulator's count, over the campaign's pools
    pool_submitted: int
    pools: int
    batches: int


def ledger_of(stack: WorkersStack, campaign: str) -> Ledger:
    from crowdloop.db import session_scope
    from crowdloop.models.tables import (
        Batch,
        Campaign,
        Item,
        ItemState,
        Judgment,
        LedgerState,
        PushLedger,
        TaskRecord,
    )

    def count(s: Any, stmt: Any) -> int:
        return int(s.exec(stmt).one())

    with session_scope(stack.db_url) as s:
        row = s.get(Campaign, campaign)
        status = "missing" if row is None else str(row.status.value)
        in_campaign = col(Item.campaign_id) == campaign
        tasks = (
            select(func.count())
            .select_from(TaskRecord)
            .join(Item, col(Item.id) == col(TaskRecord.item_id))
            .where(in_campaign)
        )
        judged = select(Judgment.connector, Judgment.external_id).where(
            Judgment.campaign_id == campaign
        )
        twice = select(func.count()).select_from(
            judged.group_by(col(Judgment.connector), col(Judgment.external_id))
            .having(func.count() > 1)
            .subquery()
        )
        batches = list(s.exec(select(Batch).where(Batch.campaign_id == campaign)).all())
        facts = {
            "task_records": count(s, tasks),
            "open_intents": count(
                s,
                select(func.count())
                .select_from(PushLedger)
                .where(PushLedger.campaign_id == campaign, PushLedger.state == LedgerState.INTENT),
            ),
            "tasks_without_external_id": count(
                s, tasks.where(col(TaskRecord.external_id).is_(None))
            ),
            "judgments": count(
                s,
                select(func.count()).select_from(Judgment).where(Judgment.campaign_id == campaign),
            ),
            "duplicate_judgments": count(s, twice),
            "items_open": count(
                s,
                select(func.count())
                .select_from(Item)
                .where(in_campaign, col(Item.state).in_([ItemState.PENDING, ItemState.PUSHED])),
            ),
        }
    pools = [stack.live.simulator.pool(b.external_id) for b in batches if b.external_id]
    pool_tasks = sum(int(p["tasks"]) for p in pools)
    pool_submitted = sum(int(p["assignments_submitted"]) for p in pools)
    return Ledger(
        status=status,
        pool_tasks=pool_tasks,
        pool_submitted=pool_submitted,
        pools=len(pools),
        batches=len(batches),
        **facts,
    )
