"""The worked example of docs/connectors.md is real: its blocks, written out as a package
of their own, pass the shipped contract suite, and its connector is under 200 lines."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from crowdloop.connectors.testing import ConnectorContract

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "connectors.md"
BLOCK = re.compile(r"<!-- example: (?P<path>[\w/.]+) -->\n```python\n(?P<code>.*?)\n```", re.S)


def write_example(root: Path) -> dict[str, str]:
    blocks = {m["path"]: m["code"] + "\n" for m in BLOCK.finditer(GUIDE.read_text())}
    for rel, code in blocks.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(code)
    (root / "crowdloop_acme" / "__init__.py").touch()
    return blocks


def test_the_guide_shows_a_whole_connector_in_under_200_lines(tmp_path: Path) -> None:
    blocks = write_example(tmp_path)
    assert set(blocks) == {
        "crowdloop_acme/connector.py",
        "crowdloop_acme/credentials.py",
        "tests/test_acme_contract.py",
        "tests/conftest.py",
    }
    connector = blocks["crowdloop_acme/connector.py"] + blocks["crowdloop_acme/credentials.py"]
    lines = connector.count("\n")
    assert lines < 200
    assert f"The connector is {lines} lines in two files" in GUIDE.read_text()
    # Every verb of the contract is there, not elided.
    for verb in ("from_config", "create_batch", "find_batch", "add_items", "find_tasks"):
        assert f"def {verb}(" in connector
    for verb in ("start", "stop", "get_status", "iter_submissions", "check"):
        assert f"def {verb}(" in connector


def test_the_guide_example_passes_the_shipped_contract_suite(tmp_path: Path) -> None:
    write_example(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    # Outside this repository (no pytest config of ours), as another package would run it.
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    contract = sorted(name for name in dir(ConnectorContract) if name.startswith("test_"))
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    summary = run.stdout.strip().splitlines()[-1]
    assert re.match(rf"^{len(contract)} passed in ", summary), summary  # nothing skipped


def test_the_guide_example_reads_its_credentials_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_example(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    from crowdloop_acme.connector import AcmeConnector  # type: ignore[import-not-found]

    monkeypatch.delenv("ACME_TOKEN", raising=False)
    with pytest.raises(RuntimeError, match=r"acme credentials: .* ACME_TOKEN not set"):
        AcmeConnector.from_config({}, None)
    monkeypatch.setenv("ACME_TOKEN", "t-1")
    with AcmeConnector.from_config({"page_size": 7, "timeout_s": 4}, None) as made:
        assert made.page_size == 7
        assert made.seam.base_url == "https://api.acme.test"
        assert made.seam.timeout_s == 4
        assert made.seam.auth_headers == {"Authorization": "Bearer t-1"}
    with pytest.raises(ValueError, match="page_sise"):
        AcmeConnector.from_config({"page_sise": 7}, None)
