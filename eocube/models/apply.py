"""Running a loaded model on in-memory arrays: normalisation from the spec, optional AMP, and
outputs mapped back to probabilities or physical units (:func:`forward_arrays`, and over a
large image in tiles :func:`forward_arrays_tiled`). Lazy, blended inference over dask cubes is
:func:`eocube.infer.predict`; its workers use :func:`head_output` per batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Literal

import numpy as np
import torch

from eocube.errors import ModelSpecError
from eocube.models.device import resolve_device
from eocube.models.io import LoadedModel
from eocube.models.spec import InputSpec, ModelSpec, normalize

__all__ = ["autocast", "forward_arrays", "forward_arrays_tiled", "head_output",
           "inverse_target", "smearing_factor", "to_tensor"]


def to_tensor(x: np.ndarray, spec: ModelSpec | InputSpec, /, *, input: str | None = None,
              device: torch.device | str = "cpu") -> torch.Tensor:
    """Normalise a raw array for the model's input ``input`` (the only input when left out);
    NaN becomes 0 (the band's mean).

    Images are (C, H, W) or (B, C, H, W); series (``resolution_m == 0``) are (C, T) or
    (B, C, T).
    """
    inp = spec if isinstance(spec, InputSpec) else _one_input(spec, input)
    a = np.asarray(x)
    batched = a.ndim == (3 if inp.resolution_m == 0 else 4)
    z = normalize(a, inp, axis=1 if batched else 0, fill=0.0)
    t = torch.from_numpy(np.ascontiguousarray(z))
    return (t if batched else t[None]).to(device)


@contextlib.contextmanager
def autocast(device: torch.device, enabled: bool) -> Iterator[None]:
    """bf16 autocast on ``device`` when ``enabled`` (CUDA or CPU), a no-op otherwise."""
    if not enabled:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
        yield


def _one_input(spec: ModelSpec, input: str | None) -> InputSpec:
    if input is not None:
        return spec.input(input)
    if len(spec.inputs) != 1:
        raise ModelSpecError(f"model {spec.name!r} has inputs {[i.name for i in spec.inputs]};"
                             " say which one with input=…")
    return spec.inputs[0]


def forward_arrays(inputs: Mapping[str, np.ndarray], model: LoadedModel, /, *,
                   device: str | torch.device = "auto", amp: bool = False
                   ) -> dict[str, np.ndarray]:
    """Run ``model`` (module and spec, as :func:`~eocube.models.load_model` gives them) on raw
    in-memory arrays keyed by the spec's input names. Eager.

    Maps come back as probabilities (sigmoid of the logits) per output head, squeezed to
    (B, H, W) or (H, W) for an unbatched input; a regression output is mapped back through the
    spec's target transform to its units. For lazy cubes use :func:`eocube.infer.predict`.

    Examples
    --------
    >>> import numpy as np
    >>> from eocube.models import forward_arrays, load_model
    >>> model = load_model("urban_s2", device="cpu")
    >>> x = np.full((6, 64, 64), 0.1, dtype="float32")   # B02 … B12 reflectance
    >>> forward_arrays({"s2": x}, model, device="cpu")["out"].shape
    (64, 64)
    """
    module, spec = model
    missing = [i.name for i in spec.inputs if i.name not in inputs]
    if missing:
        raise ModelSpecError(f"model {spec.name!r} needs inputs {[i.name for i in spec.inputs]};"
                             f" missing {missing}")
    dev = resolve_device(device)
    module = module.to(dev).eval()
    first = np.asarray(inputs[spec.inputs[0].name])
    batched = first.ndim == (3 if spec.inputs[0].resolution_m == 0 else 4)
    args = [to_tensor(inputs[i.name], i, device=dev) for i in spec.inputs]
    with torch.no_grad(), autocast(dev, amp):
        out = module(*args)
    res: dict[str, np.ndarray] = {}
    for k, v in out.items():
        o = head_output(v, spec)
        if spec.task == "regression":
            res[k] = o
            continue
        res[k] = o[:, 0] if batched else o[0, 0]
    return res


def head_output(v: torch.Tensor, spec: ModelSpec, /) -> np.ndarray:
    """A head's raw output as a float32 array: probabilities (sigmoid of the logits), or for
    a regression the values in ``spec.units`` (:func:`inverse_target`)."""
    v = v.float()
    if spec.task == "regression":
        return inverse_target(v.cpu().numpy(), spec).astype(np.float32, copy=False)
    return torch.sigmoid(v).cpu().numpy()


def inverse_target(z: np.ndarray, spec: ModelSpec, /) -> np.ndarray:
    """Map the network's regression output back to ``spec.units``.

    A ``log1p`` target is back-transformed with a smearing factor (Duan 1983): the network
    fits g(x) = E[log(1 + y) | x], and exp(g) alone is biased low for the mean whenever the
    residuals spread. With the factor ``S`` measured on the training cells and stored as
    ``target_transform["smearing"]`` (see :func:`smearing_factor`) the estimate is
    ``S · exp(g) − 1``. Specs without the key use S = 1 (the plain ``expm1``).
    """
    tt = spec.target_transform
    if not tt:
        return z
    y = z * float(tt["std"]) + float(tt["mean"])
    if tt.get("transform") == "log1p":
        # S·exp(g) − 1 written as expm1(g + log S): exact expm1 when S = 1
        y = np.expm1(y + np.log(float(tt.get("smearing", 1.0))))
    return np.maximum(y, 0.0) if tt.get("nonnegative", True) else y


def smearing_factor(inputs: Mapping[str, np.ndarray], y: np.ndarray, model: LoadedModel, /, *,
                    method: Literal["ratio", "duan"] = "ratio",
                    device: str | torch.device = "auto", batch_size: int = 512) -> float:
    """The retransformation (smearing) factor of a ``log1p`` regression on its training data.

    With g(x) the network's output in log1p space and e = log1p(y) − g the residuals of the
    rows of ``inputs`` (raw batched arrays keyed by the spec's input names) against their
    truth ``y`` (in ``spec.units``):

    - ``"duan"``: Duan (1983), ``S = mean(exp(e))``. Unbiased when the residuals are
      independent of g; a few cells with a large stock that the network calls near-empty
      dominate it otherwise (on the synthetic city 10 of 2,048 training cells carry two
      thirds of it and it over-estimates the training total six-fold).
    - ``"ratio"`` (default): the smearing weighted by the fitted values,
      ``S = Σ exp(g + e) / Σ exp(g) = Σ (1 + y) / Σ exp(g)``. The same estimate as Duan's
      when e is independent of g, and by construction it gives back the training total.

    Compute it on the *training* cells only; store it as ``target_transform["smearing"]`` and
    :func:`inverse_target` applies it.

    Raises
    ------
    ModelSpecError
        If the spec's target is not ``log1p``-transformed, the rows do not line up or the
        method is unknown.
    """
    module, spec = model
    tt = spec.target_transform
    if spec.task != "regression" or tt.get("transform") != "log1p":
        raise ModelSpecError(f"model {spec.name!r}: a smearing factor needs a regression on a "
                             f"log1p target; its target transform is {dict(tt)}")
    if method not in ("ratio", "duan"):
        raise ModelSpecError(f"unknown smearing method {method!r}; use 'ratio' or 'duan'")
    y = np.asarray(y, dtype="float64").reshape(-1)
    n = len(np.asarray(inputs[spec.inputs[0].name]))
    if len(y) != n:
        raise ModelSpecError(f"{n} input rows but {len(y)} truth values; give one per row")
    dev = resolve_device(device)
    module = module.to(dev).eval()
    g = []
    with torch.no_grad():
        for i in range(0, n, batch_size):
            args = [to_tensor(np.asarray(inputs[s.name])[i:i + batch_size], s, device=dev)
                    for s in spec.inputs]
            g.append(module(*args)["out"].float().cpu().numpy().reshape(-1))
    log_pred = np.concatenate(g).astype("float64") * float(tt["std"]) + float(tt["mean"])
    if method == "duan":
        return float(np.mean(np.exp(np.log1p(y) - log_pred)))
    return float(np.sum(1.0 + y) / np.sum(np.exp(log_pred)))


def forward_arrays_tiled(inputs: Mapping[str, np.ndarray], model: LoadedModel, /, *,
                         tile: int = 512, overlap: int = 32,
                         device: str | torch.device = "auto", amp: bool = False
                         ) -> dict[str, np.ndarray]:
    """:func:`forward_arrays` over a large in-memory (C, H, W) image in overlapping tiles,
    keeping each tile's centre (``overlap`` pixels of context on every side, about the
    receptive field). Eager.

    A simple in-memory loop for evaluation; :func:`eocube.infer.predict` runs lazily over dask
    cubes, blending the tiles instead of cropping them.
    """
    spec = model[1]
    first = np.asarray(inputs[spec.inputs[0].name])
    h, w = first.shape[-2:]
    step = tile - 2 * overlap
    if step <= 0:
        raise ModelSpecError(f"tile={tile} must exceed 2 × overlap={overlap}")
    out: dict[str, np.ndarray] = {}
    for y0 in range(0, h, step):
        for x0 in range(0, w, step):
            ya, xa = max(y0 - overlap, 0), max(x0 - overlap, 0)
            yb, xb = min(y0 + step + overlap, h), min(x0 + step + overlap, w)
            win = {k: np.asarray(v)[..., ya:yb, xa:xb] for k, v in inputs.items()}
            res = forward_arrays(win, model, device=device, amp=amp)
            for k, v in res.items():
                dst = out.setdefault(k, np.zeros((h, w), dtype="float32"))
                ye, xe = min(y0 + step, h), min(x0 + step, w)
                dst[y0:ye, x0:xe] = v[y0 - ya:ye - ya, x0 - xa:xe - xa]
    return out
