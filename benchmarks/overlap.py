"""The overlap-error study: how far ``eocube.infer.predict``'s blended tiles are from the same
model run on the whole image at once, per tile side and overlap, and what each costs in pixels.

    .venv/bin/python benchmarks/overlap.py [--models urban_s2 urban_fusion] [--mirror 3]
                                           [--blends trim cosine] [--cache ~/.cache/eocube-bench]

The input is the held-out synthetic city (seed 1 of the 3.2 km spec the shipped weights were
measured on; built once into ``--cache``, outside the repository, or read from ``--archive``),
its last yearly S2 + S1
composite mirrored ``--mirror`` times per side (320 px → 960² by default) so that tiles of
several sizes fit. The reference is the same prepared model run on the whole image as one tile
(``tile`` = the image side, no blending: what the model gives with all the context there is).
For every (blending window, tile, overlap) the table prints the largest and mean |Δp| against
that reference, the share of pixels whose 0.5-label differs, and the pixels the model sees per
output pixel on an unbounded grid, ``(tile / (tile − overlap))²``: the cost of that overlap.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import itertools  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from eocube.infer.tiling import BLENDS  # noqa: E402

TILES = (256, 384, 512)
OVERLAPS = (0, 16, 24, 32, 48, 64)


def mirrored(ds: xr.Dataset, reps: int) -> xr.Dataset:
    """``ds`` (y, x) repeated ``reps`` × ``reps`` times, every other copy flipped, so the
    image is continuous across copies; on a grid with the same origin and resolution."""
    from odc.geo.geobox import GeoBox
    from odc.geo.xr import xr_coords

    gb = ds.odc.geobox
    ny, nx = gb.shape
    big = GeoBox((ny * reps, nx * reps), gb.affine, gb.crs)

    def rep(a: np.ndarray) -> np.ndarray:
        rows = np.concatenate([a if i % 2 == 0 else a[::-1] for i in range(reps)], axis=0)
        return np.concatenate([rows if j % 2 == 0 else rows[:, ::-1] for j in range(reps)],
                              axis=1)

    ydim, xdim = ds.odc.spatial_dims
    data = {str(k): (("y", "x"), rep(v.transpose(ydim, xdim).to_numpy()))
            for k, v in ds.data_vars.items()}
    return xr.Dataset(data, coords=xr_coords(big))


def study(ds: xr.Dataset, model: str, tiles: tuple[int, ...], overlaps: tuple[int, ...],
          blends: tuple[str, ...] = ("trim",)) -> list[dict]:
    """One row per (blend, tile, overlap) of ``model`` on ``ds`` against the whole-image run."""
    from eocube.infer import predict

    side = max(ds.sizes["y"], ds.sizes["x"])
    kw = dict(device="cpu", threads=1, chunks={"y": 1024, "x": 1024})

    def run(t: int, o: int, b: str) -> tuple[np.ndarray, float]:
        t0 = time.perf_counter()
        p = predict(ds, model, tile=t, overlap=o, blend=b, **kw).compute(
            scheduler="sync").to_numpy()
        return p, time.perf_counter() - t0

    ref, t_ref = run(side, 0, "trim")
    rows = []
    for b, t, o in itertools.product(blends, tiles, overlaps):
        if o >= t:
            continue
        p, secs = run(t, o, b)
        d = np.abs(p - ref)
        rows.append({"model": model, "blend": b, "tile": t, "overlap": o,
                     "max": float(np.nanmax(d)),
                     "mean": float(np.nanmean(d)),
                     "labels": float(np.mean((p > 0.5) != (ref > 0.5))),
                     "pixels": (t / (t - o)) ** 2, "seconds": secs, "whole_s": t_ref})
    return rows


def main() -> None:
    import warnings

    from eocube.models.data import HELD_OUT_SEED, city_archive, composite_inputs

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["urban_s2", "urban_fusion"])
    ap.add_argument("--mirror", type=int, default=3, help="copies per side of the 320 px city")
    ap.add_argument("--tiles", type=int, nargs="+", default=list(TILES))
    ap.add_argument("--overlaps", type=int, nargs="+", default=list(OVERLAPS))
    ap.add_argument("--blends", nargs="+", default=["trim", "cosine"], choices=list(BLENDS),
                    help="blending windows (eocube.infer.tiling); the first is the default")
    ap.add_argument("--cache", default=str(Path.home() / ".cache" / "eocube-bench"),
                    help="where the held-out city is built once (outside the repository)")
    ap.add_argument("--archive", default=None,
                    help="an archive of that city built already (read only)")
    a = ap.parse_args()
    t0 = time.perf_counter()
    archive = Path(a.archive) if a.archive else city_archive(HELD_OUT_SEED, cache_dir=a.cache)
    comp = composite_inputs(archive)
    year = str(comp["time"].values[-1])[:4]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels stay NaN
        last = comp.isel(time=-1, drop=True).load()
    ds = mirrored(last, a.mirror)
    print(f"held-out city seed {HELD_OUT_SEED}, {year} composite, mirrored {a.mirror}× per side:"
          f" {ds.sizes['y']}×{ds.sizes['x']} px (city loaded in {time.perf_counter() - t0:.0f} s)")
    print(f"{'model':14s}{'blend':>8s}{'tile':>6s}{'overlap':>9s}{'max |Δp|':>10s}"
          f"{'mean |Δp|':>11s}{'labels ≠':>10s}{'pixels':>8s}{'seconds':>9s}")
    worst: dict[tuple[str, int, int], float] = {}
    for m in a.models:
        for r in study(ds, m, tuple(a.tiles), tuple(a.overlaps), tuple(a.blends)):
            key = (r["blend"], r["tile"], r["overlap"])
            worst[key] = max(worst.get(key, 0.0), r["max"])
            print(f"{m:14s}{r['blend']:>8s}{r['tile']:6d}{r['overlap']:9d}{r['max']:10.4f}{r['mean']:11.2e}"
                  f"{r['labels']:10.1e}{r['pixels']:8.3f}{r['seconds']:9.2f}")
    print("\nworst max |Δp| over the models, and the pixel cost, per window and tile (rows) "
          "and overlap:")
    ovs = sorted({o for _, _, o in worst})
    print(f"{'blend':>8s}{'tile':>6s}" + "".join(f"{o:>16d}" for o in ovs))
    for b, t in sorted({(b, t) for b, t, _ in worst}, key=lambda bt: (a.blends.index(bt[0]),
                                                                     bt[1])):
        print(f"{b:>8s}{t:6d}" + "".join(
            f"{worst[(b, t, o)]:9.4f} ×{(t / (t - o)) ** 2:5.3f}" if (b, t, o) in worst
            else " " * 16 for o in ovs))


if __name__ == "__main__":
    main()
