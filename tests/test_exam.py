"""The exam (quality.exam): golden comparisons a worker must pass before production
comparisons reach them. Spec validation, the simulator's qualifications, the stage on a
simulated campaign (spammers kept off production, honest workers through), crash and rerun,
and the preflight refusal on a connector without qualifications."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
import respx
import yaml
from pydantic import SecretStr
from sqlalchemy import func
from sqlmodel import col, select

from crowdloop.connectors._http import RetryPolicy
from crowdloop.connectors.base import Connector
from crowdloop.connectors.errors import NotSupported
from crowdloop.connectors.registry import build_connector
from crowdloop.connectors.simulator.connector import SimulatorConnector
from crowdloop.connectors.simulator.credentials import SimulatorCredentials
from crowdloop.db import session_scope
from crowdloop.demo import top5
from crowdloop.models.domain import BatchSpec, Capability, Money, Stage
from crowdloop.models.spec import CampaignSpec, SpecError, load_campaign
from crowdloop.models.tables import (
    Batch,
    ExamResult,
    ExamStatus,
    Item,
    Judgment,
    LedgerState,
    PushLedger,
    WorkerRecord,
    WorkerStatus,
)
from crowdloop.simulator import world
from crowdloop.simulator.config import CrowdConfig, SimulatorConfig
from crowdloop.simulator.runner import SimulatorServer
from crowdloop.stages import exam as exam_stage
from crowdloop.stages import ledger as ledger_stage
from crowdloop.stages import sync as sync_stage
from crowdloop.stages.export import export_preferences
from crowdloop.stages.ledger import push_pending
from crowdloop.stages.plan import register_campaign, spec_hash
from crowdloop.stages.preferences import aggregate_preferences, judgments_frame
from crowdloop.stages.preflight import check_capabilities
from crowdloop.stages.quality_report import quality_markdown, quality_report
from crowdloop.stages.report import campaign_report, report_markdown
from crowdloop.stages.rounds import bare_ops, run_rounds
from crowdloop.stages.terms import exam_qualification
from tests.simulator_fixtures import api_client, compare_tasks, pool_body

CAMPAIGN = "exam-test"
TOPICS = list(world.CATALOG)[:2]
CROWD = CrowdConfig(honest=20, spammer=6, noisy=0, left_bias=0)
EXAM = {"items": 12, "min_correct": 9, "min_passers": 10, "wait_s": 30}


def write_inputs(folder: Path, golden_rows: int = 40) -> None:
    top5.write_jsonl(
        folder / "candidates.jsonl", top5.generate_candidates(TOPICS, 0, prompts_per_topic=3)
    )
    top5.write_jsonl(folder / "golden.jsonl", top5.generate_golden_pairs(TOPICS, 0, golden_rows))


def spec_dict(folder: Path, **exam: Any) -> dict[str, Any]:
    return {
        "name": CAMPAIGN,
        "output_dir": str(folder),
        "poll_interval_s": 0.05,
        "stage_timeout_s": 60,
        "quality": {"min_golden": 4, "exam": {**EXAM, **exam}},
        "preferences": {
            "candidates_file": str(folder / "candidates.jsonl"),
            "golden_file": str(folder / "golden.jsonl"),
            "golden_share": 0.2,
            "overlap": 3,
            "dynamic_overlap": None,
            "export": {"path": str(folder / "preferences.jsonl")},
        },
    }


def register(spec: dict[str, Any]) -> CampaignSpec:
    parsed = CampaignSpec.model_validate(spec)
    with session_scope() as s:
        register_campaign(s, parsed)
    return parsed


@pytest.fixture
def campaign(sqlite_url: str, tmp_path: Path) -> CampaignSpec:
    write_inputs(tmp_path)
    return register(spec_dict(tmp_path))


def start_sim(
    monkeypatch: pytest.MonkeyPatch, crowd: CrowdConfig = CROWD, time_scale: float = 1e6
) -> SimulatorServer:
    server = SimulatorServer(SimulatorConfig(seed=1, time_scale=time_scale, crowd=crowd))
    server.start()
    monkeypatch.setenv("CROWDLOOP_SIMULATOR_URL", server.url)
    monkeypatch.setenv("CROWDLOOP_SIMULATOR_TOKEN", server.token)
    return server


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimulatorServer]:
    server = start_sim(monkeypatch)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def connector(sim: SimulatorServer) -> Iterator[Connector]:
    with build_connector("simulator", {}, None) as c:
        yield c


def sim_workers(sim: SimulatorServer) -> dict[str, dict[str, Any]]:
    return {w["id"]: w for w in httpx.get(f"{sim.url}/sim/workers", timeout=10).json()}


def archetype(sim: SimulatorServer, kind: str) -> set[str]:
    return {w for w, row in sim_workers(sim).items() if row["archetype"] == kind}


def exam_results() -> dict[str, ExamResult]:
    with session_scope() as s:
        return {r.worker_id: r for r in s.exec(select(ExamResult)).all()}


def exam_snapshot() -> dict[str, tuple[Any, ...]]:
    return {
        w: (r.status, r.correct, r.answered, r.granted, r.graded_at, r.granted_at)
        for w, r in exam_results().items()
    }


def stage_judgments(stage: Stage) -> list[Judgment]:
    with session_scope() as s:
        return list(
            s.exec(
                select(Judgment)
                .join(Item, col(Item.id) == col(Judgment.item_id))
                .where(Item.stage == stage.value)
            ).all()
        )


# --- spec ------------------------------------------------------------------------------------


def write_yaml(folder: Path, spec: dict[str, Any]) -> Path:
    path = folder / "campaign.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"min_correct": 13}, "quality.exam.min_correct", "must not exceed items (12)"),
        ({"min_passers": 50, "takers": 40}, "quality.exam.min_passers", "exceed takers (40)"),
        ({"min_passers": 2}, "quality.exam.min_passers", "largest overlap production"),
        ({"items": 0}, "quality.exam.items", "greater than or equal to 1"),
        ({"takers": 101}, "quality.exam.takers", "less than or equal to 100"),
        ({"attempts": 2}, "quality.exam.attempts", "Extra inputs are not permitted"),
    ],
)
def test_exam_spec_errors_name_file_line_and_field(
    tmp_path: Path, change: dict[str, Any], field: str, message: str
) -> None:
    path = write_yaml(tmp_path, spec_dict(tmp_path, **change))
    with pytest.raises(SpecError) as err:
        load_campaign(path)
    text = str(err.value)
    assert text.startswith(f"{path}:"), text
    assert f"field {field!r}" in text and message in text, text
    # The line is the field's own line in the YAML file.
    line = int(text.split(":")[1])
    assert path.read_text().splitlines()[line - 1].strip().startswith(field.split(".")[-1] + ":")


def test_exam_needs_a_golden_file(tmp_path: Path) -> None:
    spec = spec_dict(tmp_path)
    del spec["preferences"]["golden_file"]
    with pytest.raises(SpecError, match=r"field 'quality\.exam': an exam is drawn from the golden"):
        load_campaign(write_yaml(tmp_path, spec))


def test_exam_is_off_by_default_and_keeps_old_hashes(tmp_path: Path) -> None:
    spec = spec_dict(tmp_path)
    del spec["quality"]["exam"]
    parsed = CampaignSpec.model_validate(spec)
    assert parsed.quality.exam is None
    # A campaign registered before the exam existed hashes as it did.
    import hashlib
    import json

    old_dump = parsed.model_dump(mode="json")
    del old_dump["quality"]["exam"]
    del old_dump["budget"]  # nor the budget, which came later still
    del old_dump["ranking"]  # nor an unset ranking section (later again)
    del old_dump["rating"]  # nor an unset rating section
    old = hashlib.sha256(json.dumps(old_dump, sort_keys=True).encode()).hexdigest()
    assert spec_hash(parsed) == old
    with_exam = CampaignSpec.model_validate(spec_dict(tmp_path))
    assert with_exam.quality.exam is not None and with_exam.quality.exam.takers == 100
    assert spec_hash(with_exam) != old


def test_golden_file_too_small_for_the_exam(sqlite_url: str, tmp_path: Path) -> None:
    write_inputs(tmp_path, golden_rows=10)
    with pytest.raises(SpecError, match=r"golden\.jsonl: .*needs 12 clear-cut .* has 10"):
        register(spec_dict(tmp_path))
    write_inputs(tmp_path, golden_rows=12)
    with pytest.raises(SpecError, match="leaves none for production"):
        register(spec_dict(tmp_path))
    with session_scope() as s:  # nothing half-made
        assert s.exec(select(func.count()).select_from(Item)).one() == 0


def test_exam_pairs_are_balanced_and_leave_the_production_pool(campaign: CampaignSpec) -> None:
    with session_scope() as s:
        items = list(s.exec(select(Item).where(Item.is_golden)).all())
    exam = [i for i in items if i.stage == Stage.EXAM.value]
    production = [i for i in items if i.stage == Stage.COMPARE.value]
    assert len(exam) == 12
    assert {i.golden_answer for i in exam} == {"left", "right"}
    assert sum(i.golden_answer == "left" for i in exam) == 6
    assert all(i.overlap == 100 and i.group == f"exam-{i.subject_id}" for i in exam)
    assert production and not {i.subject_id for i in exam} & {i.subject_id for i in production}


# --- the simulator's qualifications --------------------------------------------------------------


def test_simulator_qualifications(sim: SimulatorServer) -> None:
    with api_client(sim) as client:
        first = client.post("/qualifications", json={"name": "exam-passed"})
        again = client.post("/qualifications", json={"name": "exam-passed"})
        assert (first.status_code, again.status_code) == (201, 200)
        qid = first.json()["id"]
        assert again.json()["id"] == qid
        assert (
            client.get("/qualifications", params={"name": "exam-passed"}).json()["items"][0]["id"]
            == qid
        )
        assert client.get("/qualifications", params={"name": "nope"}).json() == {"items": []}
        bad = client.post("/pools", json=pool_body("k-bad", required_qualification="qual-9999"))
        assert bad.status_code == 422 and "unknown qualification" in bad.text

        pool = client.post("/pools", json=pool_body("k-q", required_qualification=qid)).json()
        assert pool["required_qualification"] == qid
        client.post(f"/pools/{pool['id']}/tasks", json={"tasks": compare_tasks(4, overlap=2)})
        client.post(f"/pools/{pool['id']}/open")
        # Nobody holds it yet: nothing is handed out.
        assert client.get(f"/pools/{pool['id']}").json()["assignments_total"] == 0

        grant = client.put(f"/qualifications/{qid}/workers/w001")
        assert grant.json() == {
            "qualification_id": qid,
            "worker_id": "w001",
            "granted": True,
            "assigned": 4,  # the new holder is offered every waiting task at once
        }
        replay = client.put(f"/qualifications/{qid}/workers/w001").json()
        assert (replay["granted"], replay["assigned"]) == (False, 0)
        client.put(f"/qualifications/{qid}/workers/w002")
        assert client.put(f"/qualifications/{qid}/workers/w999").status_code == 404
        assert client.put("/qualifications/qual-9999/workers/w001").status_code == 404
        items: list[dict[str, Any]] = []
        sim.advance(10_000)
        items = client.get(f"/pools/{pool['id']}/assignments").json()["items"]
    assert len(items) == 8 and {a["worker_id"] for a in items} == {"w001", "w002"}
    stats = sim.stats()
    assert (stats["qualifications_granted"], stats["qualification_grant_replays"]) == (2, 1)
    held = {
        w: row["qualifications"] for w, row in sim_workers(sim).items() if row["qualifications"]
    }
    assert held == {"w001": ["exam-passed"], "w002": ["exam-passed"]}


def test_simulator_connector_qualifications(sim: SimulatorServer, connector: Connector) -> None:
    assert Capability.QUALIFY_WORKERS in connector.capabilities
    connector.ensure_qualification("crowdloop-x-exam")
    connector.ensure_qualification("crowdloop-x-exam")
    spec = BatchSpec(
        name="x / compare",
        stage=Stage.COMPARE,
        instruction="Pick one.",
        reward=Money(amount="0.03"),
        campaign_id="x",
        required_qualification="crowdloop-x-exam",
    )
    ref = connector.create_batch(spec, idempotency_key="x-batch")
    connector.grant_qualification("w003", "crowdloop-x-exam")
    connector.grant_qualification("w003", "crowdloop-x-exam")
    requests = sim.stats()["requests"]
    # The name is resolved to the server's id once per connector.
    assert requests["GET /api/v1/qualifications"] == 1
    assert requests["POST /api/v1/qualifications"] == 1
    assert requests["PUT /api/v1/qualifications/{qualification_id}/workers/{worker_id}"] == 2
    with api_client(sim) as client:
        pool = client.get("/pools", params={"idempotency_key": "x-batch"}).json()["items"][0]
    assert pool["id"] == ref.external_id and pool["required_qualification"] == "qual-0001"
    assert sim_workers(sim)["w003"]["qualifications"] == ["crowdloop-x-exam"]


# --- the stage on a simulated campaign ----------------------------------------------------


def test_exam_keeps_spammers_off_production(
    campaign: CampaignSpec, sim: SimulatorServer, connector: Connector
) -> None:
    rounds = run_rounds(CAMPAIGN, [Stage.COMPARE], bare_ops(connector), advance=False)
    spammers, honest = archetype(sim, "spammer"), archetype(sim, "honest")
    results = exam_results()
    passed = {w for w, r in results.items() if r.status == ExamStatus.PASSED}
    failed = {w for w, r in results.items() if r.status == ExamStatus.FAILED}
    honest_rate = len(passed & honest) / len(honest)
    print(
        f"rounds={rounds} takers={len(results)} honest passed {len(passed & honest)}/"
        f"{len(honest)} spammers passed {len(passed & spammers)}/{len(spammers)}"
    )
    # Everyone took the whole exam; everyone is decided.
    assert set(results) == spammers | honest
    assert all(r.answered == 12 for r in results.values())
    assert passed | failed == set(results)
    assert honest_rate >= 0.95
    assert not passed & spammers
    # Passers, and only passers, are qualified here and on the marketplace.
    assert all(r.granted == (w in passed) for w, r in results.items())
    held = {w for w, row in sim_workers(sim).items() if row["qualifications"]}
    assert held == passed
    assert sim.stats()["qualifications_granted"] == len(passed)

    production = stage_judgments(Stage.COMPARE)
    by_spammers = [j for j in production if j.worker_id in spammers]
    assert production and by_spammers == []
    assert {j.worker_id for j in production} <= passed
    # Exam answers are judgments of their own stage: stored, never aggregated or exported.
    exam_answers = stage_judgments(Stage.EXAM)
    assert len(exam_answers) == 12 * len(results)
    frame = judgments_frame(CAMPAIGN)
    exam_items = {j.item_id for j in exam_answers}
    assert not set(frame["pair"]) & exam_items
    aggregate_preferences(CAMPAIGN, "worker_aware")
    assert campaign.preferences is not None
    path = campaign.preferences.export.path
    rows, _ = export_preferences(CAMPAIGN, path, 0.6)
    assert rows > 0
    exported = {json.loads(line)["pair_id"] for line in path.read_text().splitlines()}
    assert len(exported) == rows and not exported & exam_items
    # ...but they are evidence in the worker's quality record: spammers are untrusted on
    # their exam alone, and every exam answer was paid.
    with session_scope() as s:
        records = {r.worker_id: r for r in s.exec(select(WorkerRecord)).all()}
    for w in spammers:
        assert records[w].golden_total == 12
        assert records[w].status == WorkerStatus.BLOCKED
    assert all(j.review == "accepted" for j in exam_answers)
    report = campaign_report(CAMPAIGN)
    assert report["exam"]["passed"] == len(passed) and report["exam"]["failed"] == len(failed)
    assert "**Exam:**" in report_markdown(report)
    quality = quality_report(CAMPAIGN, n_boot=10)
    assert {w["worker"] for w in quality["exam"]["workers"] if w["result"] == "failed"} == failed
    assert "failed the exam" in quality_markdown(quality)
    # The production batch requires the qualification, the exam batch does not.
    with api_client(sim) as client:
        pools = {
            stage: client.get(
                "/pools", params={"idempotency_key": f"crowdloop:{CAMPAIGN}:{stage}:batch"}
            ).json()["items"][0]
            for stage in ("exam", "compare")
        }
    assert pools["exam"]["required_qualification"] is None
    assert pools["compare"]["required_qualification"] is not None


def test_exam_pass_rates_on_a_larger_crowd(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default 9-of-12 exam on 60 honest workers and 30 random clickers."""
    write_inputs(tmp_path)
    register(spec_dict(tmp_path, takers=90))
    server = start_sim(monkeypatch, CrowdConfig(honest=60, spammer=30, noisy=0, left_bias=0))
    try:
        with build_connector("simulator", {}, None) as c:
            progress = exam_stage.exam_round(CAMPAIGN, c)
        spammers, honest = archetype(server, "spammer"), archetype(server, "honest")
    finally:
        server.stop()
    assert progress is not None and progress.ready and progress.takers == 90
    results = exam_results()
    passed = {w for w, r in results.items() if r.status == ExamStatus.PASSED}
    honest_rate = len(passed & honest) / len(honest)
    spam_rate = len(passed & spammers) / len(spammers)
    print(f"honest pass rate {honest_rate:.3f}, spammer pass rate {spam_rate:.3f}")
    assert honest_rate >= 0.95
    assert spam_rate == 0.0


