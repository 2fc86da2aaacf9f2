"""The run configuration: a YAML file checked against a schema before anything is written.

Every mistake is reported with the file, the line and the key it concerns (``run.yaml:7:
aoi.bbox: ...``), so an operator fixes the file without reading a traceback. The schema is
pydantic v2; YAML positions come from the composed node tree.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from eocube.errors import ConfigError
from eocube.infer.tiling import DEFAULT_BLEND, DEFAULT_OVERLAP, DEFAULT_TILE, Blend

__all__ = ["STAGES", "ClusterConfig", "RunConfig", "config_error", "load_config", "stage_hash"]

#: the stages of the flow, in order (DESIGN.md, "The pipeline")
STAGES = ("search", "cubes", "inference", "change", "buildings", "zones", "features",
          "estimates", "evaluation", "report")
#: what each stage reads: its upstream stages
DEPENDS: dict[str, tuple[str, ...]] = {
    "search": (),
    "cubes": ("search",),
    "inference": ("cubes",),
    "change": ("cubes", "inference"),
    "buildings": ("search", "cubes", "inference"),
    "zones": ("search", "cubes"),
    "features": ("cubes", "inference", "zones"),
    "estimates": ("buildings", "zones", "features", "cubes", "inference"),
    "evaluation": ("inference", "change", "buildings", "zones", "estimates"),
    "report": ("inference", "change", "buildings", "estimates", "evaluation"),
}
#: the configuration sections each stage's result depends on (its hash covers these)
PARAMS: dict[str, tuple[str, ...]] = {
    "search": ("catalog", "city", "aoi", "dates", "sensors"),
    "cubes": ("resolution", "chunk", "cloud_cover", "tiling"),
    "inference": ("models", "inference", "tiling"),
    "change": ("change", "tiling"),
    "buildings": ("vectors", "buildings"),
    "zones": ("vectors",),
    "features": (),
    "estimates": ("estimates",),
    "evaluation": ("estimates",),
    "report": (),
}
CATALOGS = {"planetary-computer": "https://planetarycomputer.microsoft.com/api/stac/v1",
            "earth-search": "https://earth-search.aws.element84.com/v1"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CityConfig(_Strict):
    """The synthetic city (``catalog: synthetic``): built once into ``archive`` and reused."""

    preset: Literal["tiny", "demo"] = "tiny"
    seed: int = 0
    archive: Path | None = None  # default: <output>/archive


class Dates(_Strict):
    """First and last day (YAML dates or ``"YYYY-MM-DD"`` strings)."""

    start: str | None = None
    end: str | None = None

    @field_validator("start", "end", mode="before")
    @classmethod
    def _iso(cls, v: Any) -> Any:
        import datetime as dt

        if isinstance(v, dt.date):  # YAML reads 2022-01-01 as a date
            return v.isoformat()
        if isinstance(v, str):
            try:
                dt.date.fromisoformat(v[:10])
            except ValueError:
                raise ValueError(f"{v!r} is not a date; write YYYY-MM-DD") from None
        return v


class ModelsConfig(_Strict):
    builtup: str = "urban_fusion"
    change: str = "change_siamdiff"
    buildings: str | None = "buildings_vhr"
    stock: str = "stock_fusion"


class InferenceConfig(_Strict):
    """``eocube.infer.predict``'s tiling (its defaults) and device; ``halo``: the pixels of
    context read around each tile of a tiled run (``tiling``), about the models' receptive
    field, so that the merged tiles equal the untiled run (within 1e-5 at 32 px on the tiny
    city; 24 px left differences of 2.6e-5)."""

    tile: Annotated[int, Field(ge=64, le=4096)] = DEFAULT_TILE
    overlap: Annotated[int, Field(ge=0, le=256)] = DEFAULT_OVERLAP
    blend: Blend = DEFAULT_BLEND
    halo: Annotated[int, Field(ge=0, le=1024)] = 32
    device: str = "auto"


class TilingConfig(_Strict):
    """How a large AOI is processed: split on the planner's tile grid (``eocube.pipeline.aoi``,
    tiles of ``tile_px`` pixels at the run's resolution) when the run's grid is larger than one
    tile, and the raster stages (cubes, inference, change) run tile by tile, each tile
    committed before the next, then merged. ``tile_px: null`` never splits."""

    tile_px: Annotated[int, Field(ge=16, le=65536)] | None = 1024


class ChangeConfig(_Strict):
    ccdc: bool = True
    threshold: Annotated[float, Field(gt=0, lt=1)] = 0.5
    k: Annotated[int, Field(ge=1)] = 1


class BuildingsConfig(_Strict):
    min_area_m2: Annotated[float, Field(ge=0)] = 20.0
    storey_height_m: Annotated[float, Field(gt=0)] = 3.0
    #: floors of unmapped buildings from this height model (S1 per orbit + S2); null: from the
    #: mapped neighbours
    height_model: str | None = "height_s1s2"


class EstimatesConfig(_Strict):
    seed: int = 0
    test_size: Annotated[float, Field(gt=0, lt=1)] = 0.25
    splits: Annotated[int, Field(ge=1, le=50)] = 5  # seeded splits the spread is taken over


class ClusterConfig(_Strict):
    """Where the Dask work runs: ``local`` (a LocalCluster of ``workers`` processes),
    ``cuda`` (dask-cuda, one worker per GPU), or a scheduler ``address``."""

    kind: Literal["local", "cuda", "address", "threads"] = "local"
    workers: Annotated[int, Field(ge=1, le=512)] = 2
    threads_per_worker: Annotated[int, Field(ge=1)] = 1
    address: str | None = None

    @model_validator(mode="after")
    def _address(self) -> ClusterConfig:
        if self.kind == "address" and not self.address:
            raise ValueError("kind 'address' needs address: tcp://host:port")
        if self.address and self.kind not in ("address", "local"):
            raise ValueError(f"address is only used with kind 'address', not {self.kind!r}")
        return self


class RunConfig(_Strict):
    """A run of the pipeline. Every field has a default: an empty file runs the tiny city."""

    catalog: str = "synthetic"
    city: CityConfig = CityConfig()
    aoi: Literal["city"] | list[float] | Path = "city"
    dates: Dates = Dates()
    sensors: list[Literal["s2", "s1", "ntl", "mobile", "vhr"]] = ["s2", "s1", "ntl", "mobile",
                                                                  "vhr"]
    resolution: Annotated[float, Field(gt=0)] = 10.0
    chunk: Annotated[int, Field(ge=64, le=8192)] = 512
    cloud_cover: Annotated[float, Field(ge=0, le=100)] = 60.0
    models: ModelsConfig = ModelsConfig()
    inference: InferenceConfig = InferenceConfig()
    tiling: TilingConfig = TilingConfig()
    change: ChangeConfig = ChangeConfig()
    buildings: BuildingsConfig = BuildingsConfig()
    estimates: EstimatesConfig = EstimatesConfig()
    vectors: dict[Literal["roads", "pois", "buildings", "land_use", "census"], str] = {}
    stages: list[Literal[STAGES]] | Literal["all"] = "all"  # type: ignore[valid-type]
    cluster: ClusterConfig = ClusterConfig()
    output: Path = Path("runs/run")

    @field_validator("aoi")
    @classmethod
    def _bbox(cls, v: Any) -> Any:
        if isinstance(v, list):
            if len(v) != 4:
                raise ValueError(f"a bbox has 4 numbers [minx, miny, maxx, maxy], got {len(v)}")
            x0, y0, x1, y1 = v
            if not (-180 <= x0 < x1 <= 180 and -90 <= y0 < y1 <= 90):
                raise ValueError(f"bbox {v} is not [min lon, min lat, max lon, max lat] in "
                                 "degrees (lon −180…180, lat −90…90, min < max)")
        return v

    @field_validator("catalog")
    @classmethod
    def _catalog(cls, v: str) -> str:
        if v in ("synthetic", *CATALOGS) or "://" in v or Path(v).suffix == "" or Path(v).exists():
            return v
        raise ValueError(f"{v!r}: use 'synthetic', 'planetary-computer', 'earth-search', a STAC "
                         "API URL or the folder of a static archive")

    @property
    def stage_list(self) -> tuple[str, ...]:
        """The stages to run, in flow order."""
        return STAGES if self.stages == "all" else tuple(s for s in STAGES if s in self.stages)

    def archive_path(self) -> Path:
        return self.city.archive or self.output / "archive"

    def section(self, name: str) -> Any:
        v = getattr(self, name)
        return v.model_dump(mode="json") if isinstance(v, BaseModel) else json.loads(
            json.dumps(v, default=str))


def stage_hash(config: RunConfig, stage: str, upstream: dict[str, str], /, *,
               code: str = "") -> str:
    """What identifies a stage's result: its name, the code that runs it (``code``: the stage
    function and eocube's version), its configuration sections and the hashes of the stages
    it reads. A stage whose hash is unchanged is not rerun."""
    from eocube import __version__

    doc = {"stage": stage, "code": [code, __version__],
           "params": {k: config.section(k) for k in PARAMS[stage]},
           "upstream": {d: upstream.get(d) for d in DEPENDS[stage]}}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


_TYPE_NAMES = {"str", "int", "float", "bool", "Path", "path", "constrained-str"}


def _line_of(node: Any, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the YAML node at ``loc`` (the deepest one that exists)."""
    import yaml

    line = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = [(k, v) for k, v in node.value if k.value == str(key)]
            if not match:
                break
            k, node = match[0]
            line = k.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) \
                and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            break
    return line


