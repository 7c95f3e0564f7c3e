"""The `crowdloop` command line: demo, run, estimate, status, export, pause, resume,
cancel, connectors (list, check), simulator, db (current, upgrade, revision)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from crowdloop.demo.run import DemoResult
    from crowdloop.models.rating_spec import RatingSpec
    from crowdloop.stages.operate import OperatorResult

# The ephemeral Prefect API migrates its database on first start, which takes longer than
# Prefect's 20 s default on a small fresh machine.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

app = typer.Typer(
    help="Collect RLHF human-feedback data on crowdsourcing marketplaces, with Prefect.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()


def _fail(message: str) -> None:
    from rich.markup import escape

    console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(2)


@app.callback()
def _options(
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            metavar="PATH|URL",
            help="The campaign database: a SQLite file or a database URL. Default: "
            "CROWDLOOP_DATABASE_URL if set, else whichever of ~/.crowdloop/crowdloop.db and "
            "./crowdloop-demo/crowdloop.db (the demo's) holds the campaign.",
        ),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show Prefect's INFO logs.")
    ] = False,
) -> None:
    """Collect RLHF human-feedback data on crowdsourcing marketplaces, with Prefect."""
    from crowdloop.settings import database_url_for, use_database

    if db:
        use_database(database_url_for(db))
    if verbose:
        os.environ["PREFECT_LOGGING_LEVEL"] = "INFO"
    else:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def _find_campaign(campaign: str, *, required: bool = True) -> None:
    """No database chosen: read the known one that holds `campaign` (and fail, creating
    nothing, when `required` and none does)."""
    from crowdloop.settings import database_chosen, locate_campaign, use_database

    if database_chosen():
        return
    path = locate_campaign(campaign)
    if path is not None:
        use_database(f"sqlite:///{path}")
    elif required:
        _fail(_no_campaign(campaign))


@contextmanager
def _interruptible(line: str) -> Iterator[None]:
    """SIGINT/SIGTERM stop the block; one line says what was saved and how to go on."""
    from crowdloop import runtime

    said: list[bool] = []

    def say() -> None:
        if not said:
            said.append(True)
            console.print(f"[bold yellow]interrupted:[/] {line}", soft_wrap=True)

    with runtime.stop_on_signals(on_forced_exit=say):
        try:
            yield
        except KeyboardInterrupt:
            say()
            raise typer.Exit(130) from None
        except Exception:
            if runtime.received_signal() is None:
                raise
            say()  # whatever the interrupted code raised on its way out
            raise typer.Exit(130) from None


@app.command()
def demo(
    output: Annotated[
        Path, typer.Option(help="Folder for the datasets, report and database.")
    ] = Path("crowdloop-demo"),
    quick: Annotated[bool, typer.Option(help="A smaller round (for a first look).")] = False,
    faults: Annotated[
        bool, typer.Option(help="Let the simulator inject 429s, 5xx, timeouts and garbled answers.")
    ] = False,
    seed: int = 0,
) -> None:
    """Run a full RLHF data round on the built-in simulated marketplace."""
    from crowdloop.demo.run import DemoBusy, plan_demo, run_demo_plan
    from crowdloop.progress_view import watch_campaign
    from crowdloop.runtime import temporary_prefect_api
    from crowdloop.settings import DEMO_DATABASE, display_path

    console.print(f"[bold]crowdloop demo[/] → {output.resolve()}", soft_wrap=True)
    try:
        plan = plan_demo(output, quick=quick, faults=faults, seed=seed)
    except DemoBusy as exc:
        _fail(str(exc))
    console.print(plan.announcement(), soft_wrap=True)
    db = "" if plan.database == DEMO_DATABASE.resolve() else f" --db {display_path(plan.database)}"
    again = "crowdloop demo" + (f" --output {display_path(output)}" if db else "")
    with (
        _interruptible(
            f"round {plan.name} stopped; what it collected is saved in "
            f"{display_path(plan.database)} (crowdloop{db} status {plan.name}). "
            f"Run `{again}` again for a new round."
        ),
        temporary_prefect_api(),
        watch_campaign(plan.name, console),
    ):
        result = run_demo_plan(plan, faults=faults, seed=seed)
    _demo_summary(result)
    console.print("\nnext:", soft_wrap=True)
    for cmd in (f"status {plan.name}", f"export {plan.name}", "status"):
        console.print(f"  crowdloop{db} {cmd}", soft_wrap=True, highlight=False)


def _demo_summary(result: DemoResult) -> None:
    from crowdloop.settings import display_path

    report = result.flow_result["report"]
    prefs = result.flow_result.get("preferences", {})
    demo_part = result.flow_result.get("demonstrations", {})
    retrain = (prefs.get("retraining") or {}).get("result") or {}
    rows: list[tuple[str, str]] = []

    def count(states: dict[str, int]) -> str:
        golden = sum(n for k, n in states.items() if k.startswith("golden_"))
        real = sum(states.values()) - golden
        return f"{real} + {golden} golden" if golden else str(real)

    rows.append(
        (
            "items",
            ", ".join(f"{st}: {count(v)}" for st, v in sorted(report["items"].items())),
        )
    )
    rows.append(
        (
            "judgments",
            f"{report['judgments']['valid']} trusted, {report['judgments']['excluded']} "
            f"excluded, {report['judgments']['quarantined']} quarantined",
        )
    )
    rows.append(("cost", f"{report['cost']['total']} {report['cost']['currency']}"))
    c = result.catch
    rows.append(
        (
            "workers blocked",
            f"{len(report['blocked_workers'])} (simulator spammers caught: "
            f"{c.spammers_blocked}/{c.spammers}; honest blocked: {c.honest_blocked}/{c.honest})",
        )
    )
    rows.append(
        (
            "preference accuracy",
            f"{result.truth.accuracy:.3f} against the simulator's hidden truth on the "
            f"{result.truth.pairs} real pairs it has a clear answer for (majority vote without "
            f"golden filtering: {result.truth.baseline_accuracy:.3f})",
        )
    )
    ds = prefs.get("preferences", {})
    rows.append(
        (
            "preference dataset",
            f"{ds.get('rows', 0)} rows (pairs whose verdict reached min_confidence; votes are "
            f"weighted by each worker's reliability, so they can be fractional): "
            f"{ds.get('path', '-')}",
        )
    )
    if retrain:
        acc = retrain.get("heldout_accuracy")
        rows.append(
            (
                "reward model (round 1)",
                f"held-out pairwise accuracy {acc:.3f} on {retrain['heldout_pairs']} of the "
                f"exported pairs (trained on the rest)"
                if acc is not None
                else "trained (no held-out pairs)",
            )
        )
    sft = demo_part.get("sft", {})
    rows.append(("SFT dataset", f"{sft.get('rows', 0)} rows: {sft.get('path', '-')}"))
    rows.append(("report", display_path(result.output_dir / f"{result.campaign_id}-report.md")))
    console.print(f"\n[bold]campaign {result.campaign_id}[/]", soft_wrap=True)
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        # One line per row, never cut: paths must stay copyable.
        console.print(f"  {key:<{width}}  {value}", soft_wrap=True, highlight=False)


@app.command()
def run(
    campaign_file: Path,
    update: Annotated[
        bool,
        typer.Option(
            help="Apply changed run settings (polling, timeouts, connector options, "
            "retraining, budget) to the existing campaign."
        ),
    ] = False,
    wait: Annotated[
        float,
        typer.Option(help="Seconds to wait for another run driving this campaign (0: exit)."),
    ] = 0.0,
) -> None:
    """Run a campaign file (YAML) end to end; rerun it to resume."""
    from crowdloop.models.spec import SpecError
    from crowdloop.stages.plan import check_campaign

    try:
        spec = check_campaign(campaign_file)  # every input, before Prefect starts
    except SpecError as exc:
        _fail(str(exc))
    _find_campaign(spec.name, required=False)
    from crowdloop.stages import lease

    holder = lease.current(spec.name)
    if holder is not None and wait <= 0:
        _fail(
            f"campaign {spec.name!r} is being driven by {holder.description or holder.holder}; "
            f"wait for it (--wait SECONDS) or cancel it (crowdloop cancel {spec.name})"
        )
    from prefect.exceptions import CancelledRun

    from crowdloop.db import redacted_url
    from crowdloop.flows.campaign import run_campaign
    from crowdloop.runtime import temporary_prefect_api
    from crowdloop.stages.lease import CampaignBusy
    from crowdloop.stages.plan import CampaignConflict

    try:
        with (
            _interruptible(
                f"campaign {spec.name} stopped; everything collected so far is saved in "
                f"{redacted_url()} and its published work stays on the marketplace. "
                f"Rerun `crowdloop run {campaign_file}` to continue."
            ),
            temporary_prefect_api(),
        ):
            result = run_campaign(str(campaign_file), update=update, lease_wait_s=wait)
    except (CampaignBusy, CampaignConflict) as exc:
        _fail(str(exc))
    except CancelledRun:
        result = None
    if not isinstance(result, dict) or "report" not in result:
        console.print(f"campaign {spec.name}: {_status_line(spec.name)}", soft_wrap=True)
        raise typer.Exit(1)
    console.print_json(json.dumps(result["report"], default=str))


def _status_line(campaign_id: str) -> str:
    from crowdloop.stages.progress import live_progress

    p = live_progress(campaign_id)
    return p.status + (f" ({p.reason})" if p.reason else "")


def _operate(action: str, campaign: str, reason: str | None) -> None:
    _find_campaign(campaign)
    from crowdloop.stages import lifecycle, operate

    actor = lifecycle.actor_cli()
    try:
        if action == "reject":
            result = operate.reject(campaign, actor=actor, note=reason)
        else:
            fn = {"pause": operate.pause, "resume": operate.resume, "cancel": operate.cancel}
            result = fn[action](campaign, actor=actor, **({"reason": reason} if reason else {}))
    except lifecycle.UnknownCampaign:
        _fail(_no_campaign(campaign))
    except lifecycle.IllegalTransition as exc:
        _fail(str(exc))
    _report_operation(campaign, action, result)


def _report_operation(campaign: str, action: str, result: OperatorResult) -> None:
    console.print(result.summary(), soft_wrap=True)
    for w in result.warnings:
        console.print(f"[yellow]warning:[/] {w}", soft_wrap=True)
    from crowdloop.flows.ops import follow_up

    for line in follow_up(campaign, action):
        console.print(line)


def _no_campaign(campaign: str) -> str:
    from crowdloop.db import redacted_url
    from crowdloop.settings import database_chosen, display_path, known_databases

    if database_chosen():
        return (
            f"no campaign named {campaign!r} in {redacted_url()} (the database --db or "
            "CROWDLOOP_DATABASE_URL chose); pick the one it ran on with --db PATH|URL"
        )
    looked = [display_path(p) for p in known_databases()] or [
        "~/.crowdloop/crowdloop.db and ./crowdloop-demo/crowdloop.db (neither exists)"
    ]
    return (
        f"no campaign named {campaign!r} in {', '.join(looked)}; pick the database it ran on "
        "with --db PATH|URL (crowdloop --db crowdloop-demo/crowdloop.db status lists one)"
    )


Reason = Annotated[str | None, typer.Option(help="Why; kept in the campaign's log.")]


@app.command()
def pause(campaign: str, reason: Reason = None) -> None:
    """Pause a campaign: nothing more is published, marketplace batches stop handing out work."""
    _operate("pause", campaign, reason)


@app.command()
def resume(campaign: str, reason: Reason = None) -> None:
    """Resume a paused campaign (or restart a cancelled one): batches reopen."""
    _operate("resume", campaign, reason)


@app.command()
def approve(
    campaign: str,
    cap: Annotated[
        str | None, typer.Option(help="Raise the hard cap to this amount first.")
    ] = None,
    note: Reason = None,
) -> None:
    """Approve a campaign's spending (the estimate, or the next stretch up to the cap)."""
    from decimal import Decimal, InvalidOperation

    _find_campaign(campaign)
    from crowdloop.stages import lifecycle, operate

    try:
        new_cap = Decimal(cap) if cap is not None else None
    except InvalidOperation:
        _fail(f"--cap {cap!r} is not an amount")
    try:
        result = operate.approve(campaign, actor=lifecycle.actor_cli(), new_cap=new_cap, note=note)
    except lifecycle.UnknownCampaign:
        _fail(_no_campaign(campaign))
    except (lifecycle.IllegalTransition, ValueError) as exc:
        _fail(str(exc))
    _report_operation(campaign, "approve", result)


