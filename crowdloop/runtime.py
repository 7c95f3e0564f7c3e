"""Process plumbing for the command line: signals that stop a command cleanly, and a
temporary Prefect API that cannot outlive the command that started it.

- `stop_on_signals()`: the first SIGINT or SIGTERM silences logging (no crash tracebacks)
  and raises `KeyboardInterrupt` in the main thread, so the flow unwinds through its
  hooks and `finally` blocks; a watchdog ends the process `GRACE_S` later whatever is
  still running, and a second signal ends it at once. The CLI prints one line on the way
  out (`Interrupted.message`).
- `temporary_prefect_api()`: Prefect's own ephemeral server is a uvicorn child that shares
  the terminal's process group (Ctrl-C kills it before the flow can report its state, and
  the flow then retries against a dead API for minutes) and survives a SIGKILL of its
  parent (it keeps its port). We start the same server ourselves, in its own session (the
  terminal's Ctrl-C reaches only us; we stop it last), with PR_SET_PDEATHSIG so the
  kernel stops it when we die, however we die (Linux; elsewhere `atexit` and the signal
  path stop it).
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext, suppress
from types import FrameType

# From the first signal to a forced exit: the flow's crash hooks and the server's shutdown
# take well under this; a process that hangs past it is ended anyway.
GRACE_S = 7.0

_state: dict[str, object] = {"signal": None}
_cleanups: list[Callable[[], None]] = []
_on_forced_exit: list[Callable[[], None]] = []


def received_signal() -> int | None:
    sig = _state["signal"]
    return int(sig) if isinstance(sig, int) else None


def _run_cleanups() -> None:
    while _cleanups:
        fn = _cleanups.pop()
        with suppress(Exception):
            fn()


def _force_exit() -> None:
    _run_cleanups()
    for fn in _on_forced_exit:
        with suppress(Exception):
            fn()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(130)


def _handler(signum: int, _frame: FrameType | None) -> None:
    if _state["signal"] is not None:  # a second signal: stop now
        _force_exit()
    _state["signal"] = signum
    # Prefect logs a crash with its traceback on every level it unwinds through; the
    # command prints one line instead.
    logging.disable(logging.CRITICAL)
    timer = threading.Timer(GRACE_S, _force_exit)
    timer.daemon = True
    timer.start()
    raise KeyboardInterrupt


class _QuietAfterSignal(logging.Filter):
    """Drops Prefect's crash reports once the command is being stopped by a signal.

    SIGTERM inside a flow run first reaches Prefect's own handler (the engine installs one
    for the run and hands the signal on to ours afterwards), which logs the crash of every
    task and flow it unwinds: the command's one line says it instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _state["signal"] is None:
            message = record.getMessage()
            if "termination signal" not in message and "interrupt signal" not in message:
                return True
            _state["prefect_saw_signal"] = True
        return False


_QUIET = _QuietAfterSignal()
_PREFECT_RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs", "prefect.engine", "prefect")


@contextmanager
def stop_on_signals(on_forced_exit: Callable[[], None] | None = None) -> Iterator[None]:
    """SIGINT and SIGTERM raise KeyboardInterrupt in the main thread (once), with a
    watchdog. `on_forced_exit` runs (prints) if the watchdog has to end the process."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    if on_forced_exit is not None:
        _on_forced_exit.append(on_forced_exit)
    for s in old:
        signal.signal(s, _handler)
    for name in _PREFECT_RUN_LOGGERS:
        logging.getLogger(name).addFilter(_QUIET)
    try:
        yield
    finally:
        for name in _PREFECT_RUN_LOGGERS:
            logging.getLogger(name).removeFilter(_QUIET)
        for s, h in old.items():
            signal.signal(s, h)
        if on_forced_exit is not None and on_forced_exit in _on_forced_exit:
            _on_forced_exit.remove(on_forced_exit)


# --- the temporary Prefect API -----------------------------------------------------------

# Runs in the server's process before uvicorn: ask the kernel for SIGTERM when the parent
# dies, and exit if it already did (the window between fork and prctl).
_LAUNCHER = """
import ctypes, os, runpy, signal, sys
parent = int(sys.argv[1])
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
except (OSError, AttributeError):
    pass
