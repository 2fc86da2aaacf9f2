from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from odc.geo.xr import wrap_xr

from eocube.errors import EstimateError
from eocube.estimates.sdg import lcrpgr, sdg_rates


def test_sdg_rates_by_hand():
    df = sdg_rates((100.0, 121.0), population=(1000.0, 1100.0), years=2)
    r = df.iloc[0]
    assert r["LCR"] == pytest.approx(np.log(1.21) / 2)
    assert r["PGR"] == pytest.approx(np.log(1.1) / 2)
    assert r["LCRPGR"] == pytest.approx(2.0)


def test_zero_growth_is_a_clear_error_or_nan():
    with pytest.raises(EstimateError, match="zero population growth"):
        sdg_rates((1.0, 2.0), population=(50.0, 50.0), years=1, names=np.array(["old town"]))
    df = sdg_rates(([1.0, 1.0], [2.0, 2.0]), population=([50.0, 50.0], [50.0, 60.0]), years=1,
                   on_invalid="nan")
    assert np.isnan(df["LCRPGR"][0]) and "zero population growth" in df["note"][0]
    assert np.isfinite(df["LCRPGR"][1])


def test_lcrpgr_on_synthetic_city(tiny_world):
    from eocube.synth.sensors import Scene

    sc = Scene(tiny_world)
    y0, y1 = tiny_world.spec.start.year - 1, tiny_world.spec.end.year
    bu = xr.concat([wrap_xr(sc.builtup(y).astype("float32"), sc.geobox) for y in (y0, y1)],
                   dim="year").assign_coords(year=[y0, y1])
    census = tiny_world.census
    out = lcrpgr(bu, population=census, zones=tiny_world.communities, on_invalid="nan")
    city = out.iloc[0]
    assert city["zone"] == "city" and city["years"] == y1 - y0
    assert city["urb_t1"] == pytest.approx(float(bu[0].sum()) * 100.0)
    assert city["LCR"] > 0 and city["PGR"] > 0 and np.isfinite(city["LCRPGR"])
    assert len(out) == 1 + len(tiny_world.communities)
    only_city = lcrpgr(bu, population=(census["pop_start"].sum(), census["pop_end"].sum()))
    assert only_city["LCRPGR"].iloc[0] == pytest.approx(city["LCRPGR"])
    with pytest.raises(EstimateError, match="length 2"):
        lcrpgr(bu.isel(year=[0]), population=(1.0, 2.0))


def test_sdg_rates_takes_the_data_first_and_the_rest_by_keyword():
    with pytest.raises(TypeError):
        sdg_rates(100.0, 121.0, 1000.0, 1100.0, years=2)  # the old positional form
    with pytest.raises(EstimateError, match=r"population must hold the two dates"):
        sdg_rates((100.0, 121.0), population=(1000.0,), years=2)
