"""`crowdloop.collector.paused`: the cyclic collector off inside the block and as the block
found it after, also when the block raises; nested pauses leave it as the outer one found it."""

from __future__ import annotations

import gc

import pytest

from crowdloop import collector


@pytest.mark.parametrize("enabled", [True, False])
def test_paused_restores_what_it_found(enabled: bool) -> None:
    was = gc.isenabled()
    try:
        (gc.enable if enabled else gc.disable)()
        with collector.paused():
            assert not gc.isenabled()
        assert gc.isenabled() is enabled
        with pytest.raises(RuntimeError), collector.paused():
            raise RuntimeError("a failed page")
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()


def test_nested_pauses_end_with_the_outer_state() -> None:
    assert gc.isenabled()
    with collector.paused():
        with collector.paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
