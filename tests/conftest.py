"""Shared fixtures: one tiny synthetic city per test session, and a STAC API over it."""

from __future__ import annotations

import pytest

from eocube.catalog import LocalStacApi
from eocube.synth import build_city, make_world

TINY_SEED = 0


@pytest.fixture(scope="session")
def tiny_world():
    return make_world("tiny", seed=TINY_SEED)


@pytest.fixture(scope="session")
def tiny_archive(tmp_path_factory):
    """The tiny city written as a STAC archive (built once per session)."""
    return build_city(tmp_path_factory.mktemp("city") / "tiny", preset="tiny", seed=TINY_SEED,
                      workers=2)


@pytest.fixture(scope="session")
def stac_api(tiny_archive):
    """A running local STAC API (rustac serve) over the tiny archive."""
    with LocalStacApi(tiny_archive) as api:
        yield api