GRANT = "PUT /api/v1/qualifications/{qualification_id}/workers/{worker_id}"


class Crash(Exception):
    pass


@pytest.mark.parametrize(
    "crash_at",
    [
        "batch:created",  # the exam pool exists on the marketplace, not in our database
        "tasks:intent-recorded",  # exam tasks recorded, not sent
        "tasks:sent",  # exam tasks sent, their ids not recorded
        "exam:granted@3",  # a grant made on the marketplace, not recorded
    ],
)
def test_rerun_after_a_crash_neither_repushes_nor_regrants(
    campaign: CampaignSpec,
    sim: SimulatorServer,
    monkeypatch: pytest.MonkeyPatch,
    crash_at: str,
) -> None:
    point, _, nth = crash_at.partition("@")
    hits = 0

    def crash(name: str) -> None:
        nonlocal hits
        if name == point:
            hits += 1
            if hits == int(nth or 1):
                raise Crash(name)

    for module in (ledger_stage, exam_stage, sync_stage):
        monkeypatch.setattr(module, "crash_point", crash)
    with build_connector("simulator", {}, None) as c, pytest.raises(Crash):
        exam_stage.exam_round(CAMPAIGN, c)
    with build_connector("simulator", {}, None) as c:
        progress = exam_stage.exam_round(CAMPAIGN, c)
    assert progress is not None and progress.ready
    stats = sim.stats()
    results = exam_results()
    passed = {w for w, r in results.items() if r.status == ExamStatus.PASSED}
    assert stats["pools_created"] == 1
    assert stats["tasks_created"] == 12, "an exam task was published twice"
    assert stats["group_worker_duplicates"] == 0
    assert stats["qualifications_granted"] == len(passed)
    # Only the grant whose outcome was lost is sent again (a no-op on the marketplace).
    assert stats["qualification_grant_replays"] == (1 if point == "exam:granted" else 0)
    assert all(r.granted for w, r in results.items() if w in passed)
    with session_scope() as s:
        intents = s.exec(select(PushLedger).where(PushLedger.state == LedgerState.INTENT)).all()
    assert list(intents) == []
    # Another round grants and publishes nothing more, and changes no record.
    before = exam_snapshot()
    grants_sent = stats["requests"][GRANT]
    with build_connector("simulator", {}, None) as c:
        again = exam_stage.exam_round(CAMPAIGN, c)
    assert again is not None and (again.published, again.granted, again.stored) == (0, 0, 0)
    after = sim.stats()
    assert after["tasks_created"] == 12
    assert after["requests"][GRANT] == grants_sent
    assert exam_snapshot() == before


