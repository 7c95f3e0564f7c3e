"""A live crowdloop service, once per test session, set up by the README's commands.

From a fresh copy of the repository (its tracked and new files, as a clone would have
them) the fixtures run "Run it as a service" (see `readme.py`): `prefect server start` on a
free loopback port with its own PREFECT_HOME (SQLite) and HOME, `crowdloop simulator serve`,
the `export` settings (the test's ports and token), the work pool, block types and
`prefect deploy`, then `prefect worker start` in another folder and with no CROWDLOOP_*
variables, so the runs get their working directory and settings from the deployment alone.

Every service runs in its own process group, logs to build/live/<name>.log, and is stopped
at the end of the session (SIGINT, then SIGKILL of the group after a deadline), also when
a test or a fixture fails. Waits poll with deadlines.

Scenarios are test functions taking `live` (a `LiveStack`: server URL, simulator, checkout,
`run_deployment_and_wait`, `flow_run_state`, `flow_run_logs`, `cli`) and, when they need
the example campaign to have run once, `example_run`. Without the prerequisites the tests
skip with the reason; under CI (`CI` set) they fail instead.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest

from tests.live.readme import ROOT, ServiceCommands, service_commands

BIN = Path(sys.executable).parent
LOGS = ROOT / "build" / "live"
SERVER_START_S = 300.0
STOP_GRACE_S = 20.0


def require(ok: bool, reason: str) -> None:
    """Skip without a prerequisite; under CI, fail: CI must not skip the live tests."""
    if ok:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must provide it)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    what: str, check: Callable[[], Any], timeout: float, alive: list[Service] | None = None
) -> Any:
    """Poll `check` until it returns something truthy; fail with the services' logs."""
    deadline = time.monotonic() + timeout
    while True:
        for service in alive or []:
            if service.proc.poll() is not None:
                code = service.proc.returncode
                pytest.fail(f"{service.name} exited ({code}) waiting for {what}:\n{service.tail()}")
        try:
            result = check()
        except (httpx.HTTPError, OSError):
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            logs = "\n".join(s.tail() for s in alive or [])
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{logs}")
        time.sleep(0.25)


@dataclass
class Service:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- {self.name} ({self.log}) ---\n" + "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGINT)
            with suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=STOP_GRACE_S)
        # Whatever is left of the group (a run the worker started, a server's children).
        with suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def start(name: str, argv: list[str], env: dict[str, str], cwd: Path) -> Service:
    LOGS.mkdir(parents=True, exist_ok=True)
    log = LOGS / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Service(name, proc, log)


def run(argv: list[str], env: dict[str, str], cwd: Path, timeout: float = 300) -> str:
    """A one-shot command; fails the test with its output unless it exits 0."""
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    out = done.stdout + done.stderr
    if done.returncode != 0:
        pytest.fail(f"`{' '.join(argv)}` exited {done.returncode}:\n{out[-6000:]}")
    return out


# --- the stack ---------------------------------------------------------------------------------


@dataclass
class Simulator:
    url: str
    token: str
    service: Service

    def _client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=10
        )

    def stats(self) -> dict[str, Any]:
        with self._client() as c:
            return dict(c.get("/sim/stats").json())

    def advance(self, seconds: float = 900) -> None:
        """Move the marketplace's clock (one started with `--time-scale 0` stands still)."""
        with self._client() as c:
            c.post("/sim/clock/advance", json={"seconds": seconds}).raise_for_status()

    def pools(self, campaign: str, stage: str = "compare") -> list[dict[str, Any]]:
        key = f"crowdloop:{campaign}:{stage}:batch"
        with self._client() as c:
            return list(c.get("/api/v1/pools", params={"idempotency_key": key}).json()["items"])

    def pool(self, pool_id: str) -> dict[str, Any]:
        with self._client() as c:
            answer = c.get(f"/api/v1/pools/{pool_id}")
            answer.raise_for_status()
            return dict(answer.json())


