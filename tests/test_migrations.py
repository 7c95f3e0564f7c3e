"""Schema migrations and the versioned stored spec.

- a database made by the previous release (its create_all, from a committed SQL fixture)
  with a campaign, items and judgments in it, opened by today's code: adopted by the
  baseline, upgraded by 0002, the data intact and usable, on SQLite and PostgreSQL;
- the models and the migrations agree (autogenerate finds nothing), so a schema change
  without a revision fails here;
- concurrent openers migrate once; a database newer than the code, or whose tables predate
  the baseline, is refused in one line with nothing changed;
- stored specs: older versions are upgraded step by step, a newer one is refused in one line.
"""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlmodel import func, select

from crowdloop import migrations
from crowdloop.db import get_engine, session_scope, unmigrated_engine
from crowdloop.migrations import HEAD, SchemaError, ensure_schema, schema_diff
from crowdloop.models.spec import CampaignSpec
from crowdloop.models.stored_spec import (
    SPEC_VERSION,
    UPGRADES,
    StoredSpecError,
    read_stored_spec,
)
from crowdloop.models.tables import Campaign, CampaignStatus, Item, Judgment, WorkerRecord
from crowdloop.stages.plan import load_spec, register_campaign, spec_hash
from crowdloop.stages.progress import live_progress
from tests.fixtures.previous_release import (
    PREVIOUS_RELEASE,
    fixture_path,
    release_ddl,
    statements,
)

OLD = "old-release-campaign"
NOW = datetime(2026, 12, 6, 7, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest) -> str:
    """A fresh, empty database per test on each backend (see conftest.py)."""
    return str(
        request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
    )


def spec_dict(tmp_path: Path) -> dict[str, Any]:
    rows = [
        {"prompt_id": "p1", "prompt": "Top 5 rivers?", "response_id": r, "response": r, "model": m}
        for r, m in (("r1", "a"), ("r2", "b"), ("r3", "c"))
    ]
    (tmp_path / "candidates.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return CampaignSpec.model_validate(
        {
            "name": OLD,
            "output_dir": str(tmp_path),
            "preferences": {
                "candidates_file": str(tmp_path / "candidates.jsonl"),
                "overlap": 3,
                "export": {"path": str(tmp_path / "preferences.jsonl")},
            },
        }
    ).model_dump(mode="json")


def load_previous_release(url: str, spec: dict[str, Any]) -> None:
    """The previous release's schema (its create_all, as committed SQL) with one campaign
    in it: a batch, three items, four judgments and a worker, written as that release
    stored them (the tables reflected from the database, not today's models)."""
    dialect = make_url(url).get_backend_name()
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            for stmt in statements(fixture_path(PREVIOUS_RELEASE, dialect).read_text()):
                conn.exec_driver_sql(stmt)
            old = sa.MetaData()
            old.reflect(conn, only=["campaign", "batch", "item", "judgment", "workerrecord"])
            t = old.tables
            assert "spec_version" not in t["campaign"].c  # the release had no such column
            conn.execute(
                t["campaign"]
                .insert()
                .values(
                    id=OLD,
                    spec=spec,
                    spec_hash=spec_hash(CampaignSpec.model_validate(spec)),
                    connector="simulator",
                    status="RUNNING",
                    created_at=NOW,
                    updated_at=NOW,
                )
            )
            conn.execute(
                t["batch"]
                .insert()
                .values(
                    campaign_id=OLD,
                    stage="compare",
                    connector="simulator",
                    idempotency_key=f"{OLD}:compare",
                    external_id="pool-0001",
                    started=True,
                    closed=False,
                )
            )
            for i, state in enumerate(["PENDING", "PUSHED", "COLLECTED"]):
                conn.execute(
                    t["item"]
                    .insert()
                    .values(
                        id=f"item-{i}",
                        campaign_id=OLD,
                        stage="compare",
                        kind="compare",
                        payload={"prompt": f"p{i}", "left": "a", "right": "b"},
                        state=state,
                        overlap=3,
                        attempt=0,
                        pushes=1,
                        extensions=0,
                        is_golden=False,
                        group=f"item-{i}",
                        created_at=NOW,
                    )
                )
            for j in range(4):
                conn.execute(
                    t["judgment"]
                    .insert()
                    .values(
                        connector="simulator",
                        external_id=f"sub-{j}",
                        campaign_id=OLD,
                        item_id=f"item-{j % 3}",
                        worker_id=f"w{j % 2}",
                        status="VALID",
                        label="left",
                        received_at=NOW,
                        excluded=False,
                    )
                )
            conn.execute(
                t["workerrecord"]
                .insert()
                .values(
                    campaign_id=OLD,
                    worker_id="w0",
                    golden_total=4,
                    golden_correct=3,
                    written_total=0,
                    written_accepted=0,
                    accuracy=0.7,
                    p_below=0.2,
                    status="TRUSTED",
                    judgments=2,
                    blocked_on_marketplace=False,
                )
            )
    finally:
        engine.dispose()


