"""Where a run's inputs come from: the catalog (the embedded synthetic city, a public catalog by
name, any STAC API URL or a static archive folder), the AOI and the dates — checked before
anything is written."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from eocube.errors import ArchiveError, ConfigError
from eocube.pipeline.config import CATALOGS, RunConfig

__all__ = ["archive_for_run", "catalog_session", "check_sources"]


def archive_for_run(cfg: RunConfig, /, *, overwrite: bool = False, workers: int = 1,
                    log: Any = None) -> Path:
    """The synthetic city's archive: reused when it is the configured preset and seed, built
    when missing; a different city there is refused unless ``overwrite`` (never deleted)."""
    from eocube.catalog import open_archive
    from eocube.synth import build_city

    path = cfg.archive_path().absolute()
    if path.exists():
        try:
            man = open_archive(path).manifest
        except ArchiveError:
            man = None
        if man and man.get("preset") == cfg.city.preset and man.get("seed") == cfg.city.seed:
            return path
        if not overwrite:
            what = (f"preset {man.get('preset')!r} seed {man.get('seed')}" if man
                    else "not a complete eocube archive")
            raise ConfigError(
                f"city.archive: {str(path)!r} holds another city ({what}), not preset "
                f"{cfg.city.preset!r} seed {cfg.city.seed}; set city.archive to another folder "
                "or pass --overwrite (nothing there was touched)")
        if man is None:
            raise ConfigError(f"city.archive: {str(path)!r} is not an eocube archive; eocube "
                              "replaces only archives it built. Choose another folder.")
    if log:
        log.info("building the %r city (seed %d) at %s", cfg.city.preset, cfg.city.seed, path)
    build_city(path, preset=cfg.city.preset, seed=cfg.city.seed, overwrite=path.exists(),
               workers=workers)
    return path


def _catalog_target(cfg: RunConfig) -> str | Path:
    if cfg.catalog == "synthetic":
        return cfg.archive_path().absolute()
    if cfg.catalog in CATALOGS:
        return CATALOGS[cfg.catalog]
    if "://" in cfg.catalog:
        return cfg.catalog
    return Path(cfg.catalog).absolute()


def _aoi_bbox(cfg: RunConfig, archive: Any | None) -> tuple[float, float, float, float]:
    if isinstance(cfg.aoi, list):
        return tuple(cfg.aoi)  # type: ignore[return-value]
    if cfg.aoi == "city":
        if archive is None:
            raise ConfigError("aoi: 'city' means the synthetic city's extent; with catalog "
                              f"{cfg.catalog!r} give a bbox [minx, miny, maxx, maxy] or a file")
        return tuple(archive.collection("sentinel-2-l2a")["extent"]["spatial"]["bbox"][0])
    import geopandas as gpd

    path = Path(cfg.aoi)
    if not path.exists():
        raise ConfigError(f"aoi: {str(path)!r} does not exist")
    g = gpd.read_parquet(path) if path.suffix == ".parquet" else gpd.read_file(path)
    return tuple(float(v) for v in g.to_crs("EPSG:4326").total_bounds)  # type: ignore


def _dates(cfg: RunConfig, archive: Any | None) -> tuple[str, str]:
    start, end = cfg.dates.start, cfg.dates.end
    if (start is None or end is None) and archive is not None:
        spec = archive.manifest.get("spec")
        if spec:  # the synthetic city's series, first to last day
            import datetime as dt

            s0 = dt.date.fromisoformat(spec["start"])
            a = s0.isoformat()
            b = (s0.replace(year=s0.year + int(spec["years"])) - dt.timedelta(days=1)).isoformat()
        else:
            a, b = archive.collection("sentinel-2-l2a")["extent"]["temporal"]["interval"][0]
        start, end = start or a[:10], end or b[:10]
    if start is None or end is None:
        raise ConfigError("dates: give start and end (YYYY-MM-DD) for this catalog")
    return start, end


def _overlaps(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def check_sources(cfg: RunConfig, /, *, timeout: float = 10.0) -> None:
    """Check, before anything is written, that the catalog answers, the AOI lies within its
    coverage and the vector layers exist; raise ConfigError naming the key otherwise.

    The synthetic city is checked once it exists (a missing archive is built by the run)."""
    target = _catalog_target(cfg)
    archive = None
    if isinstance(target, Path):
        if target.exists():
            from eocube.catalog import open_archive

            try:
                archive = open_archive(target)
            except ArchiveError as e:
                if cfg.catalog != "synthetic":
                    raise ConfigError(f"catalog: {e}") from None
    else:
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(target, timeout=timeout) as r:
                json.loads(r.read(2_000_000))
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise ConfigError(f"catalog: {target!r} is unreachable or is not a STAC API "
                              f"({getattr(e, 'reason', e)}); check the URL and the network"
                              ) from None
    bbox = _aoi_bbox(cfg, archive) if (archive is not None or cfg.aoi != "city") else None
    if archive is not None and bbox is not None:
        cover = tuple(archive.collection("sentinel-2-l2a")["extent"]["spatial"]["bbox"][0])
        if not _overlaps(bbox, cover):
            raise ConfigError(f"aoi: {list(bbox)} lies outside the catalog's coverage "
                              f"{[round(v, 5) for v in cover]} (lon/lat degrees)")
    for name, ref in cfg.vectors.items():
        if "://" not in ref and not Path(ref).exists():
            raise ConfigError(f"vectors.{name}: {ref!r} does not exist")


@contextlib.contextmanager
def catalog_session(cfg: RunConfig, /) -> Iterator[tuple[Any, tuple[float, ...], tuple[str, str]]]:
    """(what ``search`` takes, the AOI bbox, (start, end)) while the catalog is open: a local
    STAC API over a static archive is served for the session's length."""
    target = _catalog_target(cfg)
    if isinstance(target, Path):
        from eocube.catalog import LocalStacApi, open_archive

        archive = open_archive(target)
        with LocalStacApi(archive) as api:
            yield api, _aoi_bbox(cfg, archive), _dates(cfg, archive)
        return
    yield target, _aoi_bbox(cfg, None), _dates(cfg, None)