def announced_simulator(service: Service) -> Simulator:
    """A started `crowdloop simulator serve`, once it has printed its URL and token."""

    def announced() -> dict[str, str] | None:
        lines = service.log.read_text().splitlines()
        found = dict(ln.split("=", 1) for ln in lines if ln.startswith("CROWDLOOP_SIMULATOR_"))
        return found if len(found) == 2 else None

    printed = wait_for(f"{service.name}'s URL and token", announced, 60, [service])
    return Simulator(
        printed["CROWDLOOP_SIMULATOR_URL"], printed["CROWDLOOP_SIMULATOR_TOKEN"], service
    )


def wait_for_server(api_url: str, server: Service) -> None:
    """Until a started `prefect server start` answers its health check."""
    wait_for(
        f"the Prefect server on {api_url}",
        lambda: httpx.get(f"{api_url}/health", timeout=5).status_code == 200,
        SERVER_START_S,
        [server],
    )


@dataclass
class LiveStack:
    root: Path  # the fresh copy of the repository, the checkout the deployments run in
    home: Path  # HOME of every process started (no ~/.crowdloop fallback can hide here)
    url: str  # the Prefect server, UI included
    api_url: str
    simulator: Simulator
    env: dict[str, str]  # the deploying shell's environment (README exports applied)
    commands: ServiceCommands
    services: list[Service] = field(default_factory=list)

    def client(self) -> Any:
        from prefect.client.orchestration import SyncPrefectClient

        return SyncPrefectClient(self.api_url)

    def cli(self, argv: list[str], timeout: float = 300) -> str:
        return run(argv, self.env, self.root, timeout)

    def flow_run_state(self, flow_run_id: UUID) -> Any:
        with self.client() as c:
            return c.read_flow_run(flow_run_id).state

    def flow_run_logs(self, flow_run_id: UUID, limit: int = 200) -> str:
        from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

        with self.client() as c:
            logs = c.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])),
                limit=limit,
            )
        return "\n".join(f"{log.level} {log.name}: {log.message}" for log in logs)

    def wait_for_final(self, flow_run_id: UUID, timeout: float) -> Any:
        """The flow run once its state is final; fails with its logs on timeout."""
        state = wait_for(
            f"flow run {flow_run_id} to finish",
            lambda: (s := self.flow_run_state(flow_run_id)) is not None and s.is_final() and s,
            timeout,
            self.services,
        )
        with self.client() as c:
            run_ = c.read_flow_run(flow_run_id)
        assert run_.state is not None and run_.state.type == state.type
        return run_

    def run_deployment_and_wait(
        self, name: str, params: dict[str, Any] | None = None, timeout: float = 600
    ) -> Any:
        """Create a run of deployment `flow/deployment` through the API; wait for it to end."""
        with self.client() as c:
            deployment = c.read_deployment_by_name(name)
            flow_run = c.create_flow_run_from_deployment(deployment.id, parameters=params or {})
        return self.wait_for_final(flow_run.id, timeout)

    def deployment(self, name: str) -> Any:
        with self.client() as c:
            return c.read_deployment_by_name(name)

    def flow_runs_of(self, name: str) -> list[Any]:
        from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

        deployment = self.deployment(name)
        with self.client() as c:
            return list(
                c.read_flow_runs(
                    deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
                )
            )

    def artifacts(self) -> dict[str, UUID]:
        """The latest artifact id of every artifact key."""
        with self.client() as c:
            return {a.key: a.latest_id for a in c.read_latest_artifacts()}

    def logs(self) -> str:
        return "\n".join(s.tail() for s in self.services)


