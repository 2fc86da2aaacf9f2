"""deploy/hpc: the dask-jobqueue SLURM and PBS recipes render job scripts that ask the batch
system for a GPU, the cores, the memory and the walltime of jobqueue.yaml, and run dask-cuda's
worker; the run configuration they hand to ``eocube run`` points at their scheduler."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
HPC = ROOT / "deploy" / "hpc"

pytest.importorskip("dask_jobqueue", reason="pip install dask-jobqueue (the deploy extra)")


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"eocube_deploy_{name}", HPC / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def script(name: str, **kw) -> str:
    with load(name).make_cluster(**kw) as cluster:
        return cluster.job_script()


def worker_line(text: str) -> str:
    (line,) = [ln for ln in text.splitlines() if "-m dask_cuda.cli" in ln]
    return line


def test_slurm_job_script_asks_for_gpu_cores_memory_walltime():
    s = script("slurm")
    assert "#SBATCH --gres=gpu:1" in s.splitlines()
    assert "#SBATCH --cpus-per-task=8" in s
    assert "#SBATCH --mem=64G" in s
    assert "#SBATCH -t 04:00:00" in s
    assert "#SBATCH -p gpu" in s
    w = worker_line(s)
    assert w.startswith("python -m dask_cuda.cli tcp://")
    assert "--nthreads 8" in w and "--memory-limit 64.00GiB" in w
    assert "--resources GPU=1" in w and "--local-directory $TMPDIR" in w
    # the prologue activates eocube's environment before the worker starts
    lines = s.splitlines()
    assert lines.index('source "$EOCUBE_HOME/.venv/bin/activate"') < lines.index(w)


def test_slurm_overrides_and_several_gpus_per_job():
    s = script("slurm", gpus=2, walltime="12:00:00", account="proj1", memory="128GiB")
    assert "#SBATCH --gres=gpu:2" in s and "--gres=gpu:1" not in s
    assert "#SBATCH -t 12:00:00" in s and "#SBATCH -A proj1" in s
    assert "#SBATCH --mem=128G" in s
    # one dask-cuda worker per GPU: each gets half the cores and memory
    w = worker_line(s)
    assert "--nthreads 4" in w and "--memory-limit 64.00GiB" in w


def test_pbs_job_script_asks_for_gpu_cores_memory_walltime():
    s = script("pbs")
    assert "#PBS -l select=1:ncpus=8:ngpus=1:mem=64GB" in s
    assert "#PBS -l walltime=04:00:00" in s
    assert "#PBS -q gpu" in s
    w = worker_line(s)
    assert "--nthreads 8" in w and "--memory-limit 64.00GiB" in w and "--resources GPU=1" in w


def test_pbs_overrides_rebuild_the_chunk():
    s = script("pbs", gpus=4, cores=32, memory="256GiB", walltime="01:30:00")
    assert "#PBS -l select=1:ncpus=32:ngpus=4:mem=256GB" in s
    assert "#PBS -l walltime=01:30:00" in s
    assert "--nthreads 8" in worker_line(s)


def test_settings_file_is_what_both_recipes_read():
    doc = yaml.safe_load((HPC / "jobqueue.yaml").read_text())
    assert set(doc["jobqueue"]) == {"slurm", "pbs"}
    for kind in ("slurm", "pbs"):
        sec = doc["jobqueue"][kind]
        assert sec["worker-command"] == "dask_cuda.cli"
    # the module dask-jobqueue runs with `python -m` must start the worker when run as main
    # (dask-cuda's cli.py ends with `if __name__ == "__main__": worker()`)
    common = load("eocube_jobqueue")
    assert common.settings("slurm")["job_extra_directives"] == ["--gres=gpu:1"]


def test_print_job_script_command_line(capsys):
    assert load("slurm").main(["--print-job-script", "--walltime", "00:10:00"]) == 0
    out = capsys.readouterr().out
    assert "#SBATCH -t 00:10:00" in out and re.search(r"--gres=gpu:1\b", out)


def test_run_configuration_points_at_the_scheduler(tmp_path):
    config = pytest.importorskip("eocube.pipeline.config")
    src = tmp_path / "run.yaml"
    src.write_text("catalog: synthetic\ncity: {preset: tiny}\noutput: /scratch/runs/a\n"
                   "cluster: {kind: local, workers: 2}\n")
    derived = load("eocube_jobqueue").with_address(src, "tcp://10.1.2.3:8786")
    assert derived.name == "run.cluster.yaml"
    cfg = config.load_config(derived)
    assert (cfg.cluster.kind, cfg.cluster.address) == ("address", "tcp://10.1.2.3:8786")
    assert str(cfg.output) == "/scratch/runs/a" and cfg.city.preset == "tiny"
