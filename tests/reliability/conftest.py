"""Fixtures of the reliability suite: COGs of the tiny city staged in a folder that a
loopback ``FaultServer`` serves (or that is read locally), with items pointing at them."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from eocube.catalog import open_archive
from eocube.cube import configure_gdal
from eocube.cube.guard import forget_failures

BANDS = ("B04", "B08")


@pytest.fixture(scope="session")
def first_date(tiny_archive) -> list[dict[str, Any]]:
    """The four S2 items (one per tile) of the first date of the tiny city, as dicts."""
    items = list(open_archive(tiny_archive).items("sentinel-2-l2a"))
    t0 = min(it["properties"]["datetime"] for it in items)
    out = [it for it in items if it["properties"]["datetime"] == t0]
    assert len(out) == 4
    return out


class Staged:
    """Copies of the items' B04/B08 files under ``root/<item id>/``; ``items(base)`` gives
    the items with hrefs under ``base`` (a URL or ``root``'s file URI), each asset with its
    ``file:checksum`` (the sha256 of the undamaged file)."""

    def __init__(self, items: list[dict[str, Any]], root: Path) -> None:
        self.root = root
        self.source = items
        for it in items:
            (root / it["id"]).mkdir(parents=True, exist_ok=True)
            for b in BANDS:
                shutil.copy(it["assets"][b]["href"].removeprefix("file://"), self.path(it, b))

    def path(self, item: dict[str, Any] | str, band: str) -> Path:
        iid = item if isinstance(item, str) else item["id"]
        return self.root / iid / f"{band}.tif"

    def items(self, base: str | None = None, *, query: str = "",
              suffix: str = ".tif") -> list[dict[str, Any]]:
        base = base if base is not None else self.root.as_uri()
        out = []
        for it in self.source:
            assets = {}
            for b in BANDS:
                a = dict(it["assets"][b])
                sha = hashlib.sha256(Path(a["href"].removeprefix("file://")).read_bytes())
                a["href"] = f"{base}/{it['id']}/{b}{suffix}{query}"
                a["file:checksum"] = "1220" + sha.hexdigest()
                assets[b] = a
            out.append({**json.loads(json.dumps(it)), "assets": assets})
        return out


@pytest.fixture()
def staged(first_date, tmp_path) -> Staged:
    return Staged(first_date, tmp_path / "served")


@pytest.fixture(autouse=True)
def _quick_gdal_retries() -> Any:
    """GDAL's HTTP retry delay at 10 ms (1 s by default), restored after the test; and no
    failure records left from a test to the next."""
    configure_gdal(GDAL_HTTP_RETRY_DELAY="0.01")
    forget_failures()
    yield
    configure_gdal(GDAL_HTTP_RETRY_DELAY="1")
    forget_failures()


def chunk_digests(cube: Any) -> dict[tuple[str, tuple[int, ...]], str]:
    """sha256 of every chunk of every variable of a computed-lazily cube."""
    import dask
    import numpy as np

    out = {}
    for name, var in cube.data_vars.items():
        blocks = var.data.to_delayed().ravel()
        idx = list(np.ndindex(*var.data.numblocks))
        vals = dask.compute(*blocks, scheduler="threads")
        for i, v in zip(idx, vals, strict=True):
            out[(str(name), i)] = hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest()
    return out


Digests = Callable[[Any], dict[tuple[str, tuple[int, ...]], str]]
