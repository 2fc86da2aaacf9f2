"""Tiled inference speed: ``eocube.infer.predict`` against the bare model forward over the same
pixels, in one process; scaling from 1 to 2 LocalCluster workers; on a CUDA machine, km²/s at
10 m with and without bf16 AMP against the GPU's bare forward.

The model is a U-Net of the shipped size (width 16, depth 3, 4 bands, random weights: speed
does not depend on training). The image side is ``k × (tile − overlap) + overlap`` so the
global tile grid fits it exactly (no shifted last tile). "Bare" runs the model on batches of
non-overlapping tiles that cover the same pixels once, with no dask, no tiling, no blending.
The overhead of predict is split into the overlap itself (tiles share ``overlap`` pixels, so
the model sees (tile / stride)² more pixels) and the rest (tiling, blending, dask).

    .venv/bin/python benchmarks/infer.py [--quick] [--k 4] [--tile 256] [--overlap 32]
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from eocube.infer import predict, start_client  # noqa: E402
from eocube.models import InputSpec, ModelSpec, build_model, save_model  # noqa: E402
from tests.infer import scene  # noqa: E402

BANDS = ("B02", "B03", "B04", "B08")


def weights(path: Path) -> Path:
    torch.manual_seed(0)
    spec = ModelSpec(name="bench_unet", architecture="unet",
                     kwargs={"in_channels": 4, "width": 16, "depth": 3},
                     inputs=(InputSpec("s2", BANDS, (0.15,) * 4, (0.05,) * 4),),
                     task="segmentation", patch_size=128, outputs=("builtup",))
    return save_model(build_model(spec), spec, path)


def bare(model, n: int, k: int, dev: torch.device, amp: bool, batch: int) -> float:
    """Seconds of the model alone over n² pixels as k² non-overlapping tiles."""
    from eocube.models.apply import autocast

    side = n // k
    x = torch.randn(k * k, 4, side, side)
    t0 = time.perf_counter()
    with torch.inference_mode(), autocast(dev, amp):
        for s in range(0, k * k, batch):
            torch.sigmoid(model(x[s:s + batch].to(dev))["out"].float()).cpu()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def best(f, repeat: int) -> float:
    return min(f() for _ in range(repeat))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="k=3, one repeat")
    ap.add_argument("--k", type=int, default=8,
                    help="tiles per side (4 chunks: more tiles balance them)")
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--overlap", type=int, default=32)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--gpu-k", type=int, default=16, help="tiles per side on GPU")
    a = ap.parse_args()
    k, repeat = (3, 1) if a.quick else (a.k, 2)
    stride = a.tile - a.overlap
    n = k * stride + a.overlap
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="eocube-bench-infer-"))
    w = weights(tmp / "bench.safetensors")
    from eocube.models import load_model

    model, _ = load_model(w, device="cpu")
    cpu = torch.device("cpu")
    print(f"image {n}×{n} px, tile {a.tile}, overlap {a.overlap}, {k * k} tiles, "
          f"batch {a.batch}, torch threads 1, {os.cpu_count()} cores (shared)")
    # bare: same pixels once, as k² non-overlapping tiles of n/k
    t_bare = best(lambda: bare(model, n, k, cpu, False, a.batch), repeat)
    # the same k² tiles predict runs (tile² each): what the overlap alone costs
    t_tiles = best(lambda: bare(model, a.tile * k, k, cpu, False, a.batch), repeat)
    # the synthetic scene is generated once and held in memory: its cost is not predict's
    cube = scene.cube(n, n, 1, chunks=n // 2, bands=BANDS).persist(scheduler="sync")
    kw = dict(tile=a.tile, overlap=a.overlap, device="cpu", batch_size=a.batch, threads=1)
    predict(scene.cube(64, 64, 1, bands=BANDS), w, **kw).compute(scheduler="sync")  # warm
    t_pred = best(lambda: _timed(lambda: predict(cube, w, **kw).compute(scheduler="sync")),
                  repeat)
    px = n * n
    print(f"{'':34s}{'seconds':>9s}{'Mpx/s':>9s}{'× bare':>8s}")
    for name, t in (("bare forward, same pixels", t_bare),
                    ("bare forward, predict's tiles", t_tiles),
                    ("predict, 1 process (sync)", t_pred)):
        print(f"{name:34s}{t:9.2f}{px / t / 1e6:9.3f}{t / t_bare:8.2f}")
    print(f"  overlap cost {t_tiles / t_bare - 1:+.0%}; tiling+blending+dask "
          f"{t_pred / t_tiles - 1:+.0%}; total {t_pred / t_bare - 1:+.0%} (target ≤ +20 %)")
    times = {}
    for nw in (1, 2):
        with start_client("local", n_workers=nw, threads_per_worker=1, torch_threads=1,
                          preload=w, device="cpu") as client:
            client.compute(predict(scene.cube(64, 64, 1, bands=BANDS), w, **kw)).result()
            held = client.persist(scene.cube(n, n, 1, chunks=n // 2, bands=BANDS))
            client.wait_for_workers(nw)
            times[nw] = best(lambda: _timed(
                lambda: client.compute(predict(held, w, **kw)).result()), repeat)  # noqa: B023
        print(f"predict, LocalCluster {nw} worker(s) {times[nw]:9.2f}{px / times[nw] / 1e6:9.3f}"
              f"{times[nw] / t_bare:8.2f}")
    print(f"  scaling 1 → 2 workers: {times[1] / times[2]:.2f}× (2 cores shared with others)")
    if torch.cuda.is_available():
        gpu(w, a)


def gpu(w: Path, a: argparse.Namespace) -> None:
    from eocube.models import load_model

    k = a.gpu_k
    n = k * (a.tile - a.overlap) + a.overlap
    dev = torch.device("cuda")
    model, _ = load_model(w, device=dev)
    cube = scene.cube(n, n, 1, chunks=n // 2, bands=BANDS).persist()
    km2 = n * n * 100 / 1e6  # 10 m pixels
    print(f"GPU {torch.cuda.get_device_name()}: {n}×{n} px = {km2:.1f} km² at 10 m")
    for amp in (False, True):
        bare(model, n, k, dev, amp, 16)
        tb = best(lambda: bare(model, n, k, dev, amp, 16), 2)  # noqa: B023
        kw = dict(tile=a.tile, overlap=a.overlap, device="cuda", batch_size=16, amp=amp)
        predict(cube, w, **kw).compute(scheduler="threads", num_workers=2)
        tp = best(lambda: _timed(lambda: predict(cube, w, **kw).compute(  # noqa: B023
            scheduler="threads", num_workers=2)), 2)
        print(f"  {'bf16 AMP' if amp else 'fp32':8s} bare {km2 / tb:8.1f} km²/s   predict "
              f"{km2 / tp:8.1f} km²/s   ({tp / tb:.2f}× bare)")


def _timed(f) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
