"""The training composites go through eocube.cube (masks, composite) with the numbers the
shipped weights were trained on: equal, bit for bit, to the hand-written medians before."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr

from eocube.models.data import s1_composite, s1_dates, s1_orbit, s2_composite, s2_dates
from eocube.synth import make_world, resolve_spec
from eocube.synth.sensors import (
    S1_NODATA,
    S2_BANDS,
    S2_BOA_ADD_OFFSET,
    S2_QUANTIFICATION,
    SCL_CLOUD_AND_SHADOW,
    Scene,
)


def _nanmedian(layers: list[np.ndarray]) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(np.stack(layers), axis=0).astype("float32")


def _s2_reference(scene: Scene, year: int) -> dict[str, np.ndarray]:
    """The composite as eocube.models.data computed it when the weights were trained."""
    dates = s2_dates(scene.world.spec)
    stacks: dict[str, list[np.ndarray]] = {b: [] for b in S2_BANDS}
    for i in np.flatnonzero(dates.year == year):
        sc = scene.s2_scene(int(i), dates[i])
        bad20 = np.isin(sc["SCL"], (0, *SCL_CLOUD_AND_SHADOW))
        bad10 = np.repeat(np.repeat(bad20, 2, axis=0), 2, axis=1)
        for b in S2_BANDS:
            dn = sc[b]
            if dn.shape != bad10.shape:
                dn = np.repeat(np.repeat(dn, 2, axis=0), 2, axis=1)
            r = (dn.astype("float32") + S2_BOA_ADD_OFFSET) / S2_QUANTIFICATION
            stacks[b].append(np.where(bad10, np.nan, r))
    return {b: _nanmedian(v) for b, v in stacks.items()}


def _s1_reference(scene: Scene, year: int) -> dict[str, np.ndarray]:
    dates = s1_dates(scene.world.spec)
    stacks: dict[str, list[np.ndarray]] = {b: [] for b in ("vv", "vh")}
    for i in np.flatnonzero(dates.year == year):
        sc = scene.s1_scene(int(i), dates[i], orbit=s1_orbit(int(i)))
        for b in stacks:
            stacks[b].append(np.where(sc[b] == S1_NODATA, np.nan, sc[b]))
    return {b: _nanmedian(v) for b, v in stacks.items()}


@pytest.fixture(scope="module")
def scene() -> Scene:
    return Scene(make_world(resolve_spec("tiny"), seed=3))


@pytest.mark.parametrize("year", [2020, 2021])
def test_composites_are_the_ones_the_weights_were_trained_on(scene, year):
    s2, s1 = s2_composite(scene, year), s1_composite(scene, year)
    for got, ref in ((s2, _s2_reference(scene, year)), (s1, _s1_reference(scene, year))):
        assert list(got.data_vars) == list(ref)
        assert got.attrs == {"composite": f"median {year}"}
        for b, want in ref.items():
            assert got[b].dims == ("y", "x") and got[b].dtype == np.float32
            np.testing.assert_array_equal(got[b].to_numpy(), want)  # NaN where NaN
        assert got.odc.geobox == scene.geobox
    assert np.isnan(_s2_reference(scene, year)["B04"]).sum() == int(s2["B04"].isnull().sum())
    assert s2["B04"].attrs["units"] == "1" and s1["vv"].attrs["units"] == "linear power"
    assert "time" not in s2.coords and isinstance(s2, xr.Dataset)
