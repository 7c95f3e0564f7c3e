"""The commands of the README's "Run it as a service" section, as the live test runs them.

Every line of the section's ```bash blocks is one of:
- `export NAME=value`: a setting the test provides (with its own ports and token);
- a long-running service (`prefect server start`, `crowdloop simulator serve`,
  `prefect worker start`), started by a fixture exactly as written;
- a one-shot command, run exactly as written, in order: the ones before the worker's line
  set the server up, the ones after it run and inspect the example campaign.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## Run it as a service"
SERVICES = {
    "server": "prefect server start",
    "simulator": "crowdloop simulator serve",
    "worker": "prefect worker start",
}


@dataclass
class ServiceCommands:
    exports: dict[str, str] = field(default_factory=dict)
    services: dict[str, list[str]] = field(default_factory=dict)
    setup: list[list[str]] = field(default_factory=list)  # one-shots before the worker
    after_worker: list[list[str]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


def section_text(readme: Path = ROOT / "README.md") -> str:
    text = readme.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return text[start : end if end != -1 else len(text)]


def service_commands(readme: Path = ROOT / "README.md") -> ServiceCommands:
    out = ServiceCommands()
    blocks = re.findall(r"```bash\n(.*?)```", section_text(readme), flags=re.S)
    for block in blocks:
        for raw in block.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            out.lines.append(line)
            if line.startswith("export "):
                name, _, value = line.removeprefix("export ").partition("=")
                out.exports[name] = value
                continue
            argv = shlex.split(line)
            service = next((k for k, v in SERVICES.items() if line.startswith(v)), None)
            if service is not None:
                out.services[service] = argv
            elif "worker" in out.services:
                out.after_worker.append(argv)
            else:
                out.setup.append(argv)
    return out
