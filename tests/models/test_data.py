"""The training data is the city's archive read through eocube.cube: the yearly composites the
pipeline's cubes stage makes, truth from the archive's truth/ on 1 July."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pandas as pd
import pytest

from eocube.catalog import open_archive
from eocube.cube import load
from eocube.models import data
from eocube.models.data import (
    S1_BANDS,
    S2_BANDS,
    city_key,
    load_city,
    s2_grid,
)
from eocube.synth import read_truth, resolve_spec

#: SCL classes the pipeline's mask_clouds removes: no data, saturated, shadow, clouds, cirrus
SCL_BAD = (0, 1, 3, 8, 9, 10)


def _items(archive, cid, year):
    return [it for it in open_archive(archive).items(cid)
            if pd.Timestamp(it["properties"]["datetime"]).year == year]


def _nanmedian(a: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(a, axis=0).astype("float32")


@pytest.mark.parametrize("year", [2020, 2021])
def test_composites_are_masked_medians_of_the_loaded_archive(tiny_city, tiny_archive, year):
    """Each year: the S2 series loaded from the archive, NaN where SCL is a bad class, its
    median per pixel; S1 NaN where a band is not positive; computed here with numpy."""
    gb = s2_grid(tiny_archive)
    s2 = load(_items(tiny_archive, "sentinel-2-l2a", year), bands=[*S2_BANDS, "SCL"],
              geobox=gb, chunks={}).load()
    s1 = load(_items(tiny_archive, "sentinel-1-rtc", year), bands=list(S1_BANDS), geobox=gb,
              chunks={}).load()
    got = tiny_city.inputs[year]
    assert list(got.data_vars) == [*S2_BANDS, *S1_BANDS]
    assert got.odc.geobox == gb and got.attrs["composite"] == f"median {year}"
    bad = np.isin(s2["SCL"].to_numpy(), SCL_BAD)
    assert 0 < bad.mean() < 1  # clouds were masked, not nothing and not everything
    for b in S2_BANDS:
        want = _nanmedian(np.where(bad, np.nan, s2[b].to_numpy()))
        assert got[b].dims == ("y", "x") and got[b].dtype == np.float32
        np.testing.assert_allclose(got[b].to_numpy(), want, rtol=0, atol=1e-6)
    s1_ok = np.all([np.isfinite(s1[b].to_numpy()) & (s1[b].to_numpy() > 0) for b in S1_BANDS],
                   axis=0)
    for b in S1_BANDS:
        want = _nanmedian(np.where(s1_ok, s1[b].to_numpy(), np.nan))
        np.testing.assert_allclose(got[b].to_numpy(), want, rtol=0, atol=1e-6)
    assert float(np.nanmean(got["B04"])) == pytest.approx(0.1, abs=0.08)  # reflectance


def test_builtup_is_the_truth_on_1_july(tiny_city, tiny_archive, tiny_world):
    """1 July: the buildings finished by then (the world's own roof fraction ≥ 0.5); the
    archive's end-of-year raster also counts those finished in the second half."""
    from eocube.synth.sensors import Scene

    scene = Scene(tiny_world)
    later = 0
    for year in tiny_city.years:
        got = tiny_city.builtup[year]
        want = scene.builtup_fraction(pd.Timestamp(f"{year}-07-01")) >= 0.5
        assert got.dtype == np.uint8 and got.odc.geobox == tiny_city.inputs[year].odc.geobox
        np.testing.assert_array_equal(got.to_numpy(), want.astype("uint8"))
        end = read_truth(tiny_archive, f"builtup-{year}").to_numpy()
        later += int((end != got.to_numpy()).sum())
    assert later > 0  # the mid-year rule changes labels on this city


def test_vhr_building_mask_and_stock_cells(tiny_city, tiny_archive):
    b = read_truth(tiny_archive, "buildings")
    bid = read_truth(tiny_archive, "building-id-vhr").to_numpy()
    vhr, mask = tiny_city.vhr, tiny_city.building
    assert vhr.dims == ("band", "y", "x") and list(vhr["band"].values) == ["red", "green", "blue"]
    assert vhr.odc.geobox == mask.odc.geobox and mask.dtype == np.uint8
    assert 0 < float(vhr.max()) <= 255
    t = np.datetime64(max(pd.Timestamp(it["properties"]["datetime"]).tz_convert(None)
                          for it in open_archive(tiny_archive).items("eocube-synth-vhr")))
    standing = b["building_id"][(b["built_date"] <= t) & ~(b["demolished_date"] <= t)]
    np.testing.assert_array_equal(mask.to_numpy() == 1, np.isin(bid, standing))
    assert 0 < (mask.to_numpy() == 1).sum() <= (bid > 0).sum()
    cells = tiny_city.cells
    assert cells.odc.geobox == s2_grid(tiny_archive).zoom_to(resolution=100.0)
    assert float(cells["stock_t"].sum()) == pytest.approx(float(b["stock_total_t"].sum()),
                                                          rel=1e-5)
    assert cells["ntl"].dims == ("time", "y", "x") and cells.sizes["time"] == 24
    assert float(cells["ntl"].mean()) > 0


def test_load_city_builds_once_and_caches(tiny_city, tiny_archive, tmp_path, monkeypatch):
    spec = resolve_spec("tiny")
    arch = tmp_path / city_key(0, spec) / "archive"
    shutil.copytree(tiny_archive, arch)  # as if built by an earlier call: not built again
    first = load_city(0, spec=spec, cache_dir=tmp_path)
    assert (arch.parent / f"derived-v{data.DERIVED_VERSION}" / "done").exists()
    shutil.rmtree(arch)  # the second call reads what the first kept
    second = load_city(0, spec=spec, cache_dir=tmp_path)
    for city in (first, second):
        assert city.years == tiny_city.years and city.seed == 0 and city.spec == spec
        for y in city.years:
            assert city.inputs[y].equals(tiny_city.inputs[y])
            assert city.builtup[y].equals(tiny_city.builtup[y])
        assert city.vhr.equals(tiny_city.vhr) and city.building.equals(tiny_city.building)
        assert city.cells.equals(tiny_city.cells)
    assert city_key(0, spec) != city_key(1, spec)
    assert city_key(0, spec) != city_key(0, resolve_spec(spec, new_building_share=0.3))
    key = city_key(0, spec)  # another version of the simulator: another city
    monkeypatch.setattr(data, "_synth_source_digest", lambda: "another world")
    assert city_key(0, spec) != key
