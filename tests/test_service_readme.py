"""The README's "Run it as a service" commands are the ones the live test runs (fast check;
tests/live/test_live_service.py runs them)."""

from __future__ import annotations

from tests.live.readme import service_commands

# What the live test provides for each `export` line of the section.
PROVIDED = {
    "PREFECT_API_URL",
    "CROWDLOOP_DATABASE_URL",
    "CROWDLOOP_SIMULATOR_URL",
    "CROWDLOOP_SIMULATOR_TOKEN",
}


def test_section_parses_into_what_the_live_test_runs() -> None:
    cmds = service_commands()
    assert set(cmds.services) == {"server", "simulator", "worker"}
    assert set(cmds.exports) == PROVIDED
    setup = [" ".join(argv) for argv in cmds.setup]
    assert "prefect work-pool create crowdloop --type process" in setup
    assert "prefect block register -m crowdloop.blocks" in setup
    assert setup[-1] == "prefect --no-prompt deploy --all --prefect-file deployments/prefect.yaml"
    after = [" ".join(argv) for argv in cmds.after_worker]
    assert after[0] == "prefect deployment run run-campaign/campaign --watch"


def test_block_module_exposes_every_credentials_block() -> None:
    import inspect

    from prefect.blocks.abstract import CredentialsBlock

    import crowdloop.blocks
    from crowdloop.connectors.registry import discover

    found = {
        cls.__module__.split(".")[2]
        for _, cls in inspect.getmembers(crowdloop.blocks, inspect.isclass)
        if issubclass(cls, CredentialsBlock) and cls is not CredentialsBlock
    }
    # Every connector with credentials (replay plays back a file and needs none).
    assert found == set(discover()) - {"replay"}
