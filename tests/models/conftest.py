"""Fixtures for the model tests: tiny networks and one tiny simulated city per session."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(1)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_city(tiny_archive):
    """The tiny preset city (1.28 km, 128 × 128 px at 10 m) as training data, read from the
    session's tiny archive as ``load_city`` reads the archive it builds."""
    from eocube.models.data import read_city
    from eocube.synth import resolve_spec

    return read_city(tiny_archive, spec=resolve_spec("tiny"))
