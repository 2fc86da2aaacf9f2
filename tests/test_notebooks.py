"""The notebooks run as committed: each ``notebooks/*.ipynb`` is executed top to bottom in a fresh
kernel, fails on the first cell error, and must draw at least one figure.

They run in file order in one temporary folder, as they do side by side in ``notebooks/``: the
first builds the tiny city into ``runs/tiny`` and the others reuse it (each builds it when it
is missing, so any one of them also runs alone), and 05 reads the pipeline run of 04.
Committed notebooks carry no outputs, and each opens with a markdown cell saying what it shows
and how long it takes.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="nbformat comes with the dev extra (nbmake)")
nbclient = pytest.importorskip("nbclient", reason="nbclient comes with the dev extra (nbmake)")

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
#: the notebooks that start a distributed LocalCluster
CLUSTER = {"02_inference_on_a_cluster.ipynb", "06_large_area_run.ipynb"}
#: seconds a single cell may run before the notebook fails
CELL_TIMEOUT = 300


def _params() -> list[object]:
    return [pytest.param(p, id=p.stem, marks=[pytest.mark.slow] if p.name in CLUSTER else [])
            for p in NOTEBOOKS]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """The folder every notebook runs in (its ``runs/`` is shared, as beside notebooks/)."""
    return tmp_path_factory.mktemp("notebooks")


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 7, [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"
             and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, (f"{path.name}: cells {dirty} hold outputs; clear them with "
                       f"`jupyter nbconvert --clear-output --inplace notebooks/{path.name}`")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_opens_with_what_and_how_long(path):
    first = nbformat.read(path, as_version=4).cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# "), path.name
    assert "Runs in about" in first.source, f"{path.name}: say how long it takes"


def _pngs(nb) -> int:
    return sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code"
               for o in c.get("outputs", []))


@pytest.mark.parametrize("path", _params())
def test_notebook_runs_and_draws(path, workdir, monkeypatch):
    # a non-interactive backend in the environment (CI sets MPLBACKEND=Agg) would stop the
    # kernel's inline figures; the kernel inherits this process's environment
    monkeypatch.delenv("MPLBACKEND", raising=False)
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                                     resources={"metadata": {"path": str(workdir)}})
    t = time.perf_counter()
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as e:
        pytest.fail(f"{path.name} failed in {workdir}:\n{e}", pytrace=False)
    seconds = time.perf_counter() - t
    print(f"{path.name}: {seconds:.1f} s")
    assert _pngs(nb) >= 1, f"{path.name} ran but drew no figure (image/png output)"
