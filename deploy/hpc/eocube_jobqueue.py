"""What deploy/hpc/slurm.py and pbs.py share: the settings of jobqueue.yaml, and running
``eocube run`` against the scheduler a jobqueue cluster started in this process."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
SETTINGS = HERE / "jobqueue.yaml"


def settings(kind: str, path: str | os.PathLike[str] = SETTINGS) -> dict[str, Any]:
    """The ``jobqueue.<kind>`` section of ``path`` as SLURMCluster/PBSCluster keywords."""
    doc = yaml.safe_load(Path(path).read_text())
    section = doc["jobqueue"][kind]
    return {k.replace("-", "_"): v for k, v in section.items() if v is not None}


def cli(kind: str, description: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("config", nargs="?", help="run configuration (eocube run CONFIG.yaml)")
    ap.add_argument("--jobs", type=int, default=2, help="batch jobs (one GPU each)")
    ap.add_argument("--queue", help=f"{kind} queue / partition")
    ap.add_argument("--account", help="account / project to charge")
    ap.add_argument("--walltime", help="per job, HH:MM:SS")
    ap.add_argument("--cores", type=int, help="cores per job")
    ap.add_argument("--memory", help="memory per job, e.g. 64GiB")
    ap.add_argument("--gpus", type=int, help="GPUs per job (one dask-cuda worker each)")
    ap.add_argument("--settings", default=str(SETTINGS), help="a jobqueue.yaml")
    ap.add_argument("--print-job-script", action="store_true",
                    help="print the job script that would be submitted, and exit")
    return ap


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("queue", "account", "walltime", "cores", "memory", "gpus")
    return {k: getattr(args, k) for k in keys if getattr(args, k) is not None}


def gib(memory: str | int) -> int:
    """Whole GiB of a dask memory size (``"64GiB"`` → 64)."""
    from dask.utils import parse_bytes

    return int(parse_bytes(memory) // 2**30)


def with_address(config: str | os.PathLike[str], address: str) -> Path:
    """A copy of the run configuration ``config`` whose ``cluster`` is the scheduler at
    ``address``, written beside it as ``<name>.cluster.yaml``; every other key is kept."""
    src = Path(config)
    doc = yaml.safe_load(src.read_text()) or {}
    doc["cluster"] = {"kind": "address", "address": address}
    derived = src.with_name(f"{src.stem}.cluster.yaml")
    derived.write_text(yaml.safe_dump(doc, sort_keys=False))
    return derived


def run_pipeline(cluster: Any, config: str | os.PathLike[str], *, jobs: int,
                 timeout: float = 3600.0) -> int:
    """Submit ``jobs`` worker jobs, wait for the first worker, then run ``eocube run`` with
    the configuration's ``cluster`` pointed at this scheduler (:func:`with_address`).
    Returns the command's exit status."""
    from distributed import Client

    derived = with_address(config, cluster.scheduler_address)
    cluster.scale(jobs=jobs)
    with Client(cluster) as client:
        print(f"scheduler {cluster.scheduler_address}; dashboard {cluster.dashboard_link}; "
              f"waiting for workers of {jobs} job(s)", flush=True)
        client.wait_for_workers(1, timeout=timeout)
        eocube = shutil.which("eocube") or f"{sys.executable} -m eocube.cli"
        return subprocess.call([*eocube.split(), "run", str(derived)])


def main(kind: str, description: str, make_cluster: Any, argv: list[str] | None = None) -> int:
    """The command of ``slurm.py`` / ``pbs.py``: print the job script, or run the pipeline
    in the cluster ``make_cluster`` builds from the settings and the flags."""
    args = cli(kind, description).parse_args(argv)
    with make_cluster(settings_path=args.settings, **overrides(args)) as cluster:
        if args.print_job_script or not args.config:
            print(cluster.job_script())
            return 0
        return run_pipeline(cluster, args.config, jobs=args.jobs)
