"""What the connector contract suite needs from each marketplace, and the fault injector.

Every connector gets one `harness_<name>.py` module beside this file exposing
`make_harness() -> Harness`. The suite (`test_contract.py`) runs the same tests over all
of them, so a new connector is checked against the contract by adding one module.

Faults are injected below the connector, at the httpx transport: a `FaultTransport`
wraps whatever transport reaches the marketplace (a live loopback server, or a respx
router standing in for a vendor), so the connector's own client, retry policy and error
mapping are what get exercised.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import ClassVar

import httpx

from crowdloop.connectors.base import Connector
from crowdloop.models.domain import (
    BatchRef,
    BatchSpec,
    CompareTask,
    Money,
    Stage,
    TaskItem,
    WriteResponseTask,
)

RETRY_AFTER_S = 3


class Op(StrEnum):
    """The HTTP calls behind the contract's operations that faults are aimed at."""

    CREATE_BATCH = "create_batch"
    ADD_ITEMS = "add_items"
    LIST_SUBMISSIONS = "list_submissions"


class Fault(StrEnum):
    RATE_LIMIT = "rate_limit"  # 429 with Retry-After, request not processed
    UNAUTHORIZED = "unauthorized"  # 401, request not processed
    SERVER_ERROR_AFTER = "server_error_after"  # processed by the marketplace, then a 500


Wrap = Callable[[httpx.BaseTransport], httpx.BaseTransport]


@dataclass
class Route:
    method: str
    path: str  # regular expression searched in the URL path

    def matches(self, request: httpx.Request) -> bool:
        return request.method == self.method and re.search(self.path, request.url.path) is not None


@dataclass
class FaultTransport(httpx.BaseTransport):
    inner: httpx.BaseTransport
    routes: Mapping[Op, Route]
    armed: list[tuple[Op, Fault]] = field(default_factory=list)
    seen: list[tuple[str, str]] = field(default_factory=list)  # (method, path) of every request

    def arm(self, op: Op, fault: Fault, times: int = 1) -> None:
        self.armed.extend([(op, fault)] * times)

    def calls(self, op: Op) -> int:
        route = self.routes[op]
        return sum(
            1
            for method, path in self.seen
            if method == route.method and re.search(route.path, path) is not None
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append((request.method, request.url.path))
        for index, (op, fault) in enumerate(self.armed):
            if self.routes[op].matches(request):
                del self.armed[index]
                return self._inject(fault, request)
        return self.inner.handle_request(request)

    def _inject(self, fault: Fault, request: httpx.Request) -> httpx.Response:
        if fault is Fault.RATE_LIMIT:
            return httpx.Response(
                429,
                headers={"Retry-After": str(RETRY_AFTER_S)},
                json={"error": "rate limited (injected)"},
                request=request,
            )
        if fault is Fault.UNAUTHORIZED:
            return httpx.Response(401, json={"error": "bad token (injected)"}, request=request)
        processed = self.inner.handle_request(request)
        processed.read()
        processed.close()
        return httpx.Response(500, json={"error": "internal (injected)"}, request=request)

    def close(self) -> None:
        self.inner.close()


class Harness(ABC):
    """One marketplace as the contract suite sees it.

    `connector(wrap)` must build the connector the way `from_config` would, except that
    its HTTP client's transport is `wrap(<the transport that reaches the marketplace>)`,
    its retry sleeps are appended to `self.sleeps` instead of slept, and its page size is
    small enough that `answer()`'s submissions span at least two pages.
    """

    name: str
    routes: ClassVar[Mapping[Op, Route]]
    # False for a marketplace with no HTTP underneath (replay): fault tests do not apply.
    http: bool = True
    # False where the platform cannot list a batch's tasks by our key (Prolific datasets):
    # `find_tasks` then confirms only what it can see, and replaying the add is what keeps
    # a reconciliation from duplicating.
    lists_tasks: bool = True
    # The crowd takes every task the moment it is published (no waiting for `answer`).
    takes_work_on_publish: bool = False

    def __init__(self) -> None:
        self.sleeps: list[float] = []
        # The token / key the harness's connector presents; None: the marketplace has no
        # credentials to get wrong (replay) or the harness cannot swap them (simulator).
        self.secret: str | None = None

    def connector_with_wrong_secret(self) -> Connector | None:
        """The connector as `connector()` builds it, presenting a secret the fake refuses."""
        if self.secret is None:
            return None
        kept, self.secret = self.secret, "wrong-secret-0000000000000000"
        try:
            return self.connector()
        finally:
            self.secret = kept

    @abstractmethod
    def connector(self, wrap: Wrap | None = None) -> Connector: ...

    @abstractmethod
    def answer(self, connector: Connector, batch: BatchRef, items: list[TaskItem]) -> int:
        """Have the marketplace's workers answer these started items; return how many
        submissions that makes (each must then be visible to `iter_submissions`)."""

    @abstractmethod
    def created(self) -> tuple[int, int]:
        """(batches, tasks) that exist on the marketplace right now."""

    def worker_id(self, connector: Connector, batch: BatchRef) -> str:
        """A worker the marketplace knows (one who answered in `batch`)."""
        for page in connector.iter_submissions(batch, cursor=None):
            for submission in page.submissions:
                return submission.worker_id
        raise AssertionError(f"{self.name}: no submission to take a worker id from")

    def batch_spec(self, stage: Stage = Stage.COMPARE) -> BatchSpec:
        return BatchSpec(
            name=f"contract {stage.value}",
            stage=stage,
            instruction="Which answer is better?",
            reward=Money(amount=Decimal("0.05")),
            campaign_id="contract",
        )

    def items(self, n: int, *, prefix: str = "item", overlap: int = 2) -> list[TaskItem]:
        return [
            TaskItem(
                key=f"contract:{prefix}-{i}.0",
                group=f"{prefix}-{i}",
                payload=CompareTask(
                    instruction="Which answer is better?",
                    prompt=f"Top 5 rivers, take {i}",
                    left=f"1. Nile 2. Amazon ({i})",
                    right=f"1. Danube 2. Rhine ({i})",
                ),
                overlap=overlap,
            )
            for i in range(n)
        ]

    def writing_items(self, n: int) -> list[TaskItem]:
        return [
            TaskItem(
                key=f"contract:write-{i}.0",
                group=f"write-{i}",
                payload=WriteResponseTask(
                    instruction="Answer the request.", prompt=f"Top 5 lakes, take {i}"
                ),
                overlap=1,
            )
            for i in range(n)
        ]

    def close(self) -> None:  # noqa: B027 - optional hook
        """Stop whatever the harness started."""


def discover() -> dict[str, Callable[[], Harness]]:
    """`make_harness` of every `harness_*.py` module in this package, by module suffix."""
    package = importlib.import_module(__package__ or "tests.contract")
    found: dict[str, Callable[[], Harness]] = {}
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("harness_"):
            module = importlib.import_module(f"{package.__name__}.{info.name}")
            found[info.name.removeprefix("harness_")] = module.make_harness
    return dict(sorted(found.items()))
