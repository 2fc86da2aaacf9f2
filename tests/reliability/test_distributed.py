"""Failures on a cluster of worker processes: the strict policy's ``ReadError`` reaches the
client as itself, and the failure records made in the workers reach ``read_failures``."""

from __future__ import annotations

import numpy as np
import pytest

from eocube.catalog.hrefs import HrefPolicy
from eocube.cube import load, read_failures
from eocube.errors import ReadError
from eocube.testing.http import Fault, FaultServer

distributed = pytest.importorskip("distributed")
CHUNKS = {"x": 32, "y": 32}


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, worker_dashboard_address=None
                                  ) as cluster, distributed.Client(cluster) as c:
        yield c


def test_a_404_on_a_process_cluster_raises_read_error_and_records_in_workers(staged, client):
    gone = staged.source[2]
    policy = HrefPolicy(allow_loopback=True)
    with FaultServer(root=staged.root, faults=[Fault(f"/{gone['id']}/B08\\.tif", status=404),
                                               Fault(r"\.tif", status=503, share=0.2)],
                     seed=5) as srv:
        items = staged.items(srv.url, query="?sig=SECRET")
        with pytest.raises(ReadError) as err:
            client.compute(load(items, bands=["B08"], chunks=CHUNKS,
                                href_policy=policy)).result(timeout=120)
        cube = load(items, bands=["B04", "B08"], chunks=CHUNKS, href_policy=policy,
                    on_error="nan")
        computed = client.compute(cube).result(timeout=120)
        recs = read_failures(computed)
        ran_in = client.run(lambda: __import__("os").getpid())
    e = err.value
    assert type(e) is ReadError
    assert (e.item, e.asset, e.failure, e.href) == (gone["id"], "B08", "missing",
                                                    f"{srv.url}/{gone['id']}/B08.tif")
    assert "SECRET" not in str(e) and "SECRET" not in str(e.__cause__)
    assert len(ran_in) == 2
    assert [(r["item"], r["asset"], r["class"]) for r in recs] == [(gone["id"], "B08",
                                                                    "missing")]
    assert np.isfinite(computed.B04.values).any()
