"""What a weights file promises: the architecture, its inputs (bands, order, normalisation), patch
size and outputs; and the checks and normalisation of input arrays against it. Plain data, no
torch, so a spec can be read and checked anywhere (reading it from a file is
:mod:`eocube.models.io`'s).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np

from eocube.errors import ModelSpecError

SPEC_FORMAT = 1

Transform = Literal["identity", "db", "log1p", "scale255"]
Task = Literal["segmentation", "change", "regression"]


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """One input of a model: a group of bands read from one sensor, in order.

    Attributes
    ----------
    name
        The input's name, also the keyword of the model's forward (``"s2"``, ``"s1"``,
        ``"vhr"``, ``"ntl"`` …).
    bands
        Band (variable) names in the order the model expects them as channels.
    mean, std
        Per-band normalisation, applied after ``transform``: ``(transform(x) - mean) / std``.
    transform
        Applied to the physical values first: ``"db"`` (10·log10 of linear power),
        ``"log1p"``, ``"scale255"`` (x / 255) or ``"identity"``; one for all bands or one per
        band.
    resolution_m
        Pixel size the model was trained at (``0`` for inputs that are not images).
    """

    name: str
    bands: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    transform: Transform | tuple[Transform, ...] = "identity"
    resolution_m: float = 10.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "bands", tuple(self.bands))
        if not isinstance(self.transform, str):
            object.__setattr__(self, "transform", tuple(self.transform))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        n = len(self.bands)
        if n == 0 or len(set(self.bands)) != n:
            raise ModelSpecError(f"input {self.name!r}: band list {list(self.bands)} must be "
                                 "non-empty and without repeats")
        if len(self.mean) != n or len(self.std) != n:
            raise ModelSpecError(
                f"input {self.name!r}: {n} bands {list(self.bands)} but {len(self.mean)} means "
                f"and {len(self.std)} stds; give one mean and one std per band")
        if any(not s > 0 for s in self.std):
            raise ModelSpecError(f"input {self.name!r}: every std must be > 0, got {self.std}")
        per_band = (self.transform,) if isinstance(self.transform, str) else self.transform
        if isinstance(self.transform, tuple) and len(per_band) != n:
            raise ModelSpecError(f"input {self.name!r}: {len(per_band)} transforms for {n} bands")
        bad = [t for t in per_band if t not in ("identity", "db", "log1p", "scale255")]
        if bad:
            raise ModelSpecError(f"input {self.name!r}: unknown transform {bad[0]!r}; use "
                                 "identity, db, log1p or scale255")

    def transforms(self) -> tuple[str, ...]:
        """The transform of each band."""
        if isinstance(self.transform, str):
            return (self.transform,) * len(self.bands)
        return tuple(self.transform)


@dataclasses.dataclass(frozen=True, eq=True)
class ModelSpec:
    """Everything inference needs besides the tensors.

    Attributes
    ----------
    name
        The weights' name (``"urban_fusion"``, ``"buildings_vhr"`` …).
    architecture
        A key of the fixed architecture registry (``eocube.models.ARCHITECTURES``); never a
        class path.
    kwargs
        Constructor keyword arguments of the architecture (JSON scalars and lists only).
    inputs
        The model's inputs, in the order of its forward's keyword arguments.
    task
        ``"segmentation"``, ``"change"`` or ``"regression"``.
    patch_size
        Side of the square chip (pixels) the model was trained on; inference tiles should be at
        least this large.
    outputs
        Output class names (segmentation / change) or target names (regression).
    units
        Units of a regression output (``"t"`` …); ``""`` for class probabilities.
    target_transform
        For regression: ``{"transform": "log1p", "mean": m, "std": s}`` mapping the network's
        output back to ``units``, and for log1p targets ``"smearing"``, the retransformation
        factor measured on the training data (see ``eocube.models.apply.smearing_factor``);
        empty otherwise.
    training
        Free-form facts about the training run (cities, seeds, steps, command, metrics).
    """

    name: str
    architecture: str
    kwargs: Mapping[str, Any]
    inputs: tuple[InputSpec, ...]
    task: Task
    patch_size: int
    outputs: tuple[str, ...]
    units: str = ""
    target_transform: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    training: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    format: int = SPEC_FORMAT

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        if self.format != SPEC_FORMAT:
            raise ModelSpecError(f"ModelSpec format {self.format} is not supported "
                                 f"(this eocube reads format {SPEC_FORMAT})")
        if self.task not in ("segmentation", "change", "regression"):
            raise ModelSpecError(f"unknown task {self.task!r}")
        names = [i.name for i in self.inputs]
        if not names or len(set(names)) != len(names):
            raise ModelSpecError(f"input names {names} must be non-empty and unique")
        if self.patch_size <= 0:
            raise ModelSpecError(f"patch_size={self.patch_size} must be positive")
        try:
            json.dumps(dict(self.kwargs))
            json.dumps(dict(self.training))
        except TypeError as e:
            raise ModelSpecError(f"kwargs and training info must be JSON values: {e}") from None

    def input(self, name: str) -> InputSpec:
        """The input called ``name``."""
        for i in self.inputs:
            if i.name == name:
                return i
        raise ModelSpecError(f"model {self.name!r} has no input {name!r}; its inputs are "
                             f"{[i.name for i in self.inputs]}")

    def to_json(self) -> str:
        """The spec as a JSON string (what is stored in the weights file)."""
        d = dataclasses.asdict(self)
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        """Parse a spec written by :meth:`to_json`; refuses unknown or missing fields."""
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ModelSpecError(f"the model spec is not valid JSON: {e}") from None
        if not isinstance(d, dict):
            raise ModelSpecError("the model spec must be a JSON object")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - fields)
        if unknown:
            raise ModelSpecError(f"unknown ModelSpec fields {unknown}; is the file from a newer "
                                 "eocube?")
        try:
            d["inputs"] = tuple(InputSpec(**i) for i in d.get("inputs", ()))
            return cls(**d)
        except TypeError as e:
            raise ModelSpecError(f"incomplete model spec: {e}") from None


def check_input(bands: Iterable[str] | Any, spec: ModelSpec, /, *, input: str | None = None,
                ordered: bool = False) -> tuple[str, ...]:
    """Check that ``bands`` can feed the model's input; return the bands in the model's order.

    Parameters
    ----------
    bands
        The band names offered: a sequence of names, or an ``xarray.Dataset`` (its data
        variables) or a DataArray with a ``band`` coordinate.
    spec
        The model's spec.
    input
        Which input of the model; may be left out for single-input models.
    ordered
        Require ``bands`` to be exactly the model's bands in the model's order (for arrays
        whose band axis is positional); otherwise extra bands are fine and the order is given
        back for selection by name.

    Raises
    ------
    ModelSpecError
        Naming the missing, extra or misordered bands and the list the model expects.

    Examples
    --------
    >>> from eocube.models import check_input, read_spec
    >>> check_input(["B12", "B11", "B08", "B04", "B03", "B02"], read_spec("urban_s2"))
    ('B02', 'B03', 'B04', 'B08', 'B11', 'B12')
    """
    if input is None:
        if len(spec.inputs) != 1:
            raise ModelSpecError(f"model {spec.name!r} has inputs {[i.name for i in spec.inputs]};"
                                 " say which one with input=…")
        inp = spec.inputs[0]
    else:
        inp = spec.input(input)
    offered = _band_names(bands)
    aliases = band_aliases(offered, inp)
    offered = [aliases.get(b, b) for b in offered]
    missing = [b for b in inp.bands if b not in offered]
    if missing:
        raise ModelSpecError(
            f"model {spec.name!r} input {inp.name!r} needs bands {list(inp.bands)} in that order;"
            f" missing {missing} from the bands given {offered}")
    if ordered and tuple(offered) != inp.bands:
        raise ModelSpecError(
            f"model {spec.name!r} input {inp.name!r} needs bands {list(inp.bands)} in that order;"
            f" got {offered}. Select them by name in the model's order first.")
    return inp.bands


def band_aliases(names: Sequence[str], inp: InputSpec, /) -> dict[str, str]:
    """The renaming that gives ``names`` the band names ``inp`` was trained on: each alias of a
    band the input needs (``red``, ``nir``, ``swir16`` …) to its asset key (``B04``, ``B08``,
    ``B11`` …), through the sensor profile the input's name is short for (``s2``, ``s1``,
    ``vhr``, ``ntl``), else any profile that has all its bands. Names already right, and bands
    no alias gives, are left out (``check_input`` names what is missing).

    Examples
    --------
    >>> from eocube.models import read_spec
    >>> band_aliases(["red", "nir", "B02"], read_spec("urban_s2").inputs[0])
    {'red': 'B04', 'nir': 'B08'}
    """
    import contextlib

    from eocube.catalog.profiles import PROFILES, get_profile
    from eocube.errors import ConfigError

    missing = [b for b in inp.bands if b not in names]
    if not missing:
        return {}
    profiles = []
    with contextlib.suppress(ConfigError):  # an input name that is no profile's short name
        profiles.append(get_profile(inp.name))
    profiles += [p for p in PROFILES.values()
                 if p not in profiles and set(inp.bands) <= {b.name for b in p.bands}]
    best: dict[str, str] = {}
    for profile in profiles:
        rename: dict[str, str] = {}
        for n in names:
            if n in inp.bands or not profile.has_band(n):
                continue
            canon = profile.band(n).name
            if canon in missing and canon not in rename.values():
                rename[n] = canon
        if len(rename) > len(best):  # the profile that finds the most (all, normally)
            best = rename
    return best


def _band_names(bands: Any) -> list[str]:
    if hasattr(bands, "data_vars"):
        return [str(v) for v in bands.data_vars]
    if hasattr(bands, "coords") and "band" in getattr(bands, "coords", {}):
        return [str(v) for v in np.asarray(bands.coords["band"].values).tolist()]
    if isinstance(bands, str):
        raise ModelSpecError(f"give band names as a list, not the string {bands!r}")
    return [str(b) for b in bands]


def normalize(x: np.ndarray, spec: ModelSpec | InputSpec, /, *, input: str | None = None,
              axis: int = 0, fill: float | None = None) -> np.ndarray:
    """Apply an input's transform and per-band normalisation to a numpy array.

    ``x`` holds the bands along ``axis`` in the spec's order. NaN stays NaN unless ``fill``
    is given: the model's inputs use ``fill=0.0``, the band's mean, for NaN and ±inf alike.
    Returns float32.
    """
    inp = spec if isinstance(spec, InputSpec) else (
        spec.input(input) if input else spec.inputs[0])
    x = np.asarray(x, dtype="float32")
    if x.shape[axis] != len(inp.bands):
        raise ModelSpecError(f"input {inp.name!r} expects {len(inp.bands)} bands "
                             f"{list(inp.bands)} along axis {axis}, got {x.shape[axis]}")
    x = _transform_bands(x, inp.transforms(), axis)
    shape = [1] * x.ndim
    shape[axis] = -1
    mean = np.asarray(inp.mean, dtype="float32").reshape(shape)
    std = np.asarray(inp.std, dtype="float32").reshape(shape)
    z = x - mean  # a new array: the caller's x is never written
    z /= std
    if fill is not None:
        np.copyto(z, np.float32(fill), where=~np.isfinite(z))
    return z


def apply_transform(x: np.ndarray, transform: str) -> np.ndarray:
    """The named value transform of :class:`InputSpec` on a float array."""
    if transform == "db":
        with np.errstate(divide="ignore", invalid="ignore"):
            return (10.0 * np.log10(np.maximum(x, 1e-6))).astype("float32")
    if transform == "log1p":
        return np.log1p(np.maximum(x, 0)).astype("float32")
    if transform == "scale255":
        return (x / 255.0).astype("float32")
    return x.astype("float32", copy=False)


def _transform_bands(x: np.ndarray, transforms: Sequence[str], axis: int) -> np.ndarray:
    if len(set(transforms)) == 1:
        return apply_transform(x, transforms[0])
    x = np.moveaxis(x, axis, 0)
    out = np.stack([apply_transform(x[i], t) for i, t in enumerate(transforms)])
    return np.moveaxis(out, 0, axis)


def band_stats(x: np.ndarray, /, *, axis: int = 0,
               transform: str | Sequence[str] = "identity"
               ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-band mean and std (NaN ignored) of ``x`` after ``transform``; bands along ``axis``."""
    x = np.asarray(x, dtype="float32")
    ts = [transform] * x.shape[axis] if isinstance(transform, str) else list(transform)
    x = _transform_bands(x, ts, axis)
    x = np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)
    mean = np.nanmean(x, axis=1)
    std = np.maximum(np.nanstd(x, axis=1), 1e-6)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)
