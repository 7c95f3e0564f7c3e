"""`crowdloop simulator serve`: the simulated marketplace as its own long-running process.

It listens on 127.0.0.1 only, keeps its state in a file (every write request is saved
before it is answered, atomically; see `persistence`), restores that state on start, and
stops cleanly on SIGINT or SIGTERM (uvicorn's handlers: in-flight requests finish, then a
last save). The bearer token is kept in the state file too, so a restarted simulator
accepts the clients configured for it before, unless `token` names a new one.
"""

from __future__ import annotations

import secrets
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from crowdloop.simulator.app import create_app
from crowdloop.simulator.config import SimulatorConfig
from crowdloop.simulator.persistence import StateFile, StateFileError
from crowdloop.simulator.state import MarketplaceState

HOST = "127.0.0.1"
DEFAULT_PORT = 8765
DEFAULT_STATE = Path("~/.crowdloop/simulator-state.json")


@dataclass
class Prepared:
    state: MarketplaceState
    token: str
    restored: bool


def prepare(
    store: StateFile,
    *,
    seed: int | None,
    token: str | None,
    time_scale: float | None = None,
    id_prefix: str | None = None,
) -> Prepared:
    """The state to serve (restored from the file when there is one) and its token."""
    if store.exists():
        state, saved_token = store.load()
        if seed is not None and seed != state.config.seed:
            raise StateFileError(
                f"{store.path} holds a marketplace made with seed {state.config.seed}, not "
                f"{seed}; drop --seed to continue it, or use another --state for a new one"
            )
        if time_scale is not None and time_scale != state.config.time_scale:
            raise StateFileError(
                f"{store.path} holds a marketplace whose clock runs at "
                f"{state.config.time_scale}x, not {time_scale}x; drop --time-scale to "
                "continue it, or use another --state for a new one"
            )
        return Prepared(state, token or saved_token, restored=True)
    config = SimulatorConfig(seed=seed or 0)
    if time_scale is not None:
        config = config.model_copy(update={"time_scale": time_scale})
    if id_prefix:
        config = config.model_copy(update={"id_prefix": id_prefix})
    return Prepared(MarketplaceState(config), token or secrets.token_urlsafe(24), restored=False)


def bind(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((HOST, port))
        # Listening now, not when uvicorn starts: a client that read the announcement
        # waits in the backlog instead of being refused.
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def serve(
    *,
    port: int = DEFAULT_PORT,
    state_path: Path = DEFAULT_STATE,
    seed: int | None = None,
    token: str | None = None,
    time_scale: float | None = None,
    id_prefix: str | None = None,
    announce: Callable[[str], None] = print,
) -> None:
    """Run until SIGINT/SIGTERM. `port` 0 picks a free one (announced)."""
    store = StateFile(state_path)
    prepared = prepare(store, seed=seed, token=token, time_scale=time_scale, id_prefix=id_prefix)
    state, token_ = prepared.state, prepared.token
    sock = bind(port)  # fail on a taken port before announcing anything
    store.save(state, token_)  # the token is on disk before any client can use it

    def save() -> None:
        store.save(state, token_)

    app = create_app(state.config, token_, state=state, on_change=save)
    url = f"http://{HOST}:{sock.getsockname()[1]}"
    origin = (
        f"restored from {store.path}: {state.snapshot_stats()['pools_created']} pool(s)"
        if prepared.restored
        else f"new, kept in {store.path}"
    )
    announce(f"crowdloop simulator on {url} (seed {state.config.seed}; state {origin})")
    announce(f"CROWDLOOP_SIMULATOR_URL={url}")
    announce(f"CROWDLOOP_SIMULATOR_TOKEN={token_}")
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", timeout_keep_alive=30
    )
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal through the
    # handlers it found installed; these record it instead, so the last save runs and the
    # process exits 0 (a stop asked for is a clean stop, not a crash).
    received: list[int] = []
    previous = {
        sig: signal.signal(sig, lambda signum, _frame: received.append(signum))
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        save()
        sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        announce(f"crowdloop simulator stopped ({signal.Signals(received[0]).name}); state saved")
