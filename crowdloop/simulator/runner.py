"""Run the simulated marketplace in-process: uvicorn on a free 127.0.0.1 port in a daemon
thread, so callers reach it over real HTTP exactly as they would a remote platform.

    with SimulatorServer(SimulatorConfig(seed=1)) as sim:
        os.environ["CROWDLOOP_SIMULATOR_URL"] = sim.url
        os.environ["CROWDLOOP_SIMULATOR_TOKEN"] = sim.token
        ...
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from types import TracebackType
from typing import Any, Self

import httpx
import uvicorn

from crowdloop.simulator.app import create_app
from crowdloop.simulator.config import FaultConfig, SimulatorConfig
from crowdloop.simulator.state import MarketplaceState


class SimulatorServer:
    def __init__(
        self,
        config: SimulatorConfig | None = None,
        *,
        token: str | None = None,
        startup_timeout_s: float = 10.0,
    ) -> None:
        self.config = config or SimulatorConfig()
        self.token = token or secrets.token_urlsafe(24)
        self.app = create_app(self.config, self.token)
        self.state: MarketplaceState = self.app.state.marketplace
        self._startup_timeout_s = startup_timeout_s
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("the simulator is not running; use it as a context manager")
        return f"http://127.0.0.1:{self._port}"

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the simulator is already running")
        # Bind here rather than in uvicorn so the port is known before the thread starts.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit this; without it Nagle plus delayed ACKs add ~40 ms
        # to every response.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, log_level="warning", access_log=False, lifespan="off", timeout_keep_alive=30
        )
        self._server = uvicorn.Server(config)
        server = self._server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="crowdloop-simulator", daemon=True
        )
        self._thread.start()
        self._wait_until_up()

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + self._startup_timeout_s
        while time.monotonic() < deadline:
            if self._thread is not None and not self._thread.is_alive():
                raise RuntimeError("the simulator thread exited during startup")
            try:
                if httpx.get(f"{self.url}/sim/health", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"the simulator did not answer within {self._startup_timeout_s}s")

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- conveniences over the admin endpoints (the state is shared in-process) ------------

    def set_faults(self, faults: FaultConfig) -> None:
        self.state.faults.replace(faults)

    def advance(self, sim_seconds: float) -> float:
        """Move the simulated clock forward; returns the new simulated time."""
        return self.state.advance_clock(sim_seconds)

    def stats(self) -> dict[str, Any]:
        return self.state.snapshot_stats()

    def truth(self, keys: list[str]) -> dict[str, Any]:
        return dict(self.state.truth(keys))