@app.command()
def reject(campaign: str, note: Reason = None) -> None:
    """Refuse a campaign's spending request: it is cancelled and its batches stopped."""
    _operate("reject", campaign, note)


@app.command()
def cancel(campaign: str, reason: Reason = None) -> None:
    """Cancel a campaign: every marketplace batch is stopped; `crowdloop run` restarts it."""
    _operate("cancel", campaign, reason)


@app.command()
def estimate(
    campaign_file: Path,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON instead of Markdown.")
    ] = False,
) -> None:
    """Expected and worst-case cost of a campaign file, before anything is created."""
    from crowdloop.connectors.registry import UnknownConnector
    from crowdloop.models.spec import SpecError
    from crowdloop.stages.estimate import estimate_spec
    from crowdloop.stages.plan import check_campaign

    try:
        result = estimate_spec(check_campaign(campaign_file))
    except (SpecError, UnknownConnector) as exc:
        _fail(str(exc))
        return
    # Plain output: the Markdown escapes text from the inputs, and must not pass through
    # rich's markup.
    typer.echo(json.dumps(result.to_json(), indent=2) if as_json else result.markdown())


@app.command()
def status(campaign: Annotated[str | None, typer.Argument()] = None) -> None:
    """List campaigns, or show one campaign's report (its live progress while it runs)."""
    if campaign:
        _campaign_status(campaign)
        return
    from crowdloop.db import redacted_url
    from crowdloop.settings import database_chosen, display_path, known_databases, use_database

    if database_chosen():
        _list_campaigns(redacted_url())
        return
    found = known_databases()
    if not found:
        console.print(
            "no campaigns yet: neither ~/.crowdloop/crowdloop.db nor ./crowdloop-demo/"
            "crowdloop.db exists (run `crowdloop demo`, or pick a database with --db PATH|URL)",
            soft_wrap=True,
        )
        return
    for path in found:
        use_database(f"sqlite:///{path}")
        _list_campaigns(display_path(path))


