"""Tiled inference speed: ``eocube.infer.predict`` against the bare model forward over the same
pixels, in one process; scaling from 1 to 2 LocalCluster workers; on a CUDA machine, km²/s at
10 m with and without bf16 AMP against the GPU's bare forward.

The model is a U-Net (width 16, depth 3, 4 bands, random weights and BatchNorm statistics:
speed does not depend on training). "Bare" runs the model alone on batches of random tiles —
no dask, no tiling, no blending, no overlap — over the image's pixels once, in predict's tile
side and batch. Two bare references:

* the model as ``eocube.models.load_model`` returns it (what a user runs by hand: the target's
  reference, tiling + blending + dask overhead ≤ 20 %);
* the same model prepared as predict's workers run it (``for_inference``: BatchNorm folded,
  channels-last on a CPU), which isolates what tiling costs: mostly the overlap itself, since
  tiles share ``overlap`` pixels and the model sees (tile / stride)² more pixels.

All run interleaved; best-of and the median of paired repeats are printed. On a CPU the bare
speed depends on the tile side and batch (large tiles and batches run slower per pixel), so the
prepared model is also swept, to show how far predict's defaults (tile, overlap, batch by
device) are from the fastest configuration. The image side is ``k × (tile − overlap) +
overlap`` so the global tile grid fits it exactly.

    .venv/bin/python benchmarks/infer.py [--quick] [--k 6] [--tile 512] [--overlap 24]
                                         [--blend trim]
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from eocube.infer import predict, start_client  # noqa: E402
from eocube.models import (  # noqa: E402
    InputSpec,
    ModelSpec,
    as_input,
    build_model,
    for_inference,
    save_model,
)
from eocube.testing import scenes as scene  # noqa: E402

BANDS = ("B02", "B03", "B04", "B08")


def weights(path: Path) -> Path:
    torch.manual_seed(0)
    spec = ModelSpec(name="bench_unet", architecture="unet",
                     kwargs={"in_channels": 4, "width": 16, "depth": 3},
                     inputs=(InputSpec("s2", BANDS, (0.15,) * 4, (0.05,) * 4),),
                     task="segmentation", patch_size=128, outputs=("builtup",))
    model = build_model(spec)
    with torch.no_grad():  # BatchNorm statistics as a trained model has them, not 0 / 1
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return save_model(model, spec, path)


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


def sweep(model, sides: list[int], batches: list[int], px: int, repeat: int
          ) -> dict[tuple[int, int], float]:
    """Bare forward speed (pixels/s) per (tile side, batch), each over about ``px`` pixels."""
    cpu = torch.device("cpu")
    out = {}
    for side in sides:
        for b in batches:
            n_tiles = max(b, round(px / side ** 2 / b) * b)
            t = best(lambda: _bare_tiles(model, side, n_tiles, b, cpu), repeat)  # noqa: B023
            out[(side, b)] = n_tiles * side * side / t
    return out


def _bare_tiles(model, side: int, n: int, batch: int, dev: torch.device) -> float:
    """Seconds of the model alone over ``n`` random tiles of ``side``, ``batch`` at a time.

    The batches cycle through a few distinct inputs (tens of MB, more than the caches hold):
    a forward over an image never sees the same pixels twice, and one reused input would stay
    in the caches and flatter the reference."""
    pool = [as_input(model, torch.randn(batch, 4, side, side))
            for _ in range(min(-(-n // batch), max(2, 2**23 // (batch * side * side))))]
    t0 = time.perf_counter()
    with torch.inference_mode():
        for i, s in enumerate(range(0, n, batch)):
            x = pool[i % len(pool)]
            torch.sigmoid(model(x[:min(batch, n - s)])["out"].float()).cpu()
    return time.perf_counter() - t0


def best(f, repeat: int) -> float:
    return min(f() for _ in range(repeat))


def prepared_speedups(side: int, tiles: int, repeat: int) -> dict[str, tuple[float, float]]:
    """Seconds per tile of each shipped dense model as ``load_model`` returns it and prepared
    as the workers run it (``for_inference``), on ``tiles`` random tiles of ``side`` px, one
    at a time, one thread; interleaved repeats, best of each."""
    from eocube.infer.predict import HEADS
    from eocube.models import available_weights, load_model

    out = {}
    for name in available_weights():
        plain, spec = load_model(name, device="cpu")
        if spec.architecture not in HEADS:
            continue
        prep = for_inference(plain)
        g = torch.Generator().manual_seed(0)
        xs = [[torch.randn(1, len(i.bands), side, side, generator=g) for i in spec.inputs]
              for _ in range(tiles)]

        def run(m, xs=xs) -> float:
            t0 = time.perf_counter()
            with torch.inference_mode():
                for x in xs:
                    m(*[as_input(m, v) for v in x])
            return (time.perf_counter() - t0) / len(xs)

        run(plain), run(prep)  # warm: oneDNN picks its kernels on the first pass
        t = {"plain": [], "prep": []}
        for _ in range(repeat):
            t["plain"].append(run(plain))
            t["prep"].append(run(prep))
        out[name] = (min(t["plain"]), min(t["prep"]))
    return out


def main() -> None:
    from eocube.infer.runtime import BATCH_PIXELS, tune_malloc
    from eocube.infer.tiling import BLENDS, DEFAULT_BLEND, DEFAULT_OVERLAP, DEFAULT_TILE

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="k=3, one repeat, a small sweep")
    ap.add_argument("--k", type=int, default=6,
                    help="tiles per side (4 chunks: more tiles balance them)")
    ap.add_argument("--tile", type=int, default=DEFAULT_TILE)
    ap.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP)
    ap.add_argument("--blend", default=DEFAULT_BLEND, choices=list(BLENDS))
    ap.add_argument("--batch", type=int, default=None, help="default: by device")
    ap.add_argument("--gpu-k", type=int, default=16, help="tiles per side on GPU")
    ap.add_argument("--repeats", type=int, default=5, help="interleaved repeats (CPU)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["sweep", "prepared", "cluster"],
                    help="parts left out (on a busy machine)")
    a = ap.parse_args()
    k, repeat = (3, 1) if a.quick else (a.k, 2)
    stride = a.tile - a.overlap
    n = k * stride + a.overlap
    batch = a.batch or max(1, BATCH_PIXELS["cpu"] // a.tile ** 2)
    torch.set_num_threads(1)
    # predict's workers tune glibc's allocator when they build a CPU model; every forward
    # here (sweep, references, predict) runs under the same settings
    tuned = tune_malloc()
    tmp = Path(tempfile.mkdtemp(prefix="eocube-bench-infer-"))
    w = weights(tmp / "bench.safetensors")
    from eocube.models import load_model

    plain, _ = load_model(w, device="cpu")
    model = for_inference(plain)
    print(f"image {n}×{n} px, tile {a.tile}, overlap {a.overlap} ({a.blend}), {k * k} tiles, "
          f"batch {batch}{'' if a.batch else ' (by device)'}, torch threads 1, "
          f"{os.cpu_count()} cores (shared), glibc malloc tuned: {tuned}")
    px = n * n
    if "sweep" not in a.skip:
        sides, batches = (([256, 384], [1, 4]) if a.quick
                          else ([256, 320, 384, 512], [1, 2, 4, 8]))
        speeds = sweep(model, sides, batches, 2**21 if a.quick else 2**22, repeat)
        print("bare forward (prepared), Mpx/s by tile side (rows) and batch (columns):")
        print("      " + "".join(f"{b:>8d}" for b in batches))
        for side in sides:
            print(f"{side:6d}" + "".join(f"{speeds[(side, b)] / 1e6:8.3f}" for b in batches))
        (bs, bb), top = max(speeds.items(), key=lambda kv: kv[1])
    cpu = torch.device("cpu")
    # the same pixels once, in predict's tile side and batch without overlap (the reference);
    # the k² overlapping tiles predict runs (what the overlap alone costs); predict itself.
    # Interleaved, so each repeat gives paired ratios the machine's drift affects least
    n_same = -(-px // a.tile ** 2)
    cube = scene.cube(n, n, 1, chunks=n // 2, bands=BANDS).persist(scheduler="sync")
    kw = dict(tile=a.tile, overlap=a.overlap, blend=a.blend, device="cpu", batch_size=a.batch,
              threads=1)
    predict(scene.cube(64, 64, 1, bands=BANDS), w, **kw).compute(scheduler="sync")  # warm
    runs: dict[str, list[float]] = {"plain": [], "same": [], "tiles": [], "pred": [],
                                    "model": []}
    inside = _ForwardClock()  # predict's time inside the model's forward, per run
    for _ in range(1 if a.quick else a.repeats):
        runs["plain"].append(_bare_tiles(plain, a.tile, n_same, batch, cpu)
                             * px / (n_same * a.tile ** 2))
        runs["same"].append(_bare_tiles(model, a.tile, n_same, batch, cpu)
                            * px / (n_same * a.tile ** 2))
        runs["tiles"].append(_bare_tiles(model, a.tile, k * k, batch, cpu))
        with inside:
            runs["pred"].append(_timed(lambda: predict(cube, w, **kw).compute(
                scheduler="sync")))
        runs["model"].append(inside.seconds)
    t_plain, t_bare, t_tiles, t_pred = (min(runs[c]) for c in ("plain", "same", "tiles", "pred"))

    def paired(ref: str) -> list[float]:
        return [p / b for p, b in zip(runs["pred"], runs[ref], strict=True)]

    for ref, what in (("plain", "load_model's model"), ("same", "prepared model")):
        print(f"per repeat, predict / bare forward of the {what}: "
              + " ".join(f"{r:.2f}" for r in paired(ref)))
    rows = [("bare forward, load_model's model (reference)", t_plain),
            ("bare forward, prepared (for_inference)", t_bare),
            ("bare forward, prepared, predict's overlapping tiles", t_tiles),
            ("predict, 1 process (sync)", t_pred)]
    if "sweep" not in a.skip:
        t_fast = px / top
        rows.insert(2, (f"bare forward, prepared, fastest of the sweep ({bs} px, batch {bb})",
                        t_fast))
    print(f"{'':52s}{'seconds':>9s}{'Mpx/s':>9s}{'× ref':>8s}")
    for name, t in rows:
        print(f"{name:52s}{t:9.2f}{px / t / 1e6:9.3f}{t / t_plain:8.2f}")
    med_plain, med_same = (float(np.median(paired(r))) for r in ("plain", "same"))
    print(f"  predict against the bare forward of load_model's model: {t_pred / t_plain - 1:+.0%}"
          f" best-of, {med_plain - 1:+.0%} median of paired repeats (target ≤ +20 %)")
    outside = [p - m for p, m in zip(runs["pred"], runs["model"], strict=True)]
    print("  predict's time inside the model's forward calls: "
          + " ".join(f"{m:.2f}" for m in runs["model"]) + " s (bare forward over the same "
          "tiles: " + " ".join(f"{t:.2f}" for t in runs["tiles"]) + " s); outside them: "
          + " ".join(f"{o:.2f}" for o in outside) + " s")
    print(f"  against the same prepared model: overlap {t_tiles / t_bare - 1:+.0%} "
          f"({(a.tile / stride) ** 2 - 1:+.0%} pixels), tiling+blending+dask "
          f"{t_pred / t_tiles - 1:+.0%}; total {t_pred / t_bare - 1:+.0%} best-of, "
          f"{med_same - 1:+.0%} median of paired repeats (target ≤ +15 %); preparing the "
          f"model makes it {t_plain / t_bare:.2f}× faster"
          + ("" if "sweep" in a.skip else f"; the fastest sweep entry is "
             f"{t_bare / t_fast - 1:+.0%} faster than predict's tile and batch"))
    if "prepared" not in a.skip:
        sp = prepared_speedups(a.tile, 2 if a.quick else 4, 1 if a.quick else 3)
        print(f"shipped dense models, {a.tile}² tiles one at a time, one thread, best of "
              f"{1 if a.quick else 3}: s/tile as load_model returns it → prepared "
              "(for_inference)")
        for name, (tp, tq) in sp.items():
            print(f"  {name:20s}{tp:8.3f} →{tq:7.3f}   {tp / tq:.2f}× faster")
        r = [tp / tq for tp, tq in sp.values()]
        print(f"  preparing makes the shipped dense models {min(r):.1f}–{max(r):.1f}× faster")
    if "cluster" in a.skip:
        return
    times = {}
    for nw in (1, 2):
        with start_client("local", n_workers=nw, threads_per_worker=1, torch_threads=1,
                          preload=w, device="cpu") as client:
            client.compute(predict(scene.cube(64, 64, 1, bands=BANDS), w, **kw)).result()
            held = client.persist(scene.cube(n, n, 1, chunks=n // 2, bands=BANDS))
            client.wait_for_workers(nw)
            times[nw] = best(lambda: _timed(
                lambda: client.compute(predict(held, w, **kw)).result()), repeat)  # noqa: B023
        print(f"predict, LocalCluster {nw} worker(s){'':6s}{times[nw]:9.2f}"
              f"{px / times[nw] / 1e6:9.3f}{times[nw] / t_plain:8.2f}")
    print(f"  scaling 1 → 2 workers: {times[1] / times[2]:.2f}× (2 cores shared with others)")
    if torch.cuda.is_available():
        gpu(w, a)


def gpu(w: Path, a: argparse.Namespace) -> None:
    from eocube.infer.runtime import BATCH_PIXELS
    from eocube.models import load_model

    k = a.gpu_k
    n = k * (a.tile - a.overlap) + a.overlap
    dev = torch.device("cuda")
    model, _ = load_model(w, device=dev)
    cube = scene.cube(n, n, 1, chunks=n // 2, bands=BANDS).persist()
    km2 = n * n * 100 / 1e6  # 10 m pixels
    print(f"GPU {torch.cuda.get_device_name()}: {n}×{n} px = {km2:.1f} km² at 10 m")
    for amp in (False, True):
        gb = a.batch or max(1, BATCH_PIXELS["cuda"] // a.tile ** 2)
        bare(model, n, k, dev, amp, gb)
        tb = best(lambda: bare(model, n, k, dev, amp, gb), 2)  # noqa: B023
        kw = dict(tile=a.tile, overlap=a.overlap, blend=a.blend, device="cuda",
                  batch_size=a.batch, amp=amp)
        predict(cube, w, **kw).compute(scheduler="threads", num_workers=2)
        tp = best(lambda: _timed(lambda: predict(cube, w, **kw).compute(  # noqa: B023
            scheduler="threads", num_workers=2)), 2)
        print(f"  {'bf16 AMP' if amp else 'fp32':8s} bare {km2 / tb:8.1f} km²/s   predict "
              f"{km2 / tp:8.1f} km²/s   ({tp / tb:.2f}× bare)")


class _ForwardClock:
    """Within ``with``: the seconds predict's tasks spend in the model's forward calls
    (``eocube.infer.blocks.forward``, timed around each call); the rest of predict is
    normalising, cutting, blending and Dask."""

    def __enter__(self) -> _ForwardClock:
        import eocube.infer.blocks as blocks

        self.seconds, self._orig = 0.0, blocks.forward

        def timed(*args):
            t0 = time.perf_counter()
            try:
                return self._orig(*args)
            finally:
                self.seconds += time.perf_counter() - t0

        blocks.forward = timed
        return self

    def __exit__(self, *exc) -> None:
        import eocube.infer.blocks as blocks

        blocks.forward = self._orig


def _timed(f) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
