"""start_client("local") starts within a bound and closes cleanly: no worker killed on close,
even one whose interpreter takes longer to exit than distributed's 4 s (as a worker that has
loaded torch does on a loaded machine)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

from eocube.infer import TorchThreads

pytestmark = pytest.mark.slow

# runs in a fresh interpreter so that the nannies' and workers' log lines reach its stderr
SCRIPT = textwrap.dedent("""
    import time

    def slow_exit(seconds):
        import atexit
        atexit.register(time.sleep, seconds)  # the worker's interpreter exits this much later

    if __name__ == "__main__":
        from eocube.infer import predict, start_client
        from eocube.testing import scenes as scene

        w = scene.unet_weights({weights!r})
        t0 = time.perf_counter()
        client = start_client("local", n_workers=2, preload=w, device="cpu")
        t1 = time.perf_counter()
        cube = scene.cube(64, 64, 1, chunks=32)
        client.compute(predict(cube, w, tile=32, overlap=8, device="cpu")).result()
        print("TORCH", sorted(client.run(lambda: __import__("sys").modules.get("torch")
                                         is not None).values()), flush=True)
        client.run(slow_exit, {slow})
        t2 = time.perf_counter()
        client.close()
        print(f"START {{t1 - t0:.2f}} CLOSE {{time.perf_counter() - t2:.2f}}", flush=True)
""")


def test_start_and_close_without_killing_a_worker(tmp_path):
    script = tmp_path / "start_close.py"
    script.write_text(SCRIPT.format(weights=str(tmp_path / "unet.safetensors"), slow=6))
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                       timeout=120, cwd=tmp_path)
    wall = time.perf_counter() - t0
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "TORCH [True, True]" in r.stdout, out  # both workers had torch loaded
    assert "killing" not in out, out
    assert "still alive" not in out, out
    start, close = (float(v) for v in r.stdout.split("START ")[1].split(" CLOSE "))
    assert close >= 6, out  # close waited for the slow exits instead of killing the workers
    assert wall <= 60, f"start + predict + close took {wall:.1f} s; {out}"
    assert start <= 30, out


def test_torch_threads_sets_the_environment_until_torch_loads(monkeypatch):
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "8")
    monkeypatch.setenv("MKL_NUM_THREADS", "8")
    TorchThreads(3).setup(None)
    assert "torch" not in sys.modules  # the plugin did not load it
    assert (os.environ["OMP_NUM_THREADS"], os.environ["MKL_NUM_THREADS"]) == ("3", "3")


def test_torch_threads_sets_a_loaded_torch():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    try:
        TorchThreads(1).setup(None)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