def _list_campaigns(where: str) -> None:
    from sqlmodel import select

    from crowdloop.db import session_scope
    from crowdloop.models.tables import Campaign
    from crowdloop.stages.budget import budget_status

    with session_scope() as s:
        rows = list(s.exec(select(Campaign)).all())
    t = Table(title=f"campaigns in {where}", title_justify="left")
    for col_name in ("campaign", "connector", "status", "spend / cap", "created"):
        t.add_column(col_name, overflow="fold")
    for c in rows:
        money = budget_status(c.id, refresh=False)
        spend = f"{money.committed:.2f}" + (
            f" / {money.cap:.2f} {money.currency} ({money.share_used:.0%})"
            if money.cap is not None and money.share_used is not None
            else f" {money.currency} (no cap)"
        )
        t.add_row(
            c.id,
            c.connector,
            c.status.value,
            spend,
            c.created_at.strftime("%Y-%m-%d %H:%M"),  # UTC; fits an 80-column table
        )
    console.print(t)


def _campaign_status(campaign: str) -> None:
    from rich.markdown import Markdown

    _find_campaign(campaign)
    from crowdloop.stages.lifecycle import events
    from crowdloop.stages.progress import live_progress, progress_markdown

    try:
        progress = live_progress(campaign)
    except LookupError:
        _fail(_no_campaign(campaign))
    if progress.status == "complete":
        from crowdloop.stages.report import campaign_report, report_markdown

        # Rendered, not printed raw: tables stay tables at any terminal width.
        console.print(Markdown(report_markdown(campaign_report(campaign))))
        return
    console.print(Markdown(progress_markdown(progress)))
    log = Table(title="lifecycle", show_header=True)
    for col_name in ("when (UTC)", "change", "by", "why"):
        log.add_column(col_name, overflow="fold")
    for e in events(campaign, limit=8):
        log.add_row(
            e.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            f"{e.old_status} → {e.new_status}",
            e.actor,
            e.reason,
        )
    console.print(log)


