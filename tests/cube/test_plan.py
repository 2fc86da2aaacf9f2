"""The plan: items become frozen records once (grids, assets, scale/offset/nodata), from
metadata alone."""

from __future__ import annotations

import dataclasses

import pytest

from eocube.catalog import tilegrid
from eocube.catalog.search import search
from eocube.cube import Grid, ParsedItem, parse_item, plan_load
from eocube.cube.plan import parse_grid
from eocube.errors import ConfigError, GridError
from eocube.synth import vnp46a3 as synth_bm


def test_the_grid_of_an_asset_wins_over_the_items():
    props = {"proj:epsg": 32650, "proj:shape": [64, 64],
             "proj:transform": [10, 0, 200000, 0, -10, 2501280]}
    assert parse_grid(props) == Grid("EPSG:32650", (64, 64),
                                     (10.0, 0.0, 200000.0, 0.0, -10.0, 2501280.0))
    asset = {"proj:code": "EPSG:32651", "proj:shape": [32, 16],
             "proj:transform": [20, 0, 100, 0, -20, 900, 0, 0, 1]}
    g = parse_grid(props, asset)
    assert g == Grid("EPSG:32651", (32, 16), (20.0, 0.0, 100.0, 0.0, -20.0, 900.0))
    assert g.complete and g.bounds() == (100.0, 260.0, 420.0, 900.0)
    assert g.geobox().shape.yx == (32, 16) and g.geobox().crs == "EPSG:32651"
    assert not parse_grid({}).complete and parse_grid({}).geobox() is None


def test_records_hold_each_bands_source_once_and_are_frozen(s2_items, tiny_scene):
    plan = plan_load(s2_items, bands=["red", "SCL"], geobox=tiny_scene.geobox)
    assert plan.engine == "odc" and plan.bands == ("red", "SCL")
    assert plan.resampling == {"red": "bilinear", "SCL": "nearest"}
    times = [it.time for it in plan.items]
    assert times == sorted(times) and len(plan.groups) == len(set(plan.times()))
    rec = plan.items[0]
    assert isinstance(rec, ParsedItem) and rec.proj_ext
    red, scl = rec.sources["red"], rec.sources["SCL"]
    assert (red.asset, red.index, red.n_bands) == ("B04", 1, 1)
    assert (red.scale, red.offset, red.nodata) == pytest.approx((1e-4, -0.1, 0))
    assert (scl.scale, scl.offset, scl.nodata) == (1.0, 0.0, 0)  # codes are not scaled
    assert red.grid.crs == "EPSG:32650" and red.grid.shape == (64, 64)
    assert scl.grid.shape == (32, 32)
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.id = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        rec.sources["nir"] = red  # type: ignore[index]
    assert plan.asset_band("red") == ("B04", 1)


def test_black_marble_tiles_without_projection_fields_sit_on_their_hv_tile(stac_api):
    item = next(iter(search(stac_api, profile="blackmarble"))).clone()
    assert tilegrid.parse_tile(item.id) == (29, 6) == tilegrid.tile_of(114.1, 22.6)
    assert synth_bm.tile_geobox is tilegrid.tile_geobox  # one tile grid, the catalog's
    from eocube.catalog.profiles import BLACK_MARBLE_VNP46A3 as prof

    for fields in (item.properties, item.assets["h5"].extra_fields):
        for k in ("proj:shape", "proj:transform", "proj:code", "proj:epsg"):
            fields.pop(k, None)
    src = parse_item(item, profile=prof, bands=["radiance"]).sources["radiance"]
    assert src.grid.geobox() == tilegrid.tile_geobox(29, 6)
    assert src.grid.transform == tilegrid.tile_transform(29, 6)
    nameless = item.clone()
    nameless.id = "no-tile-index"
    with pytest.raises(GridError, match="'no-tile-index' has no proj:shape/proj:transform"):
        plan_load([nameless], profile=prof, crs="EPSG:4326", resolution=0.01,
                  bbox=(114, 22, 115, 23))


def test_a_band_given_twice_or_unknown_arguments_are_refused(s2_items):
    with pytest.raises(ConfigError, match="names a band twice"):
        plan_load(s2_items, bands=["B04", "B04"])
    with pytest.raises(ConfigError, match="engine='gdal'"):
        plan_load(s2_items, bands=["B04"], engine="gdal")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="on_error='skip'"):
        plan_load(s2_items, bands=["B04"], on_error="skip")  # type: ignore[arg-type]
