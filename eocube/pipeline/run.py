"""``eocube run CONFIG.yaml``: check the configuration and the sources, take the run folder,
start the cluster, run the stages (resuming), write the run's STAC catalog and report.

Feedback: a progress bar per stage and per chunk written, the Dask dashboard's address, a log
file in the run folder (``run.log``), the wall time of each stage, and a status in the
manifest: ``completed``, ``completed_with_errors`` or ``failed`` with its reason.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from eocube.pipeline.config import RunConfig, load_config
from eocube.pipeline.evaluation import evaluation_stage
from eocube.pipeline.report import report_stage
from eocube.pipeline.runner import LOG, RunFolder, RunResult, Stage, check_writable, run_stages
from eocube.pipeline.runstac import stage_item, write_run_catalog
from eocube.pipeline.sources import archive_for_run, check_sources
from eocube.pipeline.stages import (
    INFERENCE_THREADS,
    buildings_stage,
    change_stage,
    cubes_stage,
    estimates_stage,
    features_stage,
    inference_stage,
    search_stage,
    zones_stage,
)

__all__ = ["DEMO_CONFIG", "STAGE_FUNCTIONS", "run_pipeline"]

#: the stage function of each stage of the flow
STAGE_FUNCTIONS: dict[str, Stage] = {
    "search": search_stage, "cubes": cubes_stage, "inference": inference_stage,
    "change": change_stage, "buildings": buildings_stage, "zones": zones_stage,
    "features": features_stage, "estimates": estimates_stage,
    "evaluation": evaluation_stage, "report": report_stage,
}

#: the shipped configuration of ``eocube demo`` / ``make demo``
DEMO_CONFIG = Path(__file__).with_name("demo.yaml")


def _logger(root: Path, *, console: bool) -> logging.Logger:
    log = logging.getLogger(f"eocube.run.{root}")
    log.setLevel(logging.INFO)
    log.propagate = False
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()
    fh = logging.FileHandler(root / LOG)
    fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(fh)
    if console:
        from rich.logging import RichHandler

        log.addHandler(RichHandler(show_path=False, markup=False, log_time_format="%H:%M:%S"))
    return log


class Feedback:
    """Rich progress on the terminal: the stages done of all, and the chunks written of the
    stage running (each Zarr output reports as it commits chunks)."""

    def __init__(self, stages: tuple[str, ...], *, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.bar: Any = None
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

            self.bar = Progress("[progress.description]{task.description}", BarColumn(),
                                MofNCompleteColumn(), TimeElapsedColumn(), transient=False)
            self.stages = self.bar.add_task("stages", total=len(stages))
            self.chunks = self.bar.add_task("chunks", total=None, visible=False)

    def __enter__(self) -> Feedback:
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def for_stage(self, stage: str) -> Any:
        if self.bar is None:
            return None
        self.bar.update(self.stages, description=f"stage {stage}")

        def chunks(done: int, total: int) -> None:
            self.bar.update(self.chunks, completed=done, total=total, visible=True,
                            description=f"  {stage}: chunks")

        return chunks

    def stage_done(self, stage: str, status: str, seconds: float) -> None:
        if self.bar is not None:
            self.bar.advance(self.stages)
            self.bar.update(self.chunks, visible=False)


#: What the workers' tasks of each stage import: a :class:`~eocube.infer.WarmUp` imports them in
#: the background when the run starts, in flow order, instead of the first task of each stage
WARM_MODULES: dict[str, tuple[str, ...]] = {
    "cubes": ("rasterio", "odc.loader", "eocube.cube"),
    "inference": ("torch", "eocube.models", "eocube.infer"),
    "change": ("eocube.change", "eocube.change._numba"),
    "features": ("eocube.zonal",),
}


def warm_up(cfg: RunConfig) -> Any:
    """The :class:`~eocube.infer.WarmUp` of a run on a cluster: the modules its stages' tasks
    import and, when it runs inference, the models they build (None: nothing to warm)."""
    from eocube.infer import WarmUp

    stages = cfg.stage_list
    modules = [m for s in stages for m in WARM_MODULES.get(s, ())]
    weights: list[str] = []
    if "inference" in stages:
        weights = [cfg.models.builtup, cfg.models.change]
        if cfg.models.buildings and "vhr" in cfg.sensors:
            weights.append(cfg.models.buildings)
    if not modules and not weights:
        return None
    # the threads the inference stage's tasks ask for, so a warmed model gives the same bits
    return WarmUp(modules, weights, device=cfg.inference.device, threads=INFERENCE_THREADS)


@contextlib.contextmanager
def _client(cfg: RunConfig, log: logging.Logger) -> Iterator[Any]:
    """The Dask client of the run (None for the threaded scheduler), closed cleanly."""
    c = cfg.cluster
    if c.kind == "threads":
        log.info("dask: the threaded scheduler of this process")
        yield None
        return
    from eocube.infer import start_client

    target = {"local": "local", "cuda": "cuda", "address": c.address}[c.kind]
    if c.kind == "local" and c.address:
        target = c.address
    client = start_client(target, n_workers=c.workers, threads_per_worker=c.threads_per_worker)
    warm = None
    try:
        log.info("dask: %d workers; dashboard at %s", len(client.scheduler_info()["workers"]),
                 client.dashboard_link)
        warm = warm_up(cfg)
        if warm is not None:
            client.register_plugin(warm)
            log.info("dask: the workers import %d modules and build %d models in the "
                     "background (%s)", len(warm.modules), len(warm.weights), warm.name)
        yield client
    finally:
        if warm is not None:  # a worker joining a shared cluster later has no use for it
            with contextlib.suppress(Exception):
                client.unregister_worker_plugin(warm.name)
        cluster = client.cluster
        client.close()
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close(timeout=30)


def run_pipeline(config: str | os.PathLike[str] | RunConfig | None = None, /, *,
                 overwrite: bool = False, console: bool = True,
                 stage_functions: Mapping[str, Stage] | None = None, **overrides: Any
                 ) -> RunResult:
    """Run the pipeline of ``config`` (a YAML path, a RunConfig or None for the defaults).

    Parameters
    ----------
    config
        The run configuration.
    overwrite
        Replace a synthetic-city archive of another preset or seed at ``city.archive``
        (never anything eocube did not build).
    console
        Log to the terminal too (always to ``<output>/run.log``).
    stage_functions
        Stage functions by name (default: :data:`STAGE_FUNCTIONS`).
    **overrides
        Top-level configuration keys to replace (``output=...``).

    Returns
    -------
    RunResult

    Raises
    ------
    ConfigError
        A bad configuration, an unreachable catalog, an AOI outside its coverage, a missing
        vector layer or an unusable output folder: nothing has been written.
    """
    cfg = config if isinstance(config, RunConfig) else load_config(config, **overrides)
    if isinstance(config, RunConfig) and overrides:
        cfg = cfg.model_copy(update=overrides)
    root = Path(cfg.output)
    check_writable(root)
    check_sources(cfg)
    folder = RunFolder(root)
    folder.create()
    with folder.lock():
        log = _logger(root, console=console)
        (root / "config.yaml").write_text(_yaml(cfg))
        try:
            if cfg.catalog == "synthetic":
                archive_for_run(cfg, overwrite=overwrite, workers=max(1, cfg.cluster.workers),
                                log=log)
                check_sources(cfg)
            with _client(cfg, log) as client, Feedback(cfg.stage_list,
                                                         enabled=console) as fb:
                result = run_stages(cfg, stage_functions or STAGE_FUNCTIONS, log=log,
                                    client=client,
                                    items=stage_item, progress=fb.for_stage,
                                    on_stage=fb.stage_done)
        finally:
            write_run_catalog(folder)
            for h in list(log.handlers):
                h.flush()
        log.info("run %s: %s (ran %s; skipped %s)", root, result.status,
                 ", ".join(result.ran) or "none", ", ".join(result.skipped) or "none")
        for stage, t in result.tiles.items():
            log.info("stage %s: tiles ran %d (%s), skipped %d (committed before)", stage,
                     len(t["ran"]), ", ".join(t["ran"]) or "none", len(t["skipped"]))
        return result


def _yaml(cfg: RunConfig) -> str:
    import yaml

    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