@app.command()
def export(
    campaign: str,
    kind: Annotated[
        str, typer.Option(help="preferences, sft, rankings or ratings")
    ] = "preferences",
    out: Annotated[Path | None, typer.Option(help="Output path (default: the campaign's)")] = None,
) -> None:
    """Re-aggregate and re-export a campaign's dataset from the stored judgments."""
    _find_campaign(campaign)
    from crowdloop.db import session_scope
    from crowdloop.stages import export as ex
    from crowdloop.stages.plan import load_spec
    from crowdloop.stages.preferences import aggregate_preferences

    try:
        with session_scope() as s:
            spec = load_spec(s, campaign)
    except LookupError as exc:
        _fail(str(exc))
    if kind == "preferences":
        if spec.preferences is None:
            _fail(f"campaign {campaign!r} has no preferences stage")
        assert spec.preferences is not None
        aggregate_preferences(campaign, spec.preferences.aggregation)
        n, path = ex.export_preferences(
            campaign, out or spec.preferences.export.path, spec.preferences.min_confidence
        )
    elif kind == "sft":
        if spec.demonstrations is None:
            _fail(f"campaign {campaign!r} has no demonstrations stage")
        assert spec.demonstrations is not None
        n, path = ex.export_sft(campaign, out or spec.demonstrations.export.path)
    elif kind == "rankings":
        if spec.ranking is None or out is not None:
            _fail(
                f"campaign {campaign!r} has no ranking stage"
                if spec.ranking is None
                else "rankings go to the campaign's two paths (ranking.export); drop --out"
            )
        assert spec.ranking is not None
        from crowdloop.stages import ranking

        ranking.aggregate_rankings(campaign, spec.ranking)
        for rows, written in ranking.export_rankings(campaign, spec.ranking).values():
            console.print(f"exported {rows} row(s) to {written}")
        return
    elif kind == "ratings":
        if spec.rating is None:
            _fail(f"campaign {campaign!r} has no rating stage")
        assert spec.rating is not None
        from crowdloop.stages import rating

        rating.aggregate_ratings(campaign, spec.rating)
        target = spec.rating if out is None else _rating_to(spec.rating, out)
        n, path = rating.export_ratings(campaign, target)
    else:
        _fail(f"unknown export kind {kind!r}: use preferences, sft, rankings or ratings")
        return
    console.print(f"exported {n} row(s) to {path}")


