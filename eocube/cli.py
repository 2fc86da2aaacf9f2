"""The ``eocube`` command line: each command parses, calls the library, and writes."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from eocube.errors import EocubeError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Earth-observation data cubes on Dask for urban science.")


@app.command()
def synth(out: Annotated[Path, typer.Argument(help="folder to write the archive to")],
          preset: Annotated[str, typer.Option(help="tiny or demo")] = "tiny",
          seed: Annotated[int, typer.Option(help="city seed")] = 0,
          overwrite: Annotated[bool, typer.Option(help="replace an existing archive")] = False,
          workers: Annotated[int, typer.Option(help="processes")] = 1) -> None:
    """Build a synthetic city as a STAC archive."""
    from eocube.synth import build_city

    path = build_city(out, preset=preset, seed=seed, overwrite=overwrite, workers=workers)
    typer.echo(str(path))


@app.command()
def serve(path: Annotated[Path, typer.Argument(help="archive folder")],
          port: Annotated[int | None, typer.Option(help="port (default: a free one)")] = None
          ) -> None:
    """Serve an archive as a STAC API on 127.0.0.1 until interrupted (Ctrl-C, SIGTERM,
    SIGHUP); the server and its temporary files go with this command."""
    from eocube.catalog import LocalStacApi

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # unwinds the with block below, which stops the server

    # without a handler SIGTERM ends Python at once, before the with block can clean up
    for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is not None:
            signal.signal(sig, interrupt)
    with contextlib.suppress(KeyboardInterrupt), LocalStacApi(path, port=port) as api:
        typer.echo(f"STAC API at {api.url} (Ctrl-C to stop)", err=False)
        sys.stdout.flush()
        while True:
            time.sleep(3600)


@app.command()
def validate(path: Annotated[Path, typer.Argument(help="archive or run folder")]) -> None:
    """Validate every STAC Catalog, Collection and Item of an archive or a run folder, and
    every file of an archive against the sha256 in its manifest.json and file:checksum."""
    from eocube.catalog import open_archive
    from eocube.catalog.validate import archive_problems, stac_problems

    arch = open_archive(path)
    if arch.manifest.get("eocube") == "run":  # a run folder: its catalog, not its outputs
        files = [arch.root / "catalog.json"] + [p for c in arch.collection_ids
                                                for p in sorted((arch.root / c).rglob("*.json"))]
    else:
        files = [p for p in sorted(arch.root.rglob("*.json")) if p.name != "manifest.json"]
    problems = []
    for p in files:
        problems += stac_problems(json.loads(p.read_text()))
    n_files = 0
    if arch.manifest.get("eocube") != "run":
        problems += archive_problems(arch.root)
        n_files = len(arch.manifest.get("files") or {})
    for pr in problems:
        typer.echo(pr, err=True)
    typer.echo(f"{len(files)} STAC objects, {n_files} files checked, {len(problems)} problems")
    raise typer.Exit(1 if problems else 0)


def _run(config: Path | None, *, overwrite: bool, **overrides: object) -> None:
    from eocube.pipeline import load_config, run_pipeline

    cfg = load_config(config, **overrides)
    try:
        result = run_pipeline(cfg, overwrite=overwrite)
    except EocubeError:
        raise
    except Exception as e:  # a stage failed: the manifest and run.log have the details
        typer.echo(f"error: {type(e).__name__}: {e}".splitlines()[0]
                   + f" (see {cfg.output / 'run.log'})", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{result.status}: {result.root} (ran {len(result.ran)} stages, skipped "
               f"{len(result.skipped)}; report {result.root / 'report' / 'report.html'})")
    raise typer.Exit(0 if result.status != "failed" else 1)


@app.command()
def run(config: Annotated[Path | None, typer.Argument(
            help="run configuration (YAML); default: the tiny city with every stage")] = None,
        output: Annotated[Path | None, typer.Option(help="run folder (overrides output:)")
                          ] = None,
        overwrite: Annotated[bool, typer.Option(
            help="replace a synthetic city of another preset or seed at city.archive")] = False,
        cluster: Annotated[str | None, typer.Option(
            help="a Dask scheduler address (tcp://host:8786), 'local' or 'threads' "
                 "(overrides cluster:)")] = None
        ) -> None:
    """Run the pipeline: search → cubes → inference → change → buildings → zones → features →
    estimates → evaluation → report. A killed run resumes where it stopped."""
    kind = None
    if cluster is not None:
        kind = ({"kind": cluster} if cluster in ("local", "threads", "cuda")
                else {"kind": "address", "address": cluster})
    _run(config, overwrite=overwrite, output=output, cluster=kind)


@app.command()
def demo(output: Annotated[Path | None, typer.Option(help="run folder")] = None,
         preset: Annotated[str | None, typer.Option(help="tiny or demo")] = None,
         overwrite: Annotated[bool, typer.Option(
             help="replace a synthetic city of another preset or seed")] = False) -> None:
    """The whole flow on the demo city with the shipped configuration and an HTML report."""
    from eocube.pipeline.run import DEMO_CONFIG

    city = None
    if preset:
        import yaml

        city = {**yaml.safe_load(DEMO_CONFIG.read_text())["city"], "preset": preset}
        if output:
            city["archive"] = str(Path(output) / "archive")
    _run(DEMO_CONFIG, overwrite=overwrite, output=output, city=city)


@app.command()
def train(model: Annotated[str, typer.Argument(help="a model name, or 'all'")],
          out: Annotated[Path, typer.Option(help="folder for <model>.safetensors")] = Path(
              "runs/models"),
          steps: Annotated[int | None, typer.Option(help="override the recipe's steps")] = None,
          width: Annotated[int | None, typer.Option(
              help="channels of the first level (default: the recipe's)")] = None,
          depth: Annotated[int | None, typer.Option(
              help="down-sampling steps (default: the recipe's)")] = None,
          seed: Annotated[int, typer.Option(help="initialisation and sampling seed")] = 0,
          device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1 …")] = "auto",
          amp: Annotated[bool, typer.Option(help="bf16 autocast")] = False,
          threads: Annotated[int | None, typer.Option(help="CPU threads")] = None,
          cache: Annotated[Path | None, typer.Option(help="cache of simulated cities")] = Path(
              "runs/model-cities")) -> None:
    """Train a model (or all of them) on the synthetic city and write its weights + spec."""
    from eocube.models import RECIPES
    from eocube.models import train as train_model

    names = sorted(RECIPES) if model == "all" else [model]
    for name in names:
        cmd = (f"eocube train {name} --out {out} --seed {seed}"
               + (f" --width {width}" if width else "") + (f" --depth {depth}" if depth else "")
               + (f" --steps {steps}" if steps else "") + (" --amp" if amp else ""))
        path, info = train_model(name, out=out, steps=steps, width=width, depth=depth,
                                 seed=seed, device=device, amp=amp, threads=threads,
                                 cache_dir=cache, command=cmd)
        typer.echo(f"{name}: {path} (loss {info['losses'][0]:.3f} → "
                   f"{sum(info['losses'][-50:]) / len(info['losses'][-50:]):.3f}, "
                   f"{info['seconds']:.0f} s on {info['device']})")


def main() -> None:
    """Entry point: eocube errors become one clear line and exit code 2."""
    try:
        app()
    except EocubeError as e:
        typer.echo(f"error: {e}", err=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
