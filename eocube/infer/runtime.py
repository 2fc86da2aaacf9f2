"""What runs inside a worker: the weights reference a task carries, the per-process model cache
(one model per weights and device, built on first use and checked against its sha256) and the
batched forward pass with optional pinned-memory transfers and bf16 autocast.

Torch is imported on first use, never at module import: graphs can be built on a client
without torch.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from eocube.counters import count
from eocube.errors import ModelSpecError
from eocube.io.paths import file_sha256
from eocube.models.io import LoadedModel, available_weights, read_spec, weights_path
from eocube.models.spec import ModelSpec

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

__all__ = ["RunOptions", "WeightsRef", "clear_cache", "get_model"]


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


@dataclasses.dataclass(frozen=True)
class WeightsRef:
    """A small, picklable pointer to a weights file: what a dask task carries instead of a model.

    Attributes
    ----------
    path
        Absolute path of the ``.safetensors`` file, as the workers see it.
    sha256
        The file's sha256; a worker refuses a file whose hash differs.
    name
        The shipped-weights name, if any: a worker that cannot see ``path`` falls back to its
        own copy of the shipped file (still checked against ``sha256``).
    """

    path: str
    sha256: str
    name: str | None = None

    @classmethod
    def of(cls, weights: str | Path | WeightsRef, /) -> WeightsRef:
        """The reference of a shipped name or a file path (hashes the file once per version)."""
        if isinstance(weights, WeightsRef):
            return weights
        p = weights_path(weights).resolve()
        st = p.stat()
        key = (str(p), st.st_mtime_ns, st.st_size)
        if key not in _SHA_CACHE:
            _SHA_CACHE[key] = file_sha256(p)
        name = str(weights) if str(weights) in available_weights() else None
        return cls(str(p), _SHA_CACHE[key], name)

    def spec(self) -> ModelSpec:
        """The ModelSpec stored in the file (reads the header only, no torch)."""
        return read_spec(self.resolve())

    def resolve(self) -> Path:
        """The file to read on this machine."""
        p = Path(self.path)
        if not p.is_file() and self.name is not None:
            p = weights_path(self.name)
        if not p.is_file():
            raise ModelSpecError(f"weights file {self.path!r} (sha256 {self.sha256[:12]}…) is not "
                                 "visible on this worker; put it on storage every worker "
                                 "mounts, or use shipped weights by name")
        return p


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """Per-run settings a task carries (all small and hashable, so graph keys are stable)."""

    heads: tuple[str, ...] = ("out",)
    channels: tuple[int, ...] = (1,)
    batch_size: int | None = None  # None: by the device, see ``batch_size``
    device: str = "auto"
    amp: bool = False
    threads: int | None = None


#: Pixels per forward pass when the batch size is left to the device: one tile (384²–512²) on a CPU,
#: where larger batches run slower per pixel once a batch's activations outgrow the caches
#: (``benchmarks/infer.py`` prints the sweep); a GPU wants large batches.
BATCH_PIXELS = {"cpu": 2**17, "cuda": 2**22}


def batch_size(opts: RunOptions, tile_pixels: int, /) -> int:
    """Tiles per forward pass: ``opts.batch_size``, or when it is None as many tiles of
    ``tile_pixels`` as fit :data:`BATCH_PIXELS` of the device this process resolves (≥ 1)."""
    if opts.batch_size is not None:
        return max(1, int(opts.batch_size))
    from eocube.models.device import resolve_device

    budget = BATCH_PIXELS.get(resolve_device(opts.device).type, BATCH_PIXELS["cpu"])
    return max(1, budget // max(1, int(tile_pixels)))


# ---- the per-process cache ----------------------------------------------------------------

_LOCK = threading.Lock()
_MODELS: dict[tuple[str, str], LoadedModel] = {}
def clear_cache() -> None:
    """Forget the models this process has built (they are rebuilt on next use)."""
    with _LOCK:
        _MODELS.clear()


def get_model(ref: WeightsRef, /, *, device: str = "auto", threads: int | None = None
              ) -> tuple[LoadedModel, torch.device]:
    """The model of ``ref`` (module and spec) on ``device`` and that device, built once per
    process and then reused, prepared for inference
    (:func:`~eocube.models.device.for_inference`: BatchNorm folded into the convolutions,
    channels-last on a CPU). The first CPU model of a process also tunes
    glibc's allocator for repeated forward passes (:func:`tune_malloc`).

    ``device="auto"`` resolves on the worker (its GPU under dask-cuda, else the CPU).
    ``threads`` sets torch's intra-op threads of this process when the model is first built.

    Raises
    ------
    ModelSpecError
        If the file's sha256 is not ``ref.sha256`` (the weights changed after the graph was
        built).
    """
    from eocube.models.device import for_inference, resolve_device
    from eocube.models.io import load_model

    dev = resolve_device(device)
    key = (ref.sha256, str(dev))
    hit = _MODELS.get(key)
    if hit is not None:
        return hit, dev
    with _LOCK:
        hit = _MODELS.get(key)
        if hit is None:
            p = ref.resolve()
            sha = file_sha256(p)
            if sha != ref.sha256:
                raise ModelSpecError(
                    f"weights file {str(p)!r} has sha256 {sha[:12]}… but the graph was built "
                    f"for {ref.sha256[:12]}…; the file changed since predict() was called. "
                    "Rebuild the prediction from the current file")
            if threads:
                import torch

                torch.set_num_threads(int(threads))
            model, spec = load_model(p, device=dev)
            if dev.type == "cpu":
                tune_malloc()
            hit = _MODELS[key] = LoadedModel(for_inference(model), spec)
            count("models_built")
    return hit, dev


#: glibc ``mallopt`` parameters (malloc.h) and the values :func:`tune_malloc` sets
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MALLOC_MMAP_THRESHOLD = 32 << 20  # glibc's default maximum: buffers up to 32 MiB from the heap
MALLOC_TRIM_THRESHOLD = 256 << 20  # free heap kept for the next forward pass before release


@functools.cache
def tune_malloc() -> bool:
    """Keep a CPU forward pass's buffers in the heap between passes (glibc only; once per
    process; ``EOCUBE_TUNE_MALLOC=0`` turns it off). Returns whether the settings are on.

    glibc serves buffers above its mmap threshold with fresh ``mmap`` s and returns free heap
    above its trim threshold to the OS. A U-Net's activations (≈ 10–17 MB each on a 384²–512² tile)
    sit right at those limits, and between forward passes predict's own arrays (the chunk, its
    canvas) shift the heap, so each pass could page-fault its ~100 MB of buffers back in:
    tiles inside predict ran 15–50 % slower than the same forward in a loop
    (``benchmarks/infer.py``). Raising the mmap threshold to 32 MiB and the trim threshold to
    256 MiB keeps them; the cost is that up to 256 MiB of freed heap stays with the process.
    A 64 MiB threshold (a 512² tile's 34 MB decoder buffers in the heap too) changed neither
    the forwards' time inside predict nor a pipeline worker's peak memory once predict
    stopped concatenating each chunk's region, so glibc's default maximum stays.
    """
    if not sys.platform.startswith("linux") or os.environ.get("EOCUBE_TUNE_MALLOC") == "0":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD)
                    and libc.mallopt(_M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD))
    except (OSError, AttributeError):  # not glibc (musl, …): leave the allocator alone
        return False


def _to_device(model: nn.Module, a: np.ndarray, dev: torch.device) -> torch.Tensor:
    import torch

    from eocube.models.device import as_input

    a = np.asarray(a, dtype=np.float32)
    if not (a.ndim == 4 and getattr(model, "eocube_channels_last", False)):
        a = np.ascontiguousarray(a)
    # a channels-last view (predict's batches) goes in as it is: as_input then has nothing
    # to copy
    t = torch.from_numpy(a)
    if dev.type == "cuda":
        # page-locked host memory lets the copy run asynchronously with the previous batch
        t = t.pin_memory().to(dev, non_blocking=True)
    return as_input(model, t)


def forward(ref: WeightsRef, opts: RunOptions, inputs: Sequence[np.ndarray], /
            ) -> list[np.ndarray]:
    """Run the cached model on one batch of normalised tiles, one array per model input.

    Returns one float32 array (B, C, H, W) per head of ``opts.heads``: probabilities (sigmoid)
    for segmentation and change, values in the spec's units for regression.
    """
    import torch

    from eocube.models.apply import autocast, head_output

    (model, spec), dev = get_model(ref, device=opts.device, threads=opts.threads)
    if opts.threads and dev.type == "cpu" and torch.get_num_threads() != opts.threads:
        # a CPU forward's float rounding depends on its intra-op thread count (dilated and
        # channels-last kernels split their sums by thread): a fixed count gives the same
        # bits on every scheduler and worker
        torch.set_num_threads(int(opts.threads))
    with torch.inference_mode(), autocast(dev, opts.amp):
        out = model(*[_to_device(model, a, dev) for a in inputs])
    res = []
    for head, c in zip(opts.heads, opts.channels, strict=True):
        if head not in out:
            raise ModelSpecError(f"model {spec.name!r} has no output head {head!r}; its heads "
                                 f"are {sorted(out)}")
        v = out[head]
        if v.ndim != 4 or v.shape[1] != c:
            raise ModelSpecError(f"model {spec.name!r} head {head!r} gives shape "
                                 f"{tuple(v.shape)}, expected (B, {c}, H, W): not a dense model")
        res.append(head_output(v, spec))
    count("batches")
    count("tiles", len(inputs[0]))
    return res
