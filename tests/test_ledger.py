"""Exactly-once push and exactly-once storage of results, on SQLite and PostgreSQL.

These call the stage functions directly (no Prefect) against a live simulated marketplace
on loopback, and simulate crashes by wrapping connector methods: a call that never
happens after the ledger intent was committed, a "false 500" whose write did happen, a
page read but never stored.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, update
from sqlmodel import col, select

from crowdloop.connectors.base import Connector
from crowdloop.connectors.errors import TransientError
from crowdloop.connectors.registry import build_connector
from crowdloop.db import get_engine, insert_ignore, session_scope
from crowdloop.demo import top5
from crowdloop.models.domain import (
    AddItemsResult,
    BatchRef,
    BatchSpec,
    PreferenceAnswer,
    RankingAnswer,
    RatingAnswer,
    Stage,
    Submission,
    TaskItem,
    TextAnswer,
    VerdictAnswer,
)
from crowdloop.models.spec import CampaignSpec
from crowdloop.models.tables import (
    Batch,
    Campaign,
    Item,
    ItemState,
    Judgment,
    JudgmentStatus,
    LedgerState,
    PushLedger,
    TaskRecord,
    utcnow,
)
from crowdloop.simulator import world
from crowdloop.simulator.config import CrowdConfig, FaultConfig, SimulatorConfig
from crowdloop.simulator.runner import SimulatorServer
from crowdloop.stages import ledger, ranking, rating, sync
from crowdloop.stages.counts import outstanding_counts, outstanding_total
from crowdloop.stages.ledger import PushResult, push_pending
from crowdloop.stages.plan import register_campaign
from crowdloop.stages.sync import judgment_row, settle_items, sync_stage, wait_and_sync

CAMPAIGN = "ledger-test"
TOPICS = list(world.CATALOG)[:2]
# 2 topics x 4 models -> 2 x 6 = 12 real pairs; golden_share 0.25 -> 12*0.25/0.75 = 4 golden.
REAL_ITEMS = 12
GOLDEN_SHARE = 0.25
GOLDEN_ITEMS = 4
ITEMS = REAL_ITEMS + GOLDEN_ITEMS
OVERLAP = 3
ASSIGNMENTS = ITEMS * OVERLAP
BATCH_SIZE = 6  # three add_items calls per full push: 6 + 6 + 4
CHUNKS = 3
# Simulated seconds per real second: every answer is in a few milliseconds after a push.
FAST = 1e6


# --- helpers ---------------------------------------------------------------------------------


def make_campaign(tmp_path: Path) -> CampaignSpec:
    top5.write_jsonl(tmp_path / "candidates.jsonl", top5.generate_candidates(TOPICS, 0))
    top5.write_jsonl(tmp_path / "golden.jsonl", top5.generate_golden_pairs(TOPICS, 0, 6))
    spec = CampaignSpec.model_validate(
        {
            "name": CAMPAIGN,
            "batch_size": BATCH_SIZE,
            "output_dir": str(tmp_path),
            "preferences": {
                "candidates_file": str(tmp_path / "candidates.jsonl"),
                "golden_file": str(tmp_path / "golden.jsonl"),
                "golden_share": GOLDEN_SHARE,
                "overlap": OVERLAP,
                # Fixed overlap: these tests count assignments exactly.
                "dynamic_overlap": None,
                "export": {"path": str(tmp_path / "preferences.jsonl")},
            },
        }
    )
    with session_scope() as s:
        register_campaign(s, spec)
    return spec


def count(model: type[Any], *where: Any) -> int:
    with session_scope() as s:
        return int(s.exec(select(func.count()).select_from(model).where(*where)).one())


def task_records() -> list[TaskRecord]:
    with session_scope() as s:
        return list(s.exec(select(TaskRecord).order_by(col(TaskRecord.key))).all())


def ledger_rows() -> list[PushLedger]:
    with session_scope() as s:
        return list(s.exec(select(PushLedger).order_by(col(PushLedger.key))).all())


def item_states() -> dict[str, int]:
    with session_scope() as s:
        rows = s.exec(select(Item.state, func.count()).group_by(col(Item.state))).all()
    return {str(state): int(n) for state, n in rows}


def batch_ref() -> BatchRef:
    with session_scope() as s:
        batch = s.exec(select(Batch).where(Batch.campaign_id == CAMPAIGN)).one()
    assert batch.external_id is not None
    return BatchRef(connector=batch.connector, external_id=batch.external_id)


def judgment_ids() -> list[str]:
    with session_scope() as s:
        return list(s.exec(select(Judgment.external_id)).all())


@pytest.fixture
def campaign(db_url: str, tmp_path: Path) -> CampaignSpec:
    return make_campaign(tmp_path)


@pytest.fixture
def start_sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Start a simulator (with the given config) and point the connector env at it."""
    servers: list[SimulatorServer] = []

    def start(config: SimulatorConfig | None = None) -> SimulatorServer:
        sim = SimulatorServer(config or SimulatorConfig(seed=1, time_scale=FAST))
        sim.start()
        servers.append(sim)
        monkeypatch.setenv("CROWDLOOP_SIMULATOR_URL", sim.url)
        monkeypatch.setenv("CROWDLOOP_SIMULATOR_TOKEN", sim.token)
        return sim

    yield start
    for sim in servers:
        sim.stop()


