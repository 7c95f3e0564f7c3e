"""The built-in simulated marketplace, live on loopback, under the contract suite."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import ClassVar

import httpx
from pydantic import SecretStr

from crowdloop.connectors._http import RetryPolicy
from crowdloop.connectors.base import Connector
from crowdloop.connectors.simulator.connector import SimulatorConnector
from crowdloop.connectors.simulator.credentials import SimulatorCredentials
from crowdloop.connectors.testing import Harness, Op, Route, Wrap
from crowdloop.models.domain import BatchRef, BatchState, TaskItem
from crowdloop.simulator.runner import SimulatorServer
from tests.simulator_fixtures import config

POOLS = r"^/api/v1/pools$"


class SimulatorHarness(Harness):
    name = "simulator"
    takes_work_on_publish = True
    routes: ClassVar[Mapping[Op, Route]] = {
        Op.CREATE_BATCH: Route("POST", POOLS),
        Op.ADD_ITEMS: Route("POST", r"^/api/v1/pools/[^/]+/tasks$"),
        Op.LIST_SUBMISSIONS: Route("GET", r"^/api/v1/pools/[^/]+/assignments$"),
    }

    def __init__(self) -> None:
        super().__init__()
        self.server = SimulatorServer(config(seed=3))
        self.server.__enter__()

    def connector(self, wrap: Wrap | None = None) -> Connector:
        credentials = SimulatorCredentials(
            base_url=self.server.url, api_token=SecretStr(self.server.token)
        )
        transport: httpx.BaseTransport = httpx.HTTPTransport()
        client = credentials.get_client(
            timeout_s=5.0,
            retry=RetryPolicy(attempts=4),
            transport=wrap(transport) if wrap else transport,
            sleep=self.sleeps.append,
        )
        return SimulatorConnector(client, page_limit=7)

    def answer(self, connector: Connector, batch: BatchRef, items: list[TaskItem]) -> int:
        status = connector.get_status(batch)
        if status.state is BatchState.CLOSED:  # closed or paused: nothing new is handed out
            return status.assignments_submitted
        # The simulator's clock runs fast: wait until its crowd has answered everything.
        deadline = time.monotonic() + 20
        while not connector.get_status(batch).complete:
            if time.monotonic() > deadline:
                raise AssertionError("the simulated crowd never finished the batch")
            time.sleep(0.02)
        return sum(item.overlap for item in items)

    def created(self) -> tuple[int, int]:
        stats = self.server.stats()
        return int(stats["pools_created"]), int(stats["tasks_created"])

    def close(self) -> None:
        self.server.__exit__(None, None, None)


def make_harness() -> Harness:
    return SimulatorHarness()