def _rating_to(spec: RatingSpec, out: Path) -> RatingSpec:
    """The rating section with its export going to `out` (crowdloop export --out)."""
    from crowdloop.models.rating_spec import RatingExportSpec

    return spec.model_copy(update={"export": RatingExportSpec(path=out)})


db_app = typer.Typer(
    help="The campaign database's schema (migrations run by themselves when a command opens "
    "a database; these show and do it explicitly).",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(db_app, name="db")


def _databases() -> list[str]:
    """The database URLs a `db` command acts on: the chosen one, else the known ones."""
    from crowdloop.settings import database_chosen, get_settings, known_databases

    if database_chosen():
        return [get_settings().database_url]
    found = [f"sqlite:///{p}" for p in known_databases()]
    if not found:
        _fail(
            "no database: neither ~/.crowdloop/crowdloop.db nor ./crowdloop-demo/crowdloop.db "
            "exists (pick one with --db PATH|URL)"
        )
    return found


@db_app.command("current")
def db_current() -> None:
    """Show the schema revision of the database (changes nothing)."""
    from sqlalchemy.engine import make_url

    from crowdloop.db import redacted_url, unmigrated_engine
    from crowdloop.migrations import HEAD, SchemaError, current_revision, known_revisions

    for url in _databases():
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").is_file():
            console.print(f"{redacted_url(url)}: no database there yet", soft_wrap=True)
            continue
        engine = unmigrated_engine(url)
        try:
            rev = current_revision(engine)
        except Exception as exc:  # unreachable server, bad credentials, not a database
            raise SchemaError(f"database {redacted_url(url)}: {exc}".splitlines()[0]) from None
        finally:
            engine.dispose()
        if rev == HEAD:
            state = f"revision {rev} (head: up to date)"
        elif rev is None:
            state = (
                "no revision recorded (empty, or made before migrations existed); "
                "`crowdloop db upgrade` or any command that opens it migrates it"
            )
        elif rev in known_revisions():
            state = f"revision {rev}; this crowdloop's head is {HEAD} (`crowdloop db upgrade`)"
        else:
            state = (
                f"revision {rev}, unknown to this crowdloop (its head is {HEAD}): migrated by "
                "a newer crowdloop"
            )
        console.print(f"{redacted_url(url)}: {state}", soft_wrap=True)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Bring the database to this crowdloop's schema, as opening it does, and say what it did."""
    from crowdloop.db import redacted_url, unmigrated_engine
    from crowdloop.migrations import HEAD, current_revision, ensure_schema

    for url in _databases():
        engine = unmigrated_engine(url)
        try:
            before = current_revision(engine)
            done = ensure_schema(engine)
        finally:
            engine.dispose()
        said = {
            "current": f"already at revision {HEAD}",
            "created": f"created at revision {HEAD}",
            "adopted": f"tables made before migrations adopted, now at revision {HEAD}",
            "upgraded": f"upgraded from revision {before} to {HEAD}",
        }[done]
        console.print(f"{redacted_url(url)}: {said}", soft_wrap=True)


@db_app.command("revision")
def db_revision(
    message: Annotated[str, typer.Argument(help="What the schema change does.")],
) -> None:
    """For contributors: write the next revision from the models' difference to the migrations.

    Compares models/tables.py with crowdloop/migrations/versions on a scratch database.
    """
    import tempfile

    from crowdloop.migrations import new_revision

    with tempfile.TemporaryDirectory() as tmp:
        path = new_revision(message, Path(tmp))
    console.print(
        f"wrote {path}: read and adjust it, then set HEAD in crowdloop/migrations/__init__.py "
        "to its revision and run tests/test_migrations.py",
        soft_wrap=True,
    )


connectors_app = typer.Typer(
    help="Installed marketplace connectors; `check NAME` tries one out read-only.",
    add_completion=False,
)
app.add_typer(connectors_app, name="connectors")


@connectors_app.callback(invoke_without_command=True)
def connectors(ctx: typer.Context) -> None:
    """List installed marketplace connectors and their capabilities."""
    if ctx.invoked_subcommand is not None:
        return
    from crowdloop.connectors.registry import discover

    t = Table(title="connectors (entry-point group crowdloop.connectors)")
    for col_name in ("name", "class", "capabilities"):
        t.add_column(col_name, overflow="fold")
    for name, info in sorted(discover().items()):
        caps = (
            ", ".join(sorted(c.value for c in info.cls.capabilities))
            if info.cls
            else f"[red]failed to load: {info.error}[/]"
        )
        t.add_row(name, info.target, caps)
    console.print(t)


def _check_options(raw: str | None) -> tuple[dict[str, object], str | None]:
    """`--options`: a YAML/JSON mapping, or a file holding one; a campaign file works too
    (its `connector:` section gives the options and the credentials block)."""
    import yaml

    if not raw:
        return {}, None
    path = Path(raw)
    text = path.read_text(encoding="utf-8") if path.is_file() else raw
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        _fail(f"--options is not YAML/JSON: {exc}")
    if loaded is None:
        return {}, None
    if not isinstance(loaded, dict):
        _fail("--options must be a mapping of connector options")
    section = loaded.get("connector")
    if isinstance(section, dict):  # a campaign file
        options = section.get("options") or {}
        block = section.get("credentials_block")
        return dict(options), str(block) if block else None
    return dict(loaded), None


@connectors_app.command("check")
def connectors_check(
    name: Annotated[str, typer.Argument(help="A connector `crowdloop connectors` lists.")],
    options: Annotated[
        str | None,
        typer.Option(help="Connector options: YAML/JSON, or a file (a campaign file works)."),
    ] = None,
    credentials_block: Annotated[
        str | None, typer.Option(help="Prefect credentials block (default: environment).")
    ] = None,
) -> None:
    """First contact: prove credentials, access and balance with read-only calls.

    Creates nothing on the marketplace. Exits 1 if any check failed.
    """
    from rich.markup import escape

    from crowdloop.connectors.errors import ConnectorError
    from crowdloop.connectors.registry import UnknownConnector, build_connector

    opts, block = _check_options(options)
    try:
        connector = build_connector(name, opts, credentials_block or block)
    except (UnknownConnector, ConnectorError, ValueError, RuntimeError) as exc:
        _fail(f"{name}: {exc}")
    with connector:
        report = connector.check()
    t = Table(title=f"{name}: first-contact check (read-only)")
    for col_name in ("check", "result", "detail"):
        t.add_column(col_name)
    marks = {True: "[green]ok[/]", False: "[bold red]FAILED[/]", None: "[yellow]not checked[/]"}
    for item in report.items:
        t.add_row(escape(item.name), marks[item.ok], escape(item.detail))
    console.print(t)
    if not report.ok:
        for item in report.failed:  # in full, unwrapped: the message is the diagnosis
            console.print(
                f"[bold red]FAILED[/] {escape(item.name)}: {escape(item.detail)}", soft_wrap=True
            )
        console.print(f"[bold red]{name}: {len(report.failed)} check(s) failed[/]")
        raise typer.Exit(1)


simulator_app = typer.Typer(
    help="The built-in simulated marketplace as a service.", no_args_is_help=True
)
app.add_typer(simulator_app, name="simulator")


@simulator_app.command("serve")
def simulator_serve(
    port: Annotated[
        int,
        typer.Option(envvar="CROWDLOOP_SIMULATOR_PORT", help="Port on 127.0.0.1 (0: any free)."),
    ] = 8765,
    state: Annotated[
        Path, typer.Option(help="State file: restored on start, saved on every write.")
    ] = Path("~/.crowdloop/simulator-state.json"),
    seed: Annotated[
        int | None, typer.Option(help="Crowd seed of a new marketplace (default 0).")
    ] = None,
    token: Annotated[
        str | None, typer.Option(help="Bearer token (default: the state file's, or a new one).")
    ] = None,
    time_scale: Annotated[
        float | None,
        typer.Option(
            min=0,
            help="Simulated seconds per real second of a new marketplace (default 3600); 0 "
            "stops its clock: workers answer only when POST /sim/clock/advance moves it.",
        ),
    ] = None,
    id_prefix: Annotated[
        str | None,
        typer.Option(
            help="Prefix of a new marketplace's pool, task and submission ids, so two "
            "simulators writing to one crowdloop database never share an id."
        ),
    ] = None,
) -> None:
    """Run the simulated marketplace on 127.0.0.1 until SIGINT/SIGTERM; print its URL and token."""
    from crowdloop.simulator.persistence import StateFileError
    from crowdloop.simulator.serve import serve

    def announce(line: str) -> None:
        print(line, flush=True)

    try:
        serve(
            port=port,
            state_path=state,
            seed=seed,
            token=token,
            time_scale=time_scale,
            id_prefix=id_prefix,
            announce=announce,
        )
    except StateFileError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot listen on 127.0.0.1:{port}: {exc}")


def main() -> None:  # pragma: no cover - console entry point
    from crowdloop import runtime
    from crowdloop.migrations import SchemaError
    from crowdloop.models.spec import SpecError

    try:
        # From the start, so a signal before `run`/`demo` take over stops the command too.
        with runtime.stop_on_signals():
            app()
    except (SpecError, SchemaError) as exc:
        console.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        # Seen once under load after SIGTERM: the command had printed its "interrupted:"
        # line, then a KeyboardInterrupt reached this level (exit status -2, not 130). A
        # signal ends every command with 130 and no traceback, however late it surfaces.
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
