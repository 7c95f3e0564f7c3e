"""A terminal progress view of a running campaign: one bar per stage, read from the
database every second by a background thread while the flow runs in the main one."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)


@contextmanager
def watch_campaign(campaign_id: str, console: Console, interval_s: float = 1.0) -> Iterator[None]:
    """Show the campaign's per-stage progress until the block ends (nothing if the
    output is not a terminal: the final summary says it all)."""
    if not console.is_terminal:
        yield
        return
    from crowdloop.stages.progress import live_progress

    bars = Progress(
        TextColumn("{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    tasks: dict[str, TaskID] = {}
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            try:
                p = live_progress(campaign_id)
            except Exception:
                p = None
            if p is not None:
                for st in p.stages:
                    note = f"batch {st.batch}" if st.batch != "not published" else ""
                    if st.stage not in tasks:
                        tasks[st.stage] = bars.add_task(st.stage, total=st.total, note=note)
                    bars.update(tasks[st.stage], completed=st.done, total=st.total, note=note)
            stop.wait(interval_s)

    thread = threading.Thread(target=poll, name="crowdloop-progress", daemon=True)
    with bars:
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=2)
