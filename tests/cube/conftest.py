from __future__ import annotations

import pytest

from eocube.synth.sensors import Scene


@pytest.fixture(scope="session")
def tiny_scene(tiny_world):
    return Scene(tiny_world)
