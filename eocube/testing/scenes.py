"""Tiny georegistered scenes and tiny saved models for the inference tests, the kill-and-resume
subprocess and ``benchmarks/infer.py`` (seeded, no files fetched)."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import xarray as xr
from odc.geo.geobox import GeoBox
from odc.geo.xr import xr_coords

BANDS = ("B02", "B03", "B04")
S1 = ("vv", "vh")


def geobox(ny: int, nx: int) -> GeoBox:
    """A 10 m UTM grid of ``ny`` × ``nx`` pixels."""
    return GeoBox.from_bbox((500_000, 2_500_000, 500_000 + 10 * nx, 2_500_000 + 10 * ny),
                            "epsg:32650", resolution=10)


def _field(block_info=None, *, seed: int, band: int) -> np.ndarray:
    """A deterministic block of a smooth pattern plus noise, a function of global position only
    (so any chunking of the same scene holds the same numbers)."""
    (t0, t1), (y0, y1), (x0, x1) = block_info[None]["array-location"]
    t, y, x = np.meshgrid(np.arange(t0, t1), np.arange(y0, y1), np.arange(x0, x1),
                          indexing="ij")
    k = band + 1
    v = 0.15 + 0.1 * np.sin(x / (7.0 + k) + t) * np.cos(y / (11.0 - k)) + 0.05 * (
        ((x // 16 + y // 16 + band + seed) % 3) == 0)
    noise = np.sin((x * 12.9898 + y * 78.233 + t * 37.719 + seed * 11.0 + band) * 1.7) * 0.02
    return (v + noise).astype(np.float32)


def cube(ny: int = 96, nx: int = 128, times: int = 2, *, seed: int = 0,
         chunks: int | tuple[int, int] = 64, bands: tuple[str, ...] = BANDS) -> xr.Dataset:
    """A lazy (time, y, x) Dataset of ``bands``; data generated per chunk on the workers."""
    gb = geobox(ny, nx)
    cy, cx = (chunks, chunks) if isinstance(chunks, int) else chunks
    tchunks = ((1,) * times, _split(ny, cy), _split(nx, cx))
    data = {b: (("time", "y", "x"), da.map_blocks(
        _field, seed=seed, band=i, chunks=tchunks, dtype=np.float32,
        name=f"scene-{b}-{seed}-{ny}-{nx}-{times}-{cy}-{cx}"))
        for i, b in enumerate(bands)}
    t = np.array([f"{2019 + i}-06-01" for i in range(times)], dtype="datetime64[ns]")
    return xr.Dataset(data, coords={**xr_coords(gb), "time": t})


def _split(n: int, c: int) -> tuple[int, ...]:
    return (c,) * (n // c) + ((n % c,) if n % c else ())


def unet_weights(path: Path, *, bands: tuple[str, ...] = BANDS, width: int = 4,
                 depth: int = 2, seed: int = 0) -> Path:
    """A randomly initialised tiny U-Net saved with its spec; its head scaled so that the
    probabilities spread over (0, 1) and seams would show."""
    import torch

    from eocube.models import InputSpec, ModelSpec, build_model, save_model

    torch.manual_seed(seed)
    spec = ModelSpec(name="tiny_unet", architecture="unet",
                     kwargs={"in_channels": len(bands), "width": width, "depth": depth},
                     inputs=(InputSpec("s2", bands, (0.15,) * len(bands),
                                       (0.03,) * len(bands)),),
                     task="segmentation", patch_size=32, outputs=("builtup",))
    m = build_model(spec)
    with torch.no_grad():
        m.head.weight.mul_(40.0)
    return save_model(m, spec, path)


def change_weights(path: Path, *, bands: tuple[str, ...] = BANDS, seed: int = 1) -> Path:
    """A tiny Siam-Diff Dual-Task change model (inputs t1, t2)."""
    import torch

    from eocube.models import InputSpec, ModelSpec, build_model, save_model

    torch.manual_seed(seed)
    inp = InputSpec("t1", bands, (0.15,) * len(bands), (0.08,) * len(bands))
    spec = ModelSpec(name="tiny_change", architecture="siam_diff_dual_task",
                     kwargs={"in_channels": len(bands), "width": 4, "depth": 2, "aspp": False},
                     inputs=(inp, InputSpec("t2", bands, inp.mean, inp.std)), task="change",
                     patch_size=32, outputs=("new_builtup",))
    return save_model(build_model(spec), spec, path)


def dual_weights(path: Path, *, seed: int = 2) -> Path:
    """A tiny Dual-Stream U-Net over S1 (vv, vh) and S2 bands."""
    import torch

    from eocube.models import InputSpec, ModelSpec, build_model, save_model

    torch.manual_seed(seed)
    spec = ModelSpec(name="tiny_fusion", architecture="dual_stream_unet",
                     kwargs={"sar_channels": 2, "optical_channels": 3, "width": 4, "depth": 2},
                     inputs=(InputSpec("s1", S1, (0.1, 0.02), (0.1, 0.02)),
                             InputSpec("s2", BANDS, (0.15,) * 3, (0.08,) * 3)),
                     task="segmentation", patch_size=32, outputs=("builtup",))
    return save_model(build_model(spec), spec, path)