def config_error(err: ValidationError, *, source: str, root: Any = None) -> ConfigError:
    """One ConfigError listing each problem as ``file:line: key: message``."""
    found: dict[str, tuple[int | None, str]] = {}
    for e in err.errors():
        # a union's alternatives appear in the location as type names: drop them
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and (
            "[" in p or p.startswith("function-") or p in _TYPE_NAMES)))
        key = ".".join(str(p) for p in loc) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling; see the example config)"
        if key not in found:
            found[key] = (_line_of(root, loc) if root is not None else None, msg)
    # a union reports one error per alternative: keep the most specific key
    keys = [k for k in found if not any(o.startswith(k + ".") for o in found)]
    lines = [f"{source}:{found[k][0]}: {k}: {found[k][1]}" if found[k][0]
             else f"{source}: {k}: {found[k][1]}" for k in keys]
    return ConfigError("invalid configuration\n  " + "\n  ".join(lines))


def load_config(path: str | os.PathLike[str] | None = None, /, **overrides: Any) -> RunConfig:
    """Read and check a run configuration.

    Parameters
    ----------
    path
        A YAML file, or None for the defaults.
    **overrides
        Top-level keys that replace the file's (``output=...``).

    Raises
    ------
    ConfigError
        Naming the file, line and key of every mistake; nothing has been written.

    Examples
    --------
    >>> cfg = load_config(None, output="runs/x", city={"preset": "tiny", "seed": 3})
    >>> cfg.city.seed, cfg.stage_list[0]
    (3, 'search')
    """
    import yaml

    source, root, data = "<defaults>", None, {}
    if path is not None:
        source = os.fspath(path)
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise ConfigError(f"cannot read the configuration {source!r}: {e.strerror}") from None
        try:
            root = yaml.compose(text)
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"{source}:{mark.line + 1}" if mark else source
            raise ConfigError(f"{where}: not valid YAML: {getattr(e, 'problem', e)}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{source}:1: the configuration must be a mapping of keys "
                              f"(catalog:, aoi:, output: …), not {type(data).__name__}")
    data = {**data, **{k: v for k, v in overrides.items() if v is not None}}
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        raise config_error(e, source=source, root=root) from None
