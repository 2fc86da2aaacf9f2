"""eocube on a SLURM cluster: GPU workers as batch jobs (dask-jobqueue), the scheduler and
``eocube run`` in this process (run it on a login node or in a small job).

    python deploy/hpc/slurm.py --print-job-script            # what each job runs
    python deploy/hpc/slurm.py run.yaml --jobs 8 --account proj123 --walltime 08:00:00

Settings come from deploy/hpc/jobqueue.yaml (section ``jobqueue.slurm``); flags override them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eocube_jobqueue import main as run_main
from eocube_jobqueue import settings


def make_cluster(*, settings_path: str | Path | None = None, gpus: int | None = None,
                 **kw: Any) -> Any:
    """A ``dask_jobqueue.SLURMCluster`` with eocube's GPU worker settings (``kw`` override).

    ``gpus`` per job (default: jobqueue.yaml's ``--gres``) requests ``--gres=gpu:<gpus>`` and
    one worker process per GPU, as dask-cuda starts them.
    """
    from dask_jobqueue import SLURMCluster

    base = settings("slurm", settings_path) if settings_path else settings("slurm")
    opts = {**base, **kw}
    if gpus is not None:
        extra = [d for d in opts.get("job_extra_directives", []) if not d.startswith("--gres")]
        opts["job_extra_directives"] = [*extra, f"--gres=gpu:{gpus}"]
        opts["processes"] = gpus
    return SLURMCluster(**opts)


def main(argv: list[str] | None = None) -> int:
    return run_main("SLURM", __doc__.split("\n\n")[0], make_cluster, argv)


if __name__ == "__main__":
    sys.exit(main())