@pytest.fixture
def engine(url: str) -> Iterator[sa.Engine]:
    """An engine on `url` that does not migrate by itself (the tests say when)."""
    e = unmigrated_engine(url)
    yield e
    e.dispose()


def table_names(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


# --- the previous release's database, opened by this code --------------------------------------


def test_database_of_the_previous_release_is_upgraded_with_its_data(
    url: str, engine: sa.Engine, tmp_path: Path
) -> None:
    spec = spec_dict(tmp_path)
    load_previous_release(url, spec)
    assert migrations.current_revision(engine) is None
    assert schema_diff_of(engine), "the old schema already matches: nothing would be upgraded"

    # What opening it does (get_engine runs the same call): baseline adopts, 0002 upgrades.
    assert ensure_schema(engine) == "adopted"
    assert migrations.current_revision(engine) == HEAD
    assert schema_diff_of(engine) == []
    assert ensure_schema(engine) == "current"

    get_engine(url)  # the application's engine: at head already, nothing to do
    with session_scope(url) as s:
        campaign = s.get(Campaign, OLD)
        assert campaign is not None
        assert campaign.spec_version == 1  # stored before versions were recorded
        assert campaign.status == "running" and campaign.created_at == NOW
        assert load_spec(s, OLD) == CampaignSpec.model_validate(spec)
        # Registering the same spec again finds it (same hash): the old campaign goes on.
        assert register_campaign(s, CampaignSpec.model_validate(spec)).id == OLD
        n_items = s.exec(select(func.count()).select_from(Item)).one()
        n_judgments = s.exec(select(func.count()).select_from(Judgment)).one()
        worker = s.get(WorkerRecord, (OLD, "w0"))
    assert (n_items, n_judgments) == (3, 4)
    assert worker is not None and worker.golden_correct == 3 and worker.status == "trusted"
    progress = live_progress(OLD)
    assert [(p.stage, p.done, p.total) for p in progress.stages] == [("compare", 1, 3)]
    assert progress.judgments_valid == 4

    # New rows go in beside the old ones, in today's shape.
    newer = CampaignSpec.model_validate({**spec, "name": "new-campaign"})
    with session_scope(url) as s:
        assert register_campaign(s, newer).spec_version == SPEC_VERSION
        s.add(
            Judgment(
                connector="simulator",
                external_id="sub-new",
                campaign_id="new-campaign",
                label="right",
            )
        )
    with session_scope(url) as s:
        assert s.exec(select(func.count()).select_from(Judgment)).one() == 5


def schema_diff_of(engine: sa.Engine) -> list[object]:
    with engine.connect() as conn:
        return schema_diff(conn)


def test_fixture_is_what_the_previous_release_creates() -> None:
    """The committed SQL is the release's own create_all (regenerated from git here)."""
    try:
        subprocess.run(
            ["git", "cat-file", "-e", f"{PREVIOUS_RELEASE}^{{commit}}"],
            cwd=Path(__file__).parent,
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError):
        pytest.skip(f"git history with {PREVIOUS_RELEASE} is not available (shallow clone?)")
    for dialect in ("sqlite", "postgresql"):
        # As sets: create_all emits a table's indexes in the order of a set of objects.
        assert sorted(statements(release_ddl(PREVIOUS_RELEASE, dialect))) == sorted(
            statements(fixture_path(PREVIOUS_RELEASE, dialect).read_text())
        ), (
            f"{fixture_path(PREVIOUS_RELEASE, dialect).name} differs from the DDL of "
            f"{PREVIOUS_RELEASE}'s create_all (a SQLModel/SQLAlchemy upgrade changes the DDL "
            "they emit: regenerate with `python -m tests.fixtures.previous_release` and review)"
        )


# --- models and migrations agree -----------------------------------------------------------------


def test_migrations_from_empty_give_the_models_schema(engine: sa.Engine) -> None:
    """Every revision from an empty database ends where the models are (a model change
    without its revision fails here); the alembic way of creating a database."""
    from alembic import command

    with migrations.locked(engine) as conn:
        command.upgrade(migrations.alembic_config(conn), "head")
    assert migrations.current_revision(engine) == HEAD
    assert schema_diff_of(engine) == []


def test_a_new_database_is_created_from_the_models_and_stamped_head(engine: sa.Engine) -> None:
    """The quick path for an empty database (create_all + stamp) ends where the revisions
    do (the test above), and alembic reads the stamp as its own."""
    from alembic.runtime.migration import MigrationContext

    assert ensure_schema(engine) == "created"
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == HEAD
        assert schema_diff(conn) == []


def test_head_is_the_newest_revision_and_history_is_linear() -> None:
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(migrations.alembic_config())
    assert scripts.get_heads() == [HEAD]
    chain = [s.revision for s in scripts.walk_revisions()]  # newest first
    assert chain[-1] == migrations.BASELINE
    assert len(chain) == len(set(chain)) == len(migrations.known_revisions())


def test_latest_revision_downgrades_and_upgrades_again(url: str, engine: sa.Engine) -> None:
    from alembic import command

    assert ensure_schema(engine) == "created"
    with session_scope(url) as s:
        s.add(Campaign(id="c", spec={}, spec_hash="0" * 64, connector="simulator", spec_version=2))
    with migrations.locked(engine) as conn:
        command.downgrade(migrations.alembic_config(conn), migrations.BASELINE)
    assert migrations.current_revision(engine) == migrations.BASELINE
    cols = {c["name"] for c in sa.inspect(engine).get_columns("campaign")}
    assert "spec_version" not in cols
    assert ensure_schema(engine) == "upgraded"
    assert schema_diff_of(engine) == []
    with engine.connect() as conn:
        # The row survived both ways; the column is back with the default of stored specs.
        assert conn.execute(sa.text("SELECT id, spec_version FROM campaign")).all() == [("c", 1)]


# --- refusals: nothing is changed --------------------------------------------------------------


def test_a_database_migrated_by_a_newer_crowdloop_is_refused(url: str, engine: sa.Engine) -> None:
    assert ensure_schema(engine) == "created"
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0099'"))
    with pytest.raises(SchemaError) as err:
        ensure_schema(engine)
    message = str(err.value)
    assert "\n" not in message
    assert "revision 0099" in message and f"newest is {HEAD}" in message
    assert make_url(url).database in message  # names the database it read
    assert migrations.current_revision(engine) == "0099"


def test_tables_older_than_the_baseline_are_refused_unchanged(
    url: str, engine: sa.Engine, tmp_path: Path
) -> None:
    """A release before the baseline had `item` without `extensions`; create_all never added
    columns, so such a database cannot be adopted: one line, and it stays as it was."""
    load_previous_release(url, spec_dict(tmp_path))
    with engine.begin() as conn:
        conn.execute(sa.text("DROP INDEX ix_item_campaign_stage_state"))
        conn.execute(sa.text("ALTER TABLE item DROP COLUMN extensions"))
        conn.execute(sa.text("DROP TABLE spendcheck"))
    before = table_names(engine)
    with pytest.raises(SchemaError) as err:
        ensure_schema(engine)
    message = str(err.value)
    assert "\n" not in message and "item.extensions" in message
    assert migrations.current_revision(engine) is None
    # Rolled back: neither the missing table nor the dropped index came back.
    assert table_names(engine) == before
    assert "ix_item_campaign_stage_state" not in {
        i["name"] for i in sa.inspect(engine).get_indexes("item")
    }


def test_missing_tables_and_indexes_of_an_older_database_are_created(
    url: str, engine: sa.Engine, tmp_path: Path
) -> None:
    """What create_all did at every start for a database made before a table existed."""
    load_previous_release(url, spec_dict(tmp_path))
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE spendcheck"))
        conn.execute(sa.text("DROP INDEX ix_judgment_campaign_worker"))
    assert ensure_schema(engine) == "adopted"
    assert schema_diff_of(engine) == []
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM judgment")).scalar() == 4


@pytest.mark.postgres
def test_enum_members_added_since_an_older_database_are_added(
    postgres_url: str, tmp_path: Path
) -> None:
    """Before the lifecycle (7fcafe8) campaignstatus had no paused/cancelled/awaiting
    approval; create_all never altered an enum type, so such a database could not store
    them. The baseline adds the members a PostgreSQL enum type lacks."""
    engine = unmigrated_engine(postgres_url)
    try:
        load_previous_release(postgres_url, spec_dict(tmp_path))
        with engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE campaign ALTER COLUMN status TYPE text"))
            conn.execute(sa.text("DROP TYPE campaignstatus"))
            conn.execute(sa.text("CREATE TYPE campaignstatus AS ENUM ('RUNNING', 'COMPLETE')"))
            conn.execute(
                sa.text(
                    "ALTER TABLE campaign ALTER COLUMN status TYPE campaignstatus "
                    "USING status::campaignstatus"
                )
            )
        assert ensure_schema(engine) == "adopted"
        with session_scope(postgres_url) as s:
            campaign = s.get(Campaign, OLD)
            assert campaign is not None
            campaign.status = CampaignStatus.AWAITING_APPROVAL
            s.add(campaign)
        with session_scope(postgres_url) as s:
            assert s.get(Campaign, OLD).status == CampaignStatus.AWAITING_APPROVAL  # type: ignore[union-attr]
        labels = {e["name"]: e["labels"] for e in sa.inspect(engine).get_enums()}
        assert set(labels["campaignstatus"]) == {m.name for m in CampaignStatus}
    finally:
        engine.dispose()


# --- two processes opening one database at once ---------------------------------------------------


def _open(url: str, barrier: Any, out: Any) -> None:
    try:
        engine = unmigrated_engine(url)
        # Generous: three spawned interpreters importing crowdloop on 2 loaded cores.
        barrier.wait(300)
        out.put(ensure_schema(engine))
    except BaseException as exc:
        out.put(f"error: {exc!r}")


def test_processes_opening_one_database_at_once_migrate_it_once(
    url: str, engine: sa.Engine, tmp_path: Path
) -> None:
    load_previous_release(url, spec_dict(tmp_path))
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(3)
    out = ctx.Queue()
    procs = [ctx.Process(target=_open, args=(url, barrier, out)) for _ in range(3)]
    for p in procs:
        p.start()
    results = sorted(out.get(timeout=600) for _ in procs)
    for p in procs:
        p.join(30)
    assert results == ["adopted", "current", "current"]
    assert migrations.current_revision(engine) == HEAD
    assert schema_diff_of(engine) == []


def test_an_opener_that_meets_a_locked_sqlite_database_tries_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A "database is locked" on the first read (another process's migration, a WAL
    recovery) is waited out, not raised; any other database error is raised at once."""
    engine = unmigrated_engine(f"sqlite:///{tmp_path / 'locked.db'}")
    real = migrations.current_revision
    calls: list[str] = []

    def locked_twice(e: sa.Engine) -> str | None:
        calls.append("read")
        if len(calls) <= 2:
            raise sa.exc.OperationalError("SELECT", {}, Exception("database is locked"))
        return real(e)

    monkeypatch.setattr(migrations, "current_revision", locked_twice)
    try:
        assert ensure_schema(engine) == "created"
        assert calls == ["read"] * 3
        assert migrations.stamped_revision(engine.connect()) == HEAD

        def broken(e: sa.Engine) -> str | None:
            raise sa.exc.OperationalError("SELECT", {}, Exception("disk I/O error"))

        monkeypatch.setattr(migrations, "current_revision", broken)
        with pytest.raises(sa.exc.OperationalError, match="disk I/O error"):
            ensure_schema(engine)
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_a_second_opener_waits_for_the_lock_on_postgresql(postgres_url: str) -> None:
    """While one process holds the migration lock, another opener waits on it (seen in
    pg_locks), then finds the database migrated."""
    holder = unmigrated_engine(postgres_url)
    watcher = sa.create_engine(postgres_url)
    child = None
    try:
        with migrations.locked(holder) as conn:
            child = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "import sys; from crowdloop.db import unmigrated_engine; "
                    "from crowdloop.migrations import ensure_schema; "
                    "print(ensure_schema(unmigrated_engine(sys.argv[1])))",
                    postgres_url,
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            deadline = time.monotonic() + 60
            waiting = 0
            while not waiting and time.monotonic() < deadline and child.poll() is None:
                with watcher.connect() as w:
                    waiting = w.execute(
                        sa.text(
                            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                            "AND NOT granted"
                        )
                    ).scalar_one()
            assert waiting == 1, "the second opener never waited on the migration lock"
            assert migrations._migrate(conn, describe=postgres_url) == "created"
        stdout, _ = child.communicate(timeout=60)
        assert child.returncode == 0
        assert stdout.strip() == "current"
    finally:
        if child is not None and child.poll() is None:
            child.kill()
        holder.dispose()
        watcher.dispose()


# --- the stored spec's version --------------------------------------------------------------------


def test_a_spec_stored_before_quality_on_fail_is_read_in_todays_shape(tmp_path: Path) -> None:
    """Version 1 covers every spec stored before versions; the earliest carry the quality
    keys commit b0f05ac replaced, which today's model refuses."""
    spec = spec_dict(tmp_path)
    quality = {
        k: v for k, v in spec["quality"].items() if k not in ("on_fail", "reject_untrusted_work")
    }
    old = {
        **spec,
        "quality": {**quality, "block_on_marketplace": False, "reject_blocked_work": False},
    }
    with pytest.raises(ValueError):
        CampaignSpec.model_validate(old)
    read = read_stored_spec(OLD, old, 1)
    assert read.quality.on_fail == "exclude" and read.quality.reject_untrusted_work is False
    blocking = {**spec, "quality": {**quality, "block_on_marketplace": True}}
    assert read_stored_spec(OLD, blocking, 1).quality.on_fail == "block"
    # A version-1 spec in today's shape reads as itself.
    assert read_stored_spec(OLD, spec, 1) == CampaignSpec.model_validate(spec)
    assert read_stored_spec(OLD, spec, SPEC_VERSION) == CampaignSpec.model_validate(spec)


def test_every_older_spec_version_has_one_upgrade_step() -> None:
    assert sorted(UPGRADES) == list(range(1, SPEC_VERSION))


def test_a_spec_from_a_newer_crowdloop_is_refused_in_one_line(
    sqlite_url: str, tmp_path: Path
) -> None:
    spec = CampaignSpec.model_validate(spec_dict(tmp_path))
    with session_scope() as s:
        register_campaign(s, spec).spec_version = SPEC_VERSION + 1
    with session_scope() as s, pytest.raises(StoredSpecError) as err:
        load_spec(s, OLD)
    message = str(err.value)
    assert "\n" not in message
    assert repr(OLD) in message
    assert f"spec version {SPEC_VERSION + 1}" in message and f"1 to {SPEC_VERSION}" in message


def test_a_stored_spec_that_does_not_validate_names_the_campaign_and_field(
    sqlite_url: str, tmp_path: Path
) -> None:
    spec = CampaignSpec.model_validate(spec_dict(tmp_path))
    with session_scope() as s:
        row = register_campaign(s, spec)
        row.spec = {**row.spec, "batch_size": 0}
        s.add(row)
    with session_scope() as s, pytest.raises(StoredSpecError) as err:
        load_spec(s, OLD)
    assert "\n" not in str(err.value)
    assert repr(OLD) in str(err.value) and "'batch_size'" in str(err.value)


# --- crowdloop db current / upgrade --------------------------------------------------------------


def test_db_commands_show_and_upgrade_a_previous_release_database(
    sqlite_url: str, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from crowdloop.cli import app

    runner = CliRunner()
    path = make_url(sqlite_url).database
    assert path is not None

    def db(command: str) -> str:
        result = runner.invoke(app, ["--db", path, "db", command], terminal_width=200)
        assert result.exit_code == 0, result.output
        return " ".join(result.output.split())

    assert "no database there yet" in db("current")
    assert not Path(path).exists()  # looking created nothing
    load_previous_release(sqlite_url, spec_dict(tmp_path))
    assert "no revision recorded" in db("current")
    assert f"tables made before migrations adopted, now at revision {HEAD}" in db("upgrade")
    assert f"revision {HEAD} (head: up to date)" in db("current")
    assert f"already at revision {HEAD}" in db("upgrade")


def _short_busy_engine(path: Path) -> sa.Engine:
    """An SQLite engine whose busy handler gives up after 20 ms, so that a wait longer than
    one busy_timeout is quick to provoke."""
    engine = sa.create_engine(f"sqlite:///{path}", connect_args={"check_same_thread": False})

    @sa.event.listens_for(engine, "connect")
    def _busy(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA busy_timeout=20")

    return engine


def test_an_sqlite_opener_waits_out_a_migration_longer_than_busy_timeout(
    tmp_path: Path,
) -> None:
    """A migration of a large file holds the write lock for longer than one busy_timeout;
    a second opener keeps waiting (to a deadline) instead of failing its flow run."""
    import threading

    path = tmp_path / "c.db"
    holder = _short_busy_engine(path)
    opener = _short_busy_engine(path)
    busy_errors: list[str] = []
    sa.event.listen(
        opener, "handle_error", lambda ctx: busy_errors.append(str(ctx.original_exception))
    )
    got: list[str] = []
    with holder.connect() as held:
        held.exec_driver_sql("BEGIN EXCLUSIVE")

        def take() -> None:
            with migrations.locked(opener):
                got.append("locked")

        thread = threading.Thread(target=take)
        thread.start()
        deadline = time.monotonic() + 60
        while len(busy_errors) < 3 and time.monotonic() < deadline:
            thread.join(0.01)
        assert len(busy_errors) >= 3, "the opener never met the held lock"
        assert got == [] and thread.is_alive()
        held.rollback()
    thread.join(60)
    assert got == ["locked"]
    assert all("locked" in e for e in busy_errors)


def test_an_sqlite_opener_gives_up_at_its_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(migrations, "SQLITE_LOCK_WAIT_S", 0.0)
    path = tmp_path / "c.db"
    holder = _short_busy_engine(path)
    with holder.connect() as held:
        held.exec_driver_sql("BEGIN EXCLUSIVE")
        with (
            pytest.raises(sa.exc.OperationalError, match="locked"),
            migrations.locked(_short_busy_engine(path)),
        ):
            pass
        held.rollback()