def test_production_waits_for_enough_passers(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A frozen clock: no exam answer arrives, the wait runs out and says why; a rerun
    once answers are in goes on, and only then does production start."""
    write_inputs(tmp_path)
    register(spec_dict(tmp_path, wait_s=0.3))
    server = start_sim(monkeypatch, time_scale=0)  # answers wait for `advance`
    try:
        with build_connector("simulator", {}, None) as c:
            ops = bare_ops(c)
            # The wait runs on the test's own time: each sleep moves it, nothing else does.
            now = [0.0]
            sleeps: list[float] = []

            def sleep(seconds: float) -> None:
                sleeps.append(seconds)
                now[0] += seconds

            with pytest.raises(exam_stage.ExamNotReady, match=r"0 worker\(s\) passed .* 10 needed"):
                exam_stage.exam_round(CAMPAIGN, c, sleep=sleep, clock=lambda: now[0])
            assert set(sleeps) == {0.05} and len(sleeps) == 7  # polls until 0.3 s have passed
            with pytest.raises(exam_stage.ExamNotReady):
                run_rounds(CAMPAIGN, [Stage.COMPARE], ops, advance=False)
            with session_scope() as s:
                assert s.exec(select(Batch).where(Batch.stage == "compare")).first() is None
            assert server.stats()["tasks_created"] == 12  # the exam, published once
            # Time moves again (forward only): the answers are in.
            server.state.clock.time_scale = 1e6
            run_rounds(CAMPAIGN, [Stage.COMPARE], ops, advance=False)
        assert exam_stage.exam_summary(CAMPAIGN)["passed"] >= 10
        assert stage_judgments(Stage.COMPARE)
    finally:
        server.stop()


# --- refusal without the capability -------------------------------------------------------------


class NoQualifications(SimulatorConnector):
    name: ClassVar[str] = "simulator"
    capabilities: ClassVar[frozenset[Capability]] = SimulatorConnector.capabilities - {
        Capability.QUALIFY_WORKERS
    }

    def ensure_qualification(self, qualification: str) -> None:
        Connector.ensure_qualification(self, qualification)

    def grant_qualification(self, worker_id: str, qualification: str) -> None:
        Connector.grant_qualification(self, worker_id, qualification)


def test_preflight_refuses_an_exam_without_qualifications(
    campaign: CampaignSpec, sim: SimulatorServer
) -> None:
    with NoQualifications.from_config({}, None) as c:
        with pytest.raises(NotSupported) as err:
            check_capabilities(campaign, c)
        message = str(err.value)
        assert message.startswith("[simulator] does not support qualify_workers")
        assert "quality.exam" in message
        assert err.value.capability == "qualify_workers"
        with pytest.raises(NotSupported, match="qualify_workers"):
            exam_stage.exam_round(CAMPAIGN, c)
        with pytest.raises(NotSupported, match="qualify_workers"):
            push_pending(CAMPAIGN, Stage.COMPARE, c)
        with pytest.raises(NotSupported, match="qualify_workers"):
            c.grant_qualification("w001", exam_qualification(CAMPAIGN))
    # Nothing reached the marketplace.
    assert sim.stats()["pools_created"] == 0
    # Without an exam the same connector passes the preflight.
    no_exam = campaign.model_copy(
        update={"quality": campaign.quality.model_copy(update={"exam": None})}
    )
    with NoQualifications.from_config({}, None) as c:
        assert check_capabilities(no_exam, c) == []


def test_simulator_connector_qualification_wire() -> None:
    """What the connector sends: find by name, create if missing, the id in the pool and
    the grant path; a 5xx on the (idempotent) grant is retried."""
    base = "http://sim.test"
    credentials = SimulatorCredentials(base_url=base, api_token=SecretStr("tok"), timeout_s=3)
    waits: list[float] = []
    client = credentials.get_client(retry=RetryPolicy(attempts=3), sleep=waits.append)
    qual = {"id": "qual-0007", "name": "crowdloop-c-exam", "created_at": "2025-01-01T00:00:00"}
    pool = {
        "id": "pool-0001",
        "name": "c / compare",
        "status": "draft",
        "idempotency_key": "c:compare",
        "created_at": "2025-01-01T00:00:00+00:00",
        "required_qualification": "qual-0007",
    }
    granted = {"qualification_id": "qual-0007", "worker_id": "w1", "granted": True}
    with respx.mock(base_url=base, assert_all_called=True) as mock:
        find = mock.get("/api/v1/qualifications").mock(
            return_value=httpx.Response(200, json={"items": []})
        )
        create = mock.post("/api/v1/qualifications").mock(
            return_value=httpx.Response(201, json=qual)
        )
        pools = mock.post("/api/v1/pools").mock(return_value=httpx.Response(201, json=pool))
        grant = mock.put("/api/v1/qualifications/qual-0007/workers/w1").mock(
            side_effect=[httpx.Response(503, json={}), httpx.Response(200, json=granted)]
        )
        with SimulatorConnector(client) as c:
            c.ensure_qualification("crowdloop-c-exam")
            c.create_batch(
                BatchSpec(
                    name="c / compare",
                    stage=Stage.COMPARE,
                    instruction="Pick one.",
                    reward=Money(amount="0.03"),
                    campaign_id="c",
                    required_qualification="crowdloop-c-exam",
                ),
                idempotency_key="c:compare",
            )
            c.grant_qualification("w1", "crowdloop-c-exam")
    assert find.calls[0].request.url.params["name"] == "crowdloop-c-exam"
    assert json.loads(create.calls[0].request.content) == {"name": "crowdloop-c-exam"}
    assert json.loads(pools.calls[0].request.content)["required_qualification"] == "qual-0007"
    assert grant.call_count == 2 and len(waits) == 1
    assert grant.calls[1].request.headers["authorization"] == "Bearer tok"
