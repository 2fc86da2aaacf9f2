"""eocube on a PBS cluster (PBS Pro, OpenPBS): GPU workers as batch jobs (dask-jobqueue), the
scheduler and ``eocube run`` in this process (run it on a login node or in a small job).

    python deploy/hpc/pbs.py --print-job-script            # what each job runs
    python deploy/hpc/pbs.py run.yaml --jobs 8 --account proj123 --walltime 08:00:00

Settings come from deploy/hpc/jobqueue.yaml (section ``jobqueue.pbs``); flags override them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eocube_jobqueue import gib, settings
from eocube_jobqueue import main as run_main


def make_cluster(*, settings_path: str | Path | None = None, gpus: int | None = None,
                 **kw: Any) -> Any:
    """A ``dask_jobqueue.PBSCluster`` with eocube's GPU worker settings (``kw`` override).

    ``gpus``, ``cores`` or ``memory`` given here rebuild the PBS Pro chunk
    (``select=1:ncpus=…:ngpus=…:mem=…GB``); otherwise jobqueue.yaml's ``resource-spec`` stands.
    """
    from dask_jobqueue import PBSCluster

    base = settings("pbs", settings_path) if settings_path else settings("pbs")
    opts = {**base, **kw}
    if gpus is not None or "cores" in kw or "memory" in kw:
        n = 1 if gpus is None else gpus
        opts["resource_spec"] = (f"select=1:ncpus={opts['cores']}:ngpus={n}:"
                                 f"mem={gib(opts['memory'])}GB")
        opts["processes"] = n
    return PBSCluster(**opts)


def main(argv: list[str] | None = None) -> int:
    return run_main("PBS", __doc__.split("\n\n")[0], make_cluster, argv)


if __name__ == "__main__":
    sys.exit(main())
