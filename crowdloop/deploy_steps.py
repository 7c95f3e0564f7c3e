"""Deployment steps for `deployments/prefect.yaml` (Prefect runs them during `prefect deploy`).

`capture_environment` is the build step that makes a deployment carry what its runs need,
taken from the shell that deploys, so nothing depends on the worker's environment:

- `root`: the repository root (the deploying shell's working directory, checked to hold
  the flows), which the `set_working_directory` pull step moves each run into, so the
  entrypoints and the campaign files' relative paths resolve on the worker;
- `env`: the named environment variables, for the deployments' `job_variables.env`.
  A required one that is unset fails the deploy (instead of runs that silently use
  `~/.crowdloop/crowdloop.db`); an optional one that is unset is left out, so it neither
  overrides the worker's own environment with an empty value nor appears in the UI.
  A relative SQLite path in `CROWDLOOP_DATABASE_URL` is made absolute against `root`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

DATABASE_URL = "CROWDLOOP_DATABASE_URL"
MARKER = Path("flows") / "campaign.py"


class DeployEnvironmentError(RuntimeError):
    """The deploying shell lacks something the deployments need."""


def _absolute_sqlite(url: str, root: Path) -> str:
    parsed = make_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return url
    path = Path(database).expanduser()
    if path.is_absolute():
        return url
    return parsed.set(database=str(root / path)).render_as_string(hide_password=False)


def capture_environment(
    required: list[str] | None = None,
    optional: list[str] | None = None,
    directory: str | None = None,
) -> dict[str, Any]:
    """The repository root and the environment the deployments' runs get (see module doc)."""
    root = Path(directory or os.getcwd()).expanduser().resolve()
    if not (root / MARKER).is_file():
        raise DeployEnvironmentError(
            f"{root} is not the crowdloop repository root (no {MARKER}); "
            "run `prefect deploy` from the root, as the README says"
        )
    missing = [name for name in required or [] if not os.environ.get(name)]
    if missing:
        raise DeployEnvironmentError(
            f"set {', '.join(missing)} in the shell that runs `prefect deploy`: the "
            "deployments pass it to every run (README, 'Run it as a service')"
        )
    env = {
        name: os.environ[name]
        for name in [*(required or []), *(optional or [])]
        if os.environ.get(name)
    }
    if DATABASE_URL in env:
        env[DATABASE_URL] = _absolute_sqlite(env[DATABASE_URL], root)
    return {"root": str(root), "env": env}
