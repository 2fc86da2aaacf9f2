"""Weights on disk: safetensors files with the ModelSpec as JSON metadata, read without pickle.

Reading a file's spec (:func:`read_spec`, :func:`read_header`) needs no torch. A model is
loaded by rebuilding it from the fixed registry of architectures
(:mod:`eocube.models.registry`, never from a class path found in a file) after its tensor
names, shapes and dtypes are checked against the file's header, before any tensor is read.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from eocube.errors import ModelSpecError
from eocube.models.spec import ModelSpec

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["METADATA_KEY", "WEIGHTS_DIR", "LoadedModel", "available_weights", "load_model",
           "read_header", "read_spec", "save_model", "spec_from_metadata", "weights_path"]

#: the key of the safetensors metadata entry that holds the ModelSpec as JSON
METADATA_KEY = "eocube_model_spec"
WEIGHTS_DIR = Path(__file__).parent / "weights"
_MAX_HEADER = 50_000_000


class LoadedModel(NamedTuple):
    """A model and the spec it was loaded with, travelling as one object.

    It unpacks as ``model, spec = load_model(...)``; functions that run a model on data
    (:func:`eocube.models.forward_arrays` …) take it whole.
    """

    #: the torch module, in eval mode on the device it was loaded to
    module: nn.Module
    #: what the weights promise: bands, normalisation, outputs
    spec: ModelSpec


def available_weights() -> list[str]:
    """Names of the weights shipped in the package."""
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.safetensors"))


def weights_path(path_or_name: str | Path) -> Path:
    """The file of a shipped weights name, or ``path_or_name`` itself if it is a path.

    A name is a name: a ``str`` without the ``.safetensors`` suffix names shipped weights
    and never resolves outside ``WEIGHTS_DIR`` (``"../x"``, ``"/etc/x"`` are refused). A
    file is given as a ``Path`` or as a string ending in ``.safetensors``, and must exist.
    """
    if isinstance(path_or_name, Path) or str(path_or_name).endswith(".safetensors"):
        p = Path(path_or_name)
        if not p.is_file():
            raise ModelSpecError(f"weights file {str(p)!r} does not exist")
        return p
    name = str(path_or_name)
    shipped = WEIGHTS_DIR / f"{name}.safetensors"
    confined = (re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name) is not None
                and shipped.resolve().parent == WEIGHTS_DIR.resolve())
    if confined and shipped.is_file():
        return shipped
    raise ModelSpecError(f"no weights named {name!r}; shipped weights are "
                         f"{available_weights()}, or give the path of a .safetensors file "
                         "(a pathlib.Path, or a string ending in .safetensors)")


def read_header(path: str | Path) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """(tensor name → {dtype, shape}, metadata) from a safetensors header; reads no tensor."""
    p = Path(path)
    with p.open("rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ModelSpecError(f"{str(p)!r} is not a safetensors file (too short)")
        (n,) = struct.unpack("<Q", raw)
        if n > _MAX_HEADER:
            raise ModelSpecError(f"{str(p)!r} is not a safetensors file (header of {n} bytes)")
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ModelSpecError(f"{str(p)!r} is not a safetensors file (bad header)") from None
    if not isinstance(header, dict):
        raise ModelSpecError(f"{str(p)!r} is not a safetensors file (bad header)")
    meta = header.pop("__metadata__", None) or {}
    return header, meta


def read_spec(path_or_name: str | Path) -> ModelSpec:
    """The ModelSpec stored in a weights file (no torch tensor is read)."""
    p = weights_path(path_or_name)
    _, meta = read_header(p)
    return spec_from_metadata(meta, p)


def spec_from_metadata(meta: Mapping[str, str], path: str | Path) -> ModelSpec:
    """The ModelSpec in the safetensors metadata ``meta`` of the file ``path``."""
    p = Path(path)
    if METADATA_KEY not in meta:
        raise ModelSpecError(f"{str(p)!r} carries no eocube model spec (metadata key "
                             f"{METADATA_KEY!r}); it was not written by eocube.models.save_model")
    return ModelSpec.from_json(meta[METADATA_KEY])


def save_model(model: nn.Module, spec: ModelSpec, path: str | Path, /) -> Path:
    """Write ``model``'s weights and ``spec`` to one safetensors file.

    The model is checked against a fresh build from ``spec`` first, so a file that could not
    be loaded back is never written.
    """
    from safetensors.torch import save_file

    from eocube.models.registry import build_model

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
               ) -> LoadedModel:
    """Load weights and their spec; the model comes back in eval mode on ``device``.

    The result is a :class:`LoadedModel`: the module and its spec in one object, which
    unpacks as ``model, spec = load_model(...)``.

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
    >>> load_model("urban_s2", device="cpu").spec.name
    'urban_s2'
    """
    from safetensors.torch import load_file

    from eocube.models.device import resolve_device
    from eocube.models.registry import build_model

    p = weights_path(path_or_name)
    header, meta = read_header(p)  # one read of the header: spec and tensor table
    spec = spec_from_metadata(meta, p)
    model = build_model(spec)
    found = {}
    for k, v in header.items():
        dt = _dtypes().get(v.get("dtype"))
        found[k] = (tuple(v.get("shape", ())), dt)
    _check_tensors(found, model.state_dict(), spec, source=str(p))
    state = load_file(str(p), device="cpu")
    model.load_state_dict(state, strict=True)
    return LoadedModel(model.to(resolve_device(device)).eval(), spec)


def _dtypes() -> dict[str, torch.dtype]:
    import torch

    return {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
            "I64": torch.int64, "I32": torch.int32, "U8": torch.uint8, "BOOL": torch.bool}


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
