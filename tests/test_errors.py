"""Every eocube error survives pickling — and a Dask cluster — with its type, message and the
item/asset it names, also when its cause cannot be pickled (#17.2)."""

from __future__ import annotations

import inspect
import pickle
import threading

import pytest

import eocube.errors as errors
from eocube.errors import CauseText, EocubeError, ReadError

CLASSES = [c for _, c in inspect.getmembers(errors, inspect.isclass)
           if issubclass(c, BaseException) and c.__module__ == errors.__name__]


class _NoUnpickle(Exception):
    """Cannot make a pickle round trip in any environment: it holds a lock (and its __init__
    wants two arguments, like GDAL's errors chained under rasterio's)."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"[{code}] {text}")
        self.lock = threading.Lock()


class OwnInitError(EocubeError, ValueError):
    """A subclass with its own __init__ signature, as other modules define them."""

    def __init__(self, band: str, n: int) -> None:
        super().__init__(f"band {band!r} has {n} bad pixels", band=band)
        self.handle = lambda: None  # cannot be pickled: travels as its repr


def _raised(cls: type[BaseException], cause: BaseException) -> BaseException:
    msg = "could not read asset 'B04' of item 'S2A_T50QKM_20200704'"
    if not issubclass(cls, EocubeError):  # CauseText: the stand-in, made without a cause
        return cls(msg)
    try:
        try:
            raise cause
        except BaseException as c:
            raise cls(msg, item="S2A_T50QKM_20200704", asset="B04") from c
    except BaseException as e:
        return e


def test_the_class_list_is_the_whole_module():
    assert {EocubeError, ReadError, CauseText, errors.SearchError, errors.HrefRefused} \
        <= set(CLASSES)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_error_round_trips_pickle_with_type_message_and_names(cls):
    e = _raised(cls, _NoUnpickle(4, "GDAL could not open"))
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is cls
    assert str(back) == str(e) == "could not read asset 'B04' of item 'S2A_T50QKM_20200704'"
    for base in cls.__mro__:
        assert isinstance(back, base)
    if issubclass(cls, EocubeError):
        assert (back.item, back.asset) == ("S2A_T50QKM_20200704", "B04")
        assert type(back.__cause__) is CauseText
        assert str(back.__cause__) == f"{__name__}._NoUnpickle: [4] GDAL could not open"
        assert back.__suppress_context__


def test_a_picklable_cause_keeps_its_type_and_an_eocube_cause_its_names():
    e = _raised(ReadError, FileNotFoundError(2, "No such file", "/data/B04.tif"))
    back = pickle.loads(pickle.dumps(e))
    assert type(back.__cause__) is FileNotFoundError
    assert back.__cause__.filename == "/data/B04.tif"
    outer = _raised(errors.SearchError, e)
    back = pickle.loads(pickle.dumps(outer))
    assert type(back.__cause__) is ReadError and back.__cause__.asset == "B04"
    assert type(back.__cause__.__cause__) is FileNotFoundError


def test_a_subclass_with_its_own_init_and_an_unpicklable_attribute_round_trips():
    back = pickle.loads(pickle.dumps(OwnInitError("SCL", 3)))
    assert type(back) is OwnInitError and str(back) == "band 'SCL' has 3 bad pixels"
    assert back.band == "SCL" and isinstance(back.handle, str)


def test_rasterio_cause_round_trips_as_text():
    rasterio = pytest.importorskip("rasterio")
    try:
        try:
            rasterio.open("/nonexistent/B04.tif")
        except Exception as c:
            raise ReadError("could not read asset 'B04'", item="x", asset="B04") from c
    except ReadError as e:
        err = e
    # what distributed does before pickling an error: tblib pickles causes and contexts too
    tblib = pytest.importorskip("tblib.pickling_support")
    from distributed.core import collect_causes

    tblib.install(err, *collect_causes(err))
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is ReadError and back.asset == "B04"
    assert "RasterioIOError" in str(back.__cause__) and "B04.tif" in str(back.__cause__)


def _fail_to_read(path: str) -> None:
    import rasterio

    try:
        rasterio.open(path)
    except Exception as e:
        raise ReadError(f"could not read asset 'B04' of item 'x' at {path}", item="x",
                        asset="B04", href=path) from e


@pytest.mark.timeout(120)
def test_read_error_reaches_the_client_of_a_process_cluster_as_itself():
    pytest.importorskip("rasterio")
    from distributed import Client, LocalCluster

    with LocalCluster(processes=True, n_workers=1, threads_per_worker=1,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        fut = client.submit(_fail_to_read, "/nonexistent/B04.tif", pure=False)
        with pytest.raises(ReadError, match="asset 'B04' of item 'x'") as info:
            fut.result(timeout=60)
    assert (info.value.item, info.value.asset, info.value.href) == \
        ("x", "B04", "/nonexistent/B04.tif")
    assert "RasterioIOError" in str(info.value.__cause__)
