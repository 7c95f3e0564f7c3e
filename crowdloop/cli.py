"""The `crowdloop` command line: demo, run, estimate, status, export, connectors."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from crowdloop.models.spec import SpecError

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
    console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(2)


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
    from crowdloop.demo.run import run_demo

    console.print(f"[bold]crowdloop demo[/] → {output.resolve()}")
    result = run_demo(output, quick=quick, faults=faults, seed=seed)
    report = result.flow_result["report"]
    prefs = result.flow_result.get("preferences", {})
    demo_part = result.flow_result.get("demonstrations", {})
    retrain = (prefs.get("retraining") or {}).get("result") or {}
    t = Table(title=f"campaign {result.campaign_id}", show_header=False)
    t.add_row(
        "items", ", ".join(f"{st}: {sum(v.values())}" for st, v in sorted(report["items"].items()))
    )
    t.add_row(
        "judgments",
        f"{report['judgments']['valid']} trusted, {report['judgments']['excluded']} excluded, "
        f"{report['judgments']['quarantined']} quarantined",
    )
    t.add_row("cost", f"{report['cost']['total']} {report['cost']['currency']}")
    c = result.catch
    t.add_row(
        "workers blocked",
        f"{len(report['blocked_workers'])} (simulator spammers caught: "
        f"{c.spammers_blocked}/{c.spammers}; honest blocked: {c.honest_blocked}/{c.honest})",
    )
    t.add_row(
        "preference accuracy vs hidden truth",
        f"{result.truth.accuracy:.3f} on {result.truth.pairs} pairs "
        f"(majority vote without golden filtering: {result.truth.baseline_accuracy:.3f})",
    )
    if retrain:
        acc = retrain.get("heldout_accuracy")
        t.add_row(
            "reward model (round 1)",
            f"held-out pairwise accuracy {acc:.3f} on {retrain['heldout_pairs']} pairs"
            if acc is not None
            else "trained (no held-out pairs)",
        )
    for label, ds in (
        ("SFT dataset", demo_part.get("sft", {})),
        ("preference dataset", prefs.get("preferences", {})),
    ):
        t.add_row(label, f"{ds.get('rows', 0)} rows: {ds.get('path', '-')}")
    t.add_row("report", str(result.output_dir / f"{result.campaign_id}-report.md"))
    console.print(t)


@app.command()
def run(campaign_file: Path) -> None:
    """Run a campaign file (YAML) end to end."""
    from crowdloop.models.spec import load_campaign

    try:
        load_campaign(campaign_file)  # fail fast, before Prefect starts
    except SpecError as exc:
        _fail(str(exc))
    from crowdloop.flows.campaign import run_campaign

    result = run_campaign(str(campaign_file))
    console.print_json(json.dumps(result["report"], default=str))


@app.command()
def estimate(
    campaign_file: Path,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON instead of Markdown.")
    ] = False,
) -> None:
    """Expected and worst-case cost of a campaign file, before anything is created."""
    from crowdloop.connectors.registry import UnknownConnector
    from crowdloop.models.spec import load_campaign
    from crowdloop.stages.estimate import estimate_spec

    try:
        result = estimate_spec(load_campaign(campaign_file))
    except (SpecError, UnknownConnector) as exc:
        _fail(str(exc))
        return
    # Plain output: the Markdown escapes text from the inputs, and must not pass through
    # rich's markup.
    typer.echo(json.dumps(result.to_json(), indent=2) if as_json else result.markdown())


@app.command()
def status(campaign: Annotated[str | None, typer.Argument()] = None) -> None:
    """Show campaigns, or one campaign's report."""
    from sqlmodel import select

    from crowdloop.db import redacted_url, session_scope
    from crowdloop.models.tables import Campaign
    from crowdloop.stages.report import campaign_report, report_markdown

    if campaign:
        try:
            console.print(report_markdown(campaign_report(campaign)))
        except LookupError as exc:
            _fail(str(exc))
        return
    with session_scope() as s:
        rows = list(s.exec(select(Campaign)).all())
    from crowdloop.stages.budget import budget_status

    t = Table(title=f"campaigns in {redacted_url()}")
    for col_name in ("campaign", "connector", "status", "spend / cap", "created"):
        t.add_column(col_name)
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
            c.created_at.isoformat(timespec="seconds"),
        )
    console.print(t)


@app.command()
def export(
    campaign: str,
    kind: Annotated[str, typer.Option(help="preferences or sft")] = "preferences",
    out: Annotated[Path | None, typer.Option(help="Output path (default: the campaign's)")] = None,
) -> None:
    """Re-aggregate and re-export a campaign's dataset from the stored judgments."""
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
    else:
        _fail(f"unknown export kind {kind!r}: use preferences or sft")
        return
    console.print(f"exported {n} row(s) to {path}")


@app.command()
def connectors() -> None:
    """List installed marketplace connectors and their capabilities."""
    from crowdloop.connectors.registry import discover

    t = Table(title="connectors (entry-point group crowdloop.connectors)")
    for col_name in ("name", "class", "capabilities"):
        t.add_column(col_name)
    for name, info in sorted(discover().items()):
        caps = (
            ", ".join(sorted(c.value for c in info.cls.capabilities))
            if info.cls
            else f"[red]failed to load: {info.error}[/]"
        )
        t.add_row(name, info.target, caps)
    console.print(t)


def main() -> None:  # pragma: no cover - console entry point
    try:
        app()
    except SpecError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()
