"""The shipped connector contract suite (`crowdloop.connectors.testing`), run over every
marketplace of this repository that has a harness module here.

Every connector gets one `harness_<name>.py` module beside this file exposing
`make_harness() -> Harness`, so a new built-in connector is held to the contract by adding
one module. A connector in another package subclasses `ConnectorContract` the same way
(docs/connectors.md).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator

import pytest

from crowdloop.connectors.testing import ConnectorContract, Harness


def discover() -> dict[str, Callable[[], Harness]]:
    """`make_harness` of every `harness_*.py` module in this package, by module suffix."""
    package = importlib.import_module(__package__ or "tests.contract")
    found: dict[str, Callable[[], Harness]] = {}
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("harness_"):
            module = importlib.import_module(f"{package.__name__}.{info.name}")
            found[info.name.removeprefix("harness_")] = module.make_harness
    return dict(sorted(found.items()))


HARNESSES = discover()


def test_every_built_in_connector_has_a_harness() -> None:
    from crowdloop.connectors.registry import discover as installed

    built_in = {name for name, info in installed().items() if info.target.startswith("crowdloop.")}
    assert built_in <= set(HARNESSES), f"no contract harness for {built_in - set(HARNESSES)}"


class TestContract(ConnectorContract):
    @pytest.fixture(params=sorted(HARNESSES))
    def harness(self, request: pytest.FixtureRequest) -> Iterator[Harness]:
        made = HARNESSES[request.param]()
        try:
            yield made
        finally:
            made.close()
