"""Shared fixtures: a fake clock, the default seed's IDs, backends on the demo credential."""

from __future__ import annotations

import pytest

from emulator import DEMO_CREDENTIAL, EcsBackend, EmulatorConfig, load_seed
from tests.support import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def backend(clock: FakeClock) -> EcsBackend:
    """The default seed with the default timing: INIT 0.5 s, done at 3 s, kept one day."""
    return EcsBackend.from_seed(
        load_seed(None), credentials=[DEMO_CREDENTIAL], config=EmulatorConfig(), clock=clock
    )