@pytest.fixture
def sim(start_sim: Any) -> SimulatorServer:
    server: SimulatorServer = start_sim()
    return server


@pytest.fixture
def connectors() -> Iterator[Any]:
    """Fresh connectors (a rerun after a crash builds a new one), closed at the end."""
    opened: list[Connector] = []

    def make(options: dict[str, Any] | None = None) -> Connector:
        c = build_connector("simulator", options or {}, None)
        opened.append(c)
        return c

    yield make
    for c in opened:
        c.close()


def assert_pushed_exactly_once(sim: SimulatorServer) -> None:
    """Every item is on the marketplace once, every ledger row is done."""
    stats = sim.stats()
    assert stats["pools_created"] == 1
    assert stats["tasks_created"] == ITEMS
    assert stats["assignments_created"] == ASSIGNMENTS
    records = task_records()
    assert len(records) == ITEMS
    assert all(r.external_id is not None for r in records)
    assert len({r.external_id for r in records}) == ITEMS
    assert all(r.key.endswith(".0") for r in records)
    assert sum(r.overlap for r in records) == ASSIGNMENTS
    ledger = ledger_rows()
    assert [r.state for r in ledger] == [LedgerState.DONE] * len(ledger)
    assert sorted(r.action for r in ledger) == ["add_items"] * CHUNKS + ["create_batch"]
    assert item_states() == {ItemState.PUSHED.value: ITEMS}


# --- push ------------------------------------------------------------------------------------


def test_campaign_plan_has_the_expected_items(campaign: CampaignSpec) -> None:
    assert count(Item) == ITEMS
    assert count(Item, col(Item.is_golden).is_(True)) == GOLDEN_ITEMS
    assert count(Item, Item.overlap == OVERLAP) == ITEMS
    assert item_states() == {ItemState.PENDING.value: ITEMS}


def test_push_twice_publishes_once(
    campaign: CampaignSpec, sim: SimulatorServer, connectors: Any
) -> None:
    connector = connectors()
    first = push_pending(CAMPAIGN, Stage.COMPARE, connector)
    assert first == PushResult(tasks_published=ITEMS, assignments=ASSIGNMENTS, reconciled=0)
    second = push_pending(CAMPAIGN, Stage.COMPARE, connector)
    assert second == PushResult(0, 0, 0)
    # A third push from a fresh connector (a rerun of the flow) publishes nothing either.
    assert push_pending(CAMPAIGN, Stage.COMPARE, connectors()) == PushResult(0, 0, 0)

    assert_pushed_exactly_once(sim)
    stats = sim.stats()
    assert stats["duplicate_task_creates_avoided"] == 0
    assert stats["group_worker_duplicates"] == 0
    # Our ids are the marketplace's ids.
    records = task_records()
    found = connector.find_tasks(batch_ref(), [r.key for r in records])
    assert found == {r.key: r.external_id for r in records}
    with session_scope() as s:
        assert all(i.pushes == 1 for i in s.exec(select(Item)).all())