if os.getppid() != parent:
    sys.exit(0)
sys.argv = ["uvicorn", *sys.argv[2:]]
runpy.run_module("uvicorn", run_name="__main__", alter_sys=True)
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrefectServer:
    """Prefect's API server (the one its ephemeral mode runs), as our child process."""

    def __init__(self, startup_timeout_s: float = 180.0) -> None:
        self.startup_timeout_s = startup_timeout_s
        self.process: subprocess.Popen[bytes] | None = None
        self.port: int | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def _spawn(self) -> subprocess.Popen[bytes]:
        import prefect
        from prefect.settings import get_current_settings

        self.port = _free_port()
        env = {
            **os.environ,
            "PREFECT_UI_ENABLED": "0",
            "PREFECT__SERVER_EPHEMERAL": "1",
            "PREFECT__SERVER_FINAL": "1",
            **get_current_settings().to_environment_variables(exclude_unset=True),
        }
        env.pop("PREFECT_API_URL", None)
        args = [
            sys.executable,
            "-c",
            _LAUNCHER,
            str(os.getpid()),
            "--app-dir",
            str(prefect.__module_path__.parent),
            "--factory",
            "prefect.server.api.server:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--log-level",
            "error",
            "--lifespan",
            "on",
        ]
        # Own session: the terminal's Ctrl-C goes to crowdloop only, which stops the
        # server after the flow has reported its state.
        return subprocess.Popen(args, env=env, start_new_session=True, stdin=subprocess.DEVNULL)

    def start(self) -> None:
        import httpx

        self.process = self._spawn()
        atexit.register(self.stop)
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code == 3:  # the port was taken meanwhile: another one
                self.process = self._spawn()
                continue
            if code is not None:
                raise RuntimeError(f"the temporary Prefect server exited with code {code}")
            try:
                if httpx.get(f"{self.api_url}/health", timeout=2.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(
            f"the temporary Prefect server did not answer within {self.startup_timeout_s:.0f} s"
        )

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def keep_sigterm() -> None:
    """Leave SIGTERM to `stop_on_signals` in flows this process runs itself.

    Prefect's flow engine swaps in its own SIGTERM handler for every run; it exists for a
    runner cancelling a deployment's run, which never happens to a flow the CLI calls
    in-process, and a SIGTERM it catches while a task run is being created surfaces as an
    unrelated ValueError with a long traceback (Prefect 3.9). Our handler stops the run
    the way Ctrl-C does."""
    import prefect.flow_engine

    if hasattr(prefect.flow_engine, "capture_sigterm"):
        prefect.flow_engine.capture_sigterm = nullcontext  # type: ignore[assignment]


@contextmanager
def temporary_prefect_api() -> Iterator[str | None]:
    """Use the configured Prefect API, or start a temporary one for the duration.

    Yields the temporary API's URL, or None when a server is configured."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    keep_sigterm()
    if PREFECT_API_URL.value():
        yield None
        return
    timeout = float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180"))
    server = PrefectServer(startup_timeout_s=timeout)
    _cleanups.append(server.stop)
    try:
        server.start()
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            yield server.api_url
    finally:
        if server.stop in _cleanups:
            _cleanups.remove(server.stop)
        # The flow's events and logs go to the API from background workers: let them
        # drain while the server is still up (bounded), then stop it.
        _drain_prefect_workers()
        server.stop()


def _drain_prefect_workers(timeout_s: float = 3.0) -> None:
    try:
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker

        for worker in (APILogWorker, EventsWorker):
            worker.drain_all(timeout=timeout_s)
    except Exception:
        pass
