"""WarmUp: a worker imports and builds in the background, so setup returns at once, the tasks
reuse what it built, and a failure is logged instead of raised."""

from __future__ import annotations

import logging
import pickle
import sys
import threading
import time

import pytest

from eocube.infer import WarmUp, WeightsRef, clear_cache, get_model, reset_stats, stats
from eocube.infer import cluster as cluster_mod


def test_setup_returns_while_the_models_build_and_tasks_reuse_them(unet_path, monkeypatch):
    clear_cache()
    reset_stats()
    release = threading.Event()
    real = cluster_mod.get_model

    def held(*a, **kw):
        release.wait(30)
        return real(*a, **kw)

    monkeypatch.setattr(cluster_mod, "get_model", held)
    w = WarmUp(["json"], [unet_path], device="cpu", threads=1)
    t0 = time.perf_counter()
    w.setup()
    assert time.perf_counter() - t0 < 1.0  # did not wait for the build
    assert w.thread is not None and w.thread.is_alive()
    assert stats().get("models_built", 0) == 0
    release.set()
    w.thread.join(60)
    assert not w.thread.is_alive() and w.seconds is not None
    assert stats()["models_built"] == 1
    get_model(WeightsRef.of(unet_path), device="cpu", threads=1)  # what a task calls
    assert stats()["models_built"] == 1  # reused, not built again
    clear_cache()


def test_a_failed_import_or_model_is_logged_not_raised(unet_path, tmp_path, caplog):
    clear_cache()
    bad = tmp_path / "changed.safetensors"
    bad.write_bytes(unet_path.read_bytes())
    ref = WeightsRef.of(bad)
    with bad.open("ab") as f:  # the file changes after the reference was taken
        f.write(b"\0")
    w = WarmUp(["eocube_no_such_module", "json"], [ref], device="cpu")
    with caplog.at_level(logging.WARNING, logger="eocube.infer"):
        w.setup()
        w.thread.join(60)
    text = caplog.text
    assert "import eocube_no_such_module failed: ModuleNotFoundError" in text
    assert f"model {bad}" in text and "ModelSpecError" in text
    assert w.seconds is not None  # it went on after the failures


def test_it_pickles_without_its_thread_and_names_what_it_warms(unet_path):
    w = WarmUp(["json"], [unet_path], device="cpu", threads=1)
    w.setup()
    w.thread.join(60)
    back = pickle.loads(pickle.dumps(w))
    assert back.thread is None and back.seconds is None
    assert back.name == w.name and back.weights == w.weights
    assert WarmUp(["json"], [unet_path], device="cpu", threads=2).name != w.name
    clear_cache()


@pytest.mark.slow
def test_workers_of_a_cluster_warm_up_in_the_background(unet_path):
    from eocube.infer import start_client

    with start_client("local", n_workers=1, threads_per_worker=1, torch_threads=1) as client:
        assert list(client.run(lambda: "torch" in sys.modules).values()) == [False]
        client.register_plugin(WarmUp(["torch"], [unet_path], device="cpu", threads=1))
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            built = list(client.run(lambda: __import__("eocube.counters").counters.stats()
                                    .get("models_built", 0)).values())
            if built == [1]:
                break
            time.sleep(0.2)
        assert built == [1]
        assert list(client.run(lambda: "torch" in sys.modules).values()) == [True]