def test_crash_after_intent_is_reconciled(
    campaign: CampaignSpec,
    sim: SimulatorServer,
    connectors: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The process dies after the intent commit, before the create call reaches anyone."""
    connector = connectors()
    calls = 0

    def dies_before_sending(
        batch: BatchRef, items: Sequence[TaskItem], *, idempotency_key: str
    ) -> AddItemsResult:
        nonlocal calls
        calls += 1
        raise RuntimeError("simulated crash after the ledger intent was committed")

    monkeypatch.setattr(connector, "add_items", dies_before_sending)
    with pytest.raises(RuntimeError, match="simulated crash"):
        push_pending(CAMPAIGN, Stage.COMPARE, connector)
    assert calls == 1

    # What the crash left: one open intent with its task rows, nothing on the marketplace.
    open_intents = [r for r in ledger_rows() if r.state == LedgerState.INTENT]
    assert [(r.action, r.calls) for r in open_intents] == [("add_items", 1)]
    records = task_records()
    assert len(records) == BATCH_SIZE
    assert all(r.external_id is None and r.ledger_key == open_intents[0].key for r in records)
    assert sim.stats()["tasks_created"] == 0
    assert item_states() == {
        ItemState.PUSHED.value: BATCH_SIZE,
        ItemState.PENDING.value: ITEMS - BATCH_SIZE,
    }

    # The rerun (a new process: a new connector) reconciles the intent, then pushes the rest.
    result = push_pending(CAMPAIGN, Stage.COMPARE, connectors())
    assert result.reconciled == BATCH_SIZE
    assert result.tasks_published == ITEMS - BATCH_SIZE
    assert_pushed_exactly_once(sim)
    assert sim.stats()["duplicate_task_creates_avoided"] == 0
    with session_scope() as s:
        reconciled = s.get(PushLedger, open_intents[0].key)
        assert reconciled is not None
        assert (reconciled.state, reconciled.calls) == (LedgerState.DONE, 2)
        assert all(i.pushes == 1 for i in s.exec(select(Item)).all())


@pytest.mark.parametrize("created", [BATCH_SIZE, 2], ids=["all-created", "subset-created"])
def test_false_500_is_reconciled_without_duplicates(
    campaign: CampaignSpec,
    sim: SimulatorServer,
    connectors: Any,
    monkeypatch: pytest.MonkeyPatch,
    created: int,
) -> None:
    """The create call happened (all or some of its tasks), but we heard a 500."""
    connector = connectors()
    real_add_items = connector.add_items
    lost: dict[str, str] = {}

    def false_500(
        batch: BatchRef, items: Sequence[TaskItem], *, idempotency_key: str
    ) -> AddItemsResult:
        result = real_add_items(batch, list(items)[:created], idempotency_key=idempotency_key)
        lost.update(result.external_ids)
        raise TransientError("simulator", "injected 500 after the write was applied")

    monkeypatch.setattr(connector, "add_items", false_500)
    with pytest.raises(TransientError):
        push_pending(CAMPAIGN, Stage.COMPARE, connector)
    assert len(lost) == created
    assert sim.stats()["tasks_created"] == created
    assert all(r.external_id is None for r in task_records())
    assert [r.state for r in ledger_rows() if r.action == "add_items"] == [LedgerState.INTENT]

    result = push_pending(CAMPAIGN, Stage.COMPARE, connectors())
    assert result.tasks_published == ITEMS - BATCH_SIZE
    # Only the tasks the lost call did not create are sent again.
    assert result.reconciled == BATCH_SIZE - created
    assert_pushed_exactly_once(sim)
    # find_tasks found the created ones, so they were never sent a second time.
    assert sim.stats()["duplicate_task_creates_avoided"] == 0
    by_key = {r.key: r.external_id for r in task_records()}
    assert {k: by_key[k] for k in lost} == lost


def test_only_a_repeated_call_asks_the_marketplace_first(
    campaign: CampaignSpec,
    sim: SimulatorServer,
    connectors: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A first call under a ledger key sends without a lookup (nothing can exist yet); the
    call after a lost answer looks up what the lost one created (the test above checks
    nothing is sent twice)."""
    connector = connectors()
    asked: list[int] = []
    real_find = connector.find_tasks

    def counting_find(batch: BatchRef, keys: Sequence[str]) -> dict[str, str]:
        asked.append(len(keys))
        return real_find(batch, keys)

    real_add_items = connector.add_items
    first_call = True

    def lose_first_answer(
        batch: BatchRef, items: Sequence[TaskItem], *, idempotency_key: str
    ) -> AddItemsResult:
        nonlocal first_call
        result = real_add_items(batch, items, idempotency_key=idempotency_key)
        if first_call:
            first_call = False
            raise TransientError("simulator", "injected 500 after the write was applied")
        return result

    monkeypatch.setattr(connector, "find_tasks", counting_find)
    monkeypatch.setattr(connector, "add_items", lose_first_answer)
    with pytest.raises(TransientError):
        push_pending(CAMPAIGN, Stage.COMPARE, connector)
    assert asked == []
    result = push_pending(CAMPAIGN, Stage.COMPARE, connector)
    # The reconciled chunk was asked about; the chunks sent for the first time were not.
    assert asked == [BATCH_SIZE]
    assert result.reconciled == 0
    assert result.tasks_published == ITEMS - BATCH_SIZE
    assert_pushed_exactly_once(sim)


def test_batch_create_false_500_is_reconciled(
    campaign: CampaignSpec,
    sim: SimulatorServer,
    connectors: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    connector = connectors()
    real_create = connector.create_batch

    def false_500(spec: BatchSpec, *, idempotency_key: str) -> BatchRef:
        real_create(spec, idempotency_key=idempotency_key)
        raise TransientError("simulator", "injected 500 after the pool was created")

    monkeypatch.setattr(connector, "create_batch", false_500)
    with pytest.raises(TransientError):
        push_pending(CAMPAIGN, Stage.COMPARE, connector)
    assert sim.stats()["pools_created"] == 1
    assert [(r.action, r.state) for r in ledger_rows()] == [("create_batch", LedgerState.INTENT)]

    result = push_pending(CAMPAIGN, Stage.COMPARE, connectors())
    assert result.tasks_published == ITEMS
    assert_pushed_exactly_once(sim)
    assert sim.stats()["pool_create_replays"] == 0  # found by key, not created again


# --- sync ------------------------------------------------------------------------------------


def test_page_read_twice_is_stored_once(
    campaign: CampaignSpec, sim: SimulatorServer, connectors: Any
) -> None:
    connector = connectors({"page_limit": 7})
    push_pending(CAMPAIGN, Stage.COMPARE, connector)
    total = wait_and_sync(CAMPAIGN, [Stage.COMPARE], connector, poll_interval_s=0.05, timeout_s=60)
    assert total.stored == ASSIGNMENTS
    assert total.quarantined == 0
    assert count(Judgment) == ASSIGNMENTS
    with session_scope() as s:
        assert outstanding_counts(s, CAMPAIGN) == {}

    # Rewind the cursor: every page is read again.
    with session_scope() as s:
        s.execute(update(Batch).values(cursor=None))
    again = sync_stage(CAMPAIGN, Stage.COMPARE, connector)
    assert again.pages >= ASSIGNMENTS // 7
    assert count(Judgment) == ASSIGNMENTS
    ids = judgment_ids()
    assert len(set(ids)) == len(ids) == ASSIGNMENTS
    with session_scope() as s:
        cursor = s.exec(select(Batch.cursor)).one()
    assert cursor is not None


def test_sync_result_counts_only_new_rows(
    campaign: CampaignSpec, sim: SimulatorServer, connectors: Any
) -> None:
    connector = connectors()
    push_pending(CAMPAIGN, Stage.COMPARE, connector)
    wait_and_sync(CAMPAIGN, [Stage.COMPARE], connector, poll_interval_s=0.05, timeout_s=60)
    assert count(Judgment) == ASSIGNMENTS
    with session_scope() as s:
        s.execute(update(Batch).values(cursor=None))
    again = sync_stage(CAMPAIGN, Stage.COMPARE, connector)
    assert count(Judgment) == ASSIGNMENTS
    assert again.stored == 0


def test_crash_between_page_read_and_store_loses_nothing(
    campaign: CampaignSpec,
    sim: SimulatorServer,
    connectors: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    page_limit = 5
    connector = connectors({"page_limit": page_limit})
    push_pending(CAMPAIGN, Stage.COMPARE, connector)
    sim.advance(10**6)  # every assignment is submitted now
    assert connector.get_status(batch_ref()).assignments_submitted == ASSIGNMENTS

    real_iter = connector.iter_submissions
    first_cursor: list[str | None] = []

    def crashes_on_second_page(batch: BatchRef, *, cursor: str | None) -> Iterator[Any]:
        pages = real_iter(batch, cursor=cursor)
        page = next(pages)
        first_cursor.append(page.cursor)
        yield page  # stored by sync_stage
        second = next(pages)  # read ...
        assert len(second.submissions) == page_limit
        raise RuntimeError("simulated crash after reading a page, before storing it")

    monkeypatch.setattr(connector, "iter_submissions", crashes_on_second_page)
    with pytest.raises(RuntimeError, match="simulated crash"):
        sync_stage(CAMPAIGN, Stage.COMPARE, connector)
    assert count(Judgment) == page_limit
    with session_scope() as s:
        assert s.exec(select(Batch.cursor)).one() == first_cursor[0]
        # The sync's total, added up in the database, is the per-item counts' sum.
        assert (
            outstanding_total(s, CAMPAIGN)
            == outstanding_total(s, CAMPAIGN, [Stage.COMPARE])
            == sum(outstanding_counts(s, CAMPAIGN).values())
            == ASSIGNMENTS - page_limit
        )
        assert outstanding_total(s, CAMPAIGN, [Stage.EXAM]) == 0

    # The rerun resumes from the stored cursor.
    result = sync_stage(CAMPAIGN, Stage.COMPARE, connectors({"page_limit": page_limit}))
    assert result.stored == ASSIGNMENTS - page_limit
    assert count(Judgment) == ASSIGNMENTS == sim.stats()["assignments_created"]
    ids = judgment_ids()
    assert len(set(ids)) == len(ids)
    with session_scope() as s:
        assert outstanding_counts(s, CAMPAIGN) == {}
        assert outstanding_total(s, CAMPAIGN) == 0
        per_item = dict(
            s.exec(select(Judgment.item_id, func.count()).group_by(col(Judgment.item_id))).all()
        )
    assert len(per_item) == ITEMS
    assert set(per_item.values()) == {OVERLAP}


@pytest.mark.parametrize("page", [None, 3], ids=["one-page", "pages-of-3"])
def test_garbled_answers_are_quarantined_and_requeued(
    campaign: CampaignSpec,
    start_sim: Any,
    connectors: Any,
    page: int | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if page is not None:
        # The settle and the push read their items a page at a time, with each page's
        # counts only: the same moves and the same re-asks as from one read.
        monkeypatch.setattr(sync, "SETTLE_PAGE", page)
        monkeypatch.setattr(ledger, "PUSH_PAGE", page)
    sim = start_sim(
        SimulatorConfig(
            seed=1, time_scale=FAST, crowd=CrowdConfig(), faults=FaultConfig(seed=3, garble=0.2)
        )
    )
    connector = connectors()
    push_pending(CAMPAIGN, Stage.COMPARE, connector)
    synced = wait_and_sync(CAMPAIGN, [Stage.COMPARE], connector, poll_interval_s=0.05, timeout_s=60)
    with session_scope() as s:
        judgments = list(s.exec(select(Judgment)).all())
    quarantined = [j for j in judgments if j.status == JudgmentStatus.QUARANTINED]
    valid = [j for j in judgments if j.status == JudgmentStatus.VALID]
    assert len(judgments) == ASSIGNMENTS
    assert 0 < len(quarantined) < ASSIGNMENTS // 2
    assert synced.quarantined == len(quarantined)
    assert len(quarantined) == sim.stats()["faults_injected"]["garble"]
    for q in quarantined:
        assert q.reason and q.raw
        assert q.label is None
        assert q.item_id is not None and q.task_key == f"{q.item_id}.0"
        assert "answer" in json.loads(q.raw)
    for v in valid:
        assert v.label in {"left", "right", "tie"}
        assert v.reason is None and v.raw is None

    short = {q.item_id for q in quarantined}
    moved = settle_items(CAMPAIGN, max_requeue_rounds=3)
    assert moved == {"collected": ITEMS - len(short), "requeued": len(short), "exhausted": 0}
    with session_scope() as s:
        states = {i.id: i.state for i in s.exec(select(Item)).all()}
    assert {i for i, st in states.items() if st == ItemState.PENDING} == short
    assert {i for i, st in states.items() if st == ItemState.COLLECTED} == set(states) - short

    # The next push publishes a new, equally idempotent key per short item: <item>.1
    again = push_pending(CAMPAIGN, Stage.COMPARE, connector)
    assert again.tasks_published == len(short)
    assert again.assignments == len(quarantined)
    missing_per_item = {i: sum(1 for q in quarantined if q.item_id == i) for i in short}
    new_records = {r.item_id: r for r in task_records() if r.key.endswith(".1")}
    assert set(new_records) == short
    assert {i: r.overlap for i, r in new_records.items()} == missing_per_item
    assert all(r.key == f"{i}.1" and r.external_id for i, r in new_records.items())
    found = connector.find_tasks(batch_ref(), [r.key for r in new_records.values()])
    assert found == {r.key: r.external_id for r in new_records.values()}
    assert sim.stats()["tasks_created"] == ITEMS + len(short)
    assert item_states()[ItemState.PUSHED.value] == len(short)
    assert all(r.state == LedgerState.DONE for r in ledger_rows())


# --- insert_ignore on both backends ----------------------------------------------------------


def _judgment_row(n: int) -> dict[str, Any]:
    return {
        "connector": "simulator",
        "external_id": f"asg-{n}",
        "campaign_id": "c1",
        "item_id": None,
        "task_key": None,
        "worker_id": "w001",
        "status": JudgmentStatus.VALID,
        "label": "left",
        "text": None,
        "submitted_at": None,
        "received_at": utcnow(),
        "reason": None,
        "raw": None,
        "excluded": False,
        "exclusion_reason": None,
        "review": None,
    }


def _ledger_row(key: str) -> dict[str, Any]:
    return {
        "key": key,
        "campaign_id": "c1",
        "connector": "simulator",
        "action": "add_items",
        "state": LedgerState.INTENT,
        "target": "compare",
        "calls": 0,
        "created_at": utcnow(),
        "updated_at": utcnow(),
    }


def _campaign_row() -> None:
    with session_scope() as s:
        s.add(Campaign(id="c1", spec={}, spec_hash="0" * 64, connector="simulator"))


def test_insert_ignore_skips_existing_rows(db_url: str) -> None:
    backend = get_engine(db_url).dialect.name
    assert backend == ("postgresql" if db_url.startswith("postgresql") else "sqlite")
    _campaign_row()
    with session_scope() as s:
        insert_ignore(
            s, Judgment, [_judgment_row(n) for n in (1, 2, 3)], ["connector", "external_id"]
        )
    with session_scope() as s:
        insert_ignore(
            s, Judgment, [_judgment_row(n) for n in (2, 3, 4)], ["connector", "external_id"]
        )
    assert sorted(judgment_ids()) == ["asg-1", "asg-2", "asg-3", "asg-4"]
    # The same external id from another connector is another submission.
    other = {**_judgment_row(1), "connector": "other"}
    with session_scope() as s:
        insert_ignore(s, Judgment, [other], ["connector", "external_id"])
    assert count(Judgment) == 5

    with session_scope() as s:
        insert_ignore(s, PushLedger, [_ledger_row("k1"), _ledger_row("k2")], ["key"])
    done = {**_ledger_row("k1"), "state": LedgerState.DONE, "calls": 7}
    with session_scope() as s:
        insert_ignore(s, PushLedger, [done, _ledger_row("k3")], ["key"])
    rows = {r.key: r for r in ledger_rows()}
    assert sorted(rows) == ["k1", "k2", "k3"]
    # The existing row is left as it was: insert_ignore never overwrites.
    assert (rows["k1"].state, rows["k1"].calls) == (LedgerState.INTENT, 0)


@pytest.mark.usefixtures("db_url")
def test_insert_ignore_reports_rows_inserted() -> None:
    _campaign_row()
    with session_scope() as s:
        first = insert_ignore(
            s, Judgment, [_judgment_row(n) for n in (1, 2, 3)], ["connector", "external_id"]
        )
    with session_scope() as s:
        second = insert_ignore(
            s, Judgment, [_judgment_row(n) for n in (2, 3, 4)], ["connector", "external_id"]
        )
    assert count(Judgment) == 4
    assert (first, second) == (3, 1)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (PreferenceAnswer(choice="left", level=2, rationale="r"), ("left", None, 2, "r")),
        (VerdictAnswer(verdict="reject", rationale="why"), ("reject", None, None, "why")),
        (TextAnswer(text="hello"), (None, "hello", None, None)),
        (RankingAnswer(ranks=(2, 1, 3)), (ranking.LABEL, "[2, 1, 3]", None, None)),
        (
            RatingAnswer(scores={"b": 2, "a": 1}, rationale="x"),
            (rating.LABEL, '{"a": 1, "b": 2}', None, "x"),
        ),
    ],
)
def test_judgment_row_fields_per_answer_type(answer: Any, expected: tuple[Any, ...]) -> None:
    when = datetime(2026, 1, 2, tzinfo=UTC)
    sub = Submission(
        external_id="a-1", task_key="t.0", worker_id="w1", answer=answer, submitted_at=when
    )
    row = judgment_row(CAMPAIGN, "simulator", sub, "item-1", received_at=when)
    assert (row["label"], row["text"], row["level"], row["rationale"]) == expected
    assert row["status"] == JudgmentStatus.VALID
    assert row["received_at"] == row["submitted_at"] == when
    assert judgment_row(CAMPAIGN, "simulator", sub, "item-1")["received_at"] > when
