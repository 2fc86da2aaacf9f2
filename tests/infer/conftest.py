"""Fixtures: tiny saved models (session-wide) and one torch thread per test process."""

from __future__ import annotations

import dask
import pytest

torch = pytest.importorskip("torch")

from eocube.testing import scenes as scene  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def unet_path(tmp_path_factory):
    return scene.unet_weights(tmp_path_factory.mktemp("w") / "tiny_unet.safetensors")


@pytest.fixture(scope="session")
def change_path(tmp_path_factory):
    return scene.change_weights(tmp_path_factory.mktemp("w") / "tiny_change.safetensors")


@pytest.fixture(scope="session")
def dual_path(tmp_path_factory):
    return scene.dual_weights(tmp_path_factory.mktemp("w") / "tiny_fusion.safetensors")


def _raise_on_compute(*args, **kwargs):
    raise AssertionError("a dask computation ran where none was expected")


@pytest.fixture
def no_compute():
    """Context in which any dask computation fails the test."""
    return lambda: dask.config.set(scheduler=_raise_on_compute)