def fresh_copy(dest: Path) -> Path:
    """The repository's tracked and new (not ignored) files, as a clone would have them."""
    dest.mkdir(parents=True)
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-co", "--exclude-standard", "-z"],
        capture_output=True,
        check=False,
    )
    if shutil.which("git") and listed.returncode == 0:
        for rel in filter(None, listed.stdout.decode().split("\0")):
            src = ROOT / rel
            if src.is_file():
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / rel)
        return dest
    ignore = shutil.ignore_patterns(
        ".git", ".venv", "build", "crowdloop-output", "crowdloop-demo", "__pycache__", "*.db"
    )
    shutil.copytree(ROOT, dest, ignore=ignore, dirs_exist_ok=True)
    return dest


def base_env(home: Path) -> dict[str, str]:
    """The machine's environment minus any Prefect or crowdloop setting, with our HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CROWDLOOP_"))}
    env.update(
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    for tool in ("prefect", "crowdloop"):
        require((BIN / tool).exists(), f"{BIN / tool} is missing (pip install -e '.[test]')")
    commands = service_commands()
    base = tmp_path_factory.mktemp("live")
    root = fresh_copy(base / "checkout")
    home = base / "home"
    home.mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    api_url = f"{url}/api"
    common = base_env(home)
    common["PREFECT_HOME"] = str(base / "prefect-home")  # the server's SQLite lives here
    services: list[Service] = []
    try:
        # 1. The server: the README's command, its port through Prefect's own setting.
        server_env = {**common, "PREFECT_SERVER_API_PORT": str(port)}
        server = start("prefect-server", commands.services["server"], server_env, root)
        services.append(server)
        wait_for_server(api_url, server)
        # 2. The simulator: its port through CROWDLOOP_SIMULATOR_PORT; URL/token as printed.
        sim_env = {**common, "CROWDLOOP_SIMULATOR_PORT": str(free_port())}
        sim_service = start("simulator", commands.services["simulator"], sim_env, root)
        services.append(sim_service)
        simulator = announced_simulator(sim_service)
        # 3. The deploying shell: the README's exports, with this session's ports and token.
        provided = {
            "PREFECT_API_URL": api_url,
            "CROWDLOOP_SIMULATOR_URL": simulator.url,
            "CROWDLOOP_SIMULATOR_TOKEN": simulator.token,
        }
        env = {**common, **{k: provided.get(k, v) for k, v in commands.exports.items()}}
        stack = LiveStack(root, home, url, api_url, simulator, env, commands, services)
        # 4. Work pool, block types, deploy: exactly as written.
        for argv in commands.setup:
            stack.cli(argv)
        # 5. The worker, elsewhere and without crowdloop settings: runs must get the
        # checkout and the settings from the deployment.
        worker_env = {**common, "PREFECT_API_URL": api_url, "PREFECT_WORKER_QUERY_SECONDS": "2"}
        assert not any(k.startswith("CROWDLOOP_") for k in worker_env)
        elsewhere = base / "worker-cwd"
        elsewhere.mkdir()
        worker = start("prefect-worker", commands.services["worker"], worker_env, elsewhere)
        services.append(worker)

        def worker_online() -> bool:
            with stack.client() as c:
                return bool(c.read_workers_for_work_pool("crowdloop"))

        wait_for("the worker to report to the work pool", worker_online, 120, services)
        yield stack
    finally:
        for service in reversed(services):
            service.stop()


@pytest.fixture(scope="session")
def example_run(live: LiveStack) -> Any:
    """The README's run of the example campaign (`prefect deployment run ... --watch`),
    once per session; the finished flow run, read back through the API."""
    argv = live.commands.after_worker[0]
    try:
        out = live.cli(argv, timeout=900)
    except BaseException:
        print(live.logs())
        raise
    # Other live tests run other campaign files through the same deployment.
    (flow_run,) = [
        run
        for run in live.flow_runs_of("run-campaign/campaign")
        if run.parameters.get("campaign_file") in (None, "campaigns/example.yaml")
    ]
    state = live.flow_run_state(flow_run.id)
    assert state is not None and state.is_completed(), (
        f"{state}\n{out[-3000:]}\n{live.flow_run_logs(flow_run.id)}\n{live.logs()}"
    )
    return flow_run
