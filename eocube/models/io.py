"""Weights on disk: safetensors with the ModelSpec as JSON metadata, read without pickle.

A model is rebuilt from a fixed registry of architectures (never from a class path found in a
file), its tensor names, shapes and dtypes are checked against the file's header before any
tensor is read, and the spec's band lists are checked against the layers that consume them.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from eocube.errors import ModelSpecError
from eocube.models.nets import DualStreamUNet, SiamDiffDualTask, StockRegressor, UNet
from eocube.models.spec import (
    METADATA_KEY,
    ModelSpec,
    read_header,
    spec_from_metadata,
    weights_path,
)

#: The only architectures a weights file can name.
ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "unet": UNet,
    "dual_stream_unet": DualStreamUNet,
    "siam_diff_dual_task": SiamDiffDualTask,
    "stock_regressor": StockRegressor,
}

_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
           "I64": torch.int64, "I32": torch.int32, "U8": torch.uint8, "BOOL": torch.bool}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` → CUDA when present, else CPU; anything else as torch reads it."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def build_model(spec: ModelSpec) -> nn.Module:
    """An untrained model of ``spec``'s architecture, checked against the spec's inputs."""
    try:
        cls = ARCHITECTURES[spec.architecture]
    except KeyError:
        raise ModelSpecError(f"unknown architecture {spec.architecture!r} in model "
                             f"{spec.name!r}; known: {sorted(ARCHITECTURES)}") from None
    params = inspect.signature(cls).parameters
    unknown = sorted(set(spec.kwargs) - set(params))
    if unknown:
        raise ModelSpecError(f"model {spec.name!r}: {spec.architecture} takes no arguments "
                             f"{unknown}; it takes {sorted(params)}")
    try:
        model = cls(**dict(spec.kwargs))
    except (TypeError, ValueError) as e:
        raise ModelSpecError(f"model {spec.name!r}: cannot build {spec.architecture} from "
                             f"{dict(spec.kwargs)}: {e}") from None
    channels = model.input_channels()
    if len(channels) != len(spec.inputs):
        raise ModelSpecError(
            f"model {spec.name!r}: {spec.architecture} takes {len(channels)} inputs, the spec "
            f"lists {len(spec.inputs)} ({[i.name for i in spec.inputs]})")
    for inp, n in zip(spec.inputs, channels, strict=True):
        if len(inp.bands) != n:
            raise ModelSpecError(
                f"model {spec.name!r}: input {inp.name!r} has band list {list(inp.bands)} "
                f"({len(inp.bands)} bands) but the network takes {n} channels there; the band "
                "list does not belong to these weights")
    return model


def save_model(model: nn.Module, spec: ModelSpec, path: str | Path, /) -> Path:
    """Write ``model``'s weights and ``spec`` to one safetensors file.

    The model is checked against a fresh build from ``spec`` first, so a file that could not
    be loaded back is never written.
    """
    ref = build_model(spec).state_dict()
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    _check_tensors({k: (tuple(v.shape), v.dtype) for k, v in state.items()}, ref, spec,
                   source="the model")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".tmp")
    save_file(state, str(tmp), metadata={METADATA_KEY: spec.to_json()})
    tmp.replace(p)
    return p


def load_model(path_or_name: str | Path, /, *, device: str | torch.device = "auto"
               ) -> tuple[nn.Module, ModelSpec]:
    """Load weights and their spec; the model comes back in eval mode on ``device``.

    Parameters
    ----------
    path_or_name
        A ``.safetensors`` path, or the name of shipped weights (see
        :func:`available_weights`).
    device
        ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda:1"`` …

    Raises
    ------
    ModelSpecError
        If the file has no spec, names an unknown architecture, or its tensors (names,
        shapes, dtypes) or band lists do not match the architecture.

    Examples
    --------
    >>> from eocube.models import load_model
    >>> model, spec = load_model("urban_fusion", device="cpu")
    >>> [i.name for i in spec.inputs]
    ['s1', 's2']
    """
    p = weights_path(path_or_name)
    header, meta = read_header(p)  # one read of the header: spec and tensor table
    spec = spec_from_metadata(meta, p)
    model = build_model(spec)
    found = {}
    for k, v in header.items():
        dt = _DTYPES.get(v.get("dtype"))
        found[k] = (tuple(v.get("shape", ())), dt)
    _check_tensors(found, model.state_dict(), spec, source=str(p))
    state = load_file(str(p), device="cpu")
    model.load_state_dict(state, strict=True)
    return model.to(resolve_device(device)).eval(), spec


def for_inference(model: nn.Module, /) -> nn.Module:
    """A copy of ``model`` rewritten for fast inference, with the same outputs up to float
    rounding (≈1e-5 in the logits of the shipped models).

    Every ``Conv2d`` directly followed by a ``BatchNorm2d`` in an ``nn.Sequential`` becomes one
    convolution with the normalisation folded into its weights and bias (one pass over the
    activations instead of two), and on a CPU the parameters are laid out channels-last, which
    oneDNN's convolutions run much faster (``benchmarks/infer.py`` measures both). Feed it
    channels-last inputs (:func:`as_input`). The copy is for inference only: it cannot be
    trained or saved as the original architecture.

    Raises
    ------
    ModelSpecError
        If ``model`` is in training mode (its BatchNorm statistics would still change).
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    if model.training:
        raise ModelSpecError("for_inference needs a model in eval mode; call model.eval() "
                             "first (BatchNorm statistics are folded as they stand)")
    out = copy.deepcopy(model)
    for seq in out.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
                    and bn.track_running_stats and bn.running_mean is not None):
                seq[i], seq[i + 1] = fuse_conv_bn_eval(conv, bn), nn.Identity()
    last = _device(out).type == "cpu"  # oneDNN; on CUDA the layout is left as it is (unmeasured)
    if last:
        out = out.to(memory_format=torch.channels_last)
    out.eocube_channels_last = last
    return out


def as_input(model: nn.Module, x: torch.Tensor, /) -> torch.Tensor:
    """``x`` in the memory layout of ``model``'s convolutions: channels-last when
    :func:`for_inference` chose it, else unchanged."""
    if x.ndim == 4 and getattr(model, "eocube_channels_last", False):
        return x.contiguous(memory_format=torch.channels_last)
    return x


def _device(model: nn.Module) -> torch.device:
    """The device of ``model``'s parameters (CPU for a model without any)."""
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _check_tensors(found: dict[str, tuple[tuple[int, ...], Any]],
                   ref: dict[str, torch.Tensor], spec: ModelSpec, *, source: str) -> None:
    missing = sorted(set(ref) - set(found))
    extra = sorted(set(found) - set(ref))
    if missing or extra:
        raise ModelSpecError(
            f"{source} does not match architecture {spec.architecture} with "
            f"{dict(spec.kwargs)} of model {spec.name!r}: missing tensors {missing[:5]}"
            f"{' …' if len(missing) > 5 else ''}, unexpected tensors {extra[:5]}"
            f"{' …' if len(extra) > 5 else ''}")
    for k, r in ref.items():
        shape, dtype = found[k]
        if shape != tuple(r.shape):
            raise ModelSpecError(
                f"{source}: tensor {k!r} has shape {list(shape)}, model {spec.name!r} "
                f"({spec.architecture} with {dict(spec.kwargs)}, inputs "
                f"{ {i.name: list(i.bands) for i in spec.inputs} }) needs {list(r.shape)}")
        if dtype != r.dtype:
            raise ModelSpecError(f"{source}: tensor {k!r} is {dtype}, model {spec.name!r} "
                                 f"needs {r.dtype}")
