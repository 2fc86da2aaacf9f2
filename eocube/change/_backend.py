"""The few array operations where numpy and torch spell things differently.

The CCDC core is written once against this small surface so that the CPU (numpy) and GPU
(torch) paths run the same statements in the same order and give the same answer.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from eocube._deps import require
from eocube.errors import ConfigError


class NumpyOps:
    """numpy spelling; float64 and int64 throughout."""

    name = "numpy"

    def __init__(self) -> None:
        self.xp = np
        self.f = np.float64
        self.i = np.int64
        self.b = np.bool_

    def asarray(self, a: Any, kind: str = "f") -> Any:
        return np.asarray(a, dtype=self._dtype(kind))

    def _dtype(self, kind: str) -> Any:
        return {"f": self.f, "i": self.i, "b": self.b}[kind]

    def zeros(self, shape: tuple[int, ...], kind: str = "f") -> Any:
        return np.zeros(shape, dtype=self._dtype(kind))

    def full(self, shape: tuple[int, ...], value: float, kind: str = "f") -> Any:
        return np.full(shape, value, dtype=self._dtype(kind))

    def arange(self, n: int) -> Any:
        return np.arange(n, dtype=self.i)

    def nonzero(self, mask: Any) -> Any:
        return np.flatnonzero(mask)

    def any(self, mask: Any) -> bool:
        return bool(mask.any())

    def sort(self, a: Any, axis: int) -> Any:
        return np.sort(a, axis=axis)

    def argsort_stable(self, a: Any, axis: int) -> Any:
        return np.argsort(a, axis=axis, kind="stable")

    def take_along(self, a: Any, idx: Any, axis: int) -> Any:
        return np.take_along_axis(a, idx, axis=axis)

    def amin(self, a: Any, axis: int) -> Any:
        return np.amin(a, axis=axis)

    def amax(self, a: Any, axis: int) -> Any:
        return np.amax(a, axis=axis)

    def fl(self, mask: Any) -> Any:
        return mask.astype(self.f)

    def argmax(self, a: Any, axis: int) -> Any:
        return np.argmax(a, axis=axis)

    def toi(self, a: Any) -> Any:
        return a.astype(self.i)

    def solve(self, a: Any, b: Any) -> Any:
        return np.linalg.solve(a, b)

    def to_numpy(self, a: Any) -> np.ndarray:
        return np.asarray(a)


class TorchOps(NumpyOps):
    """torch spelling on a given device; float64 so that answers match the numpy path."""

    name = "torch"

    def __init__(self, device: str = "auto") -> None:
        require("torch", purpose='ccdc(backend="torch")')
        import torch

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.torch = torch
        self.device = torch.device(device)
        self.xp = torch
        self.f = torch.float64
        self.i = torch.int64
        self.b = torch.bool

    def asarray(self, a: Any, kind: str = "f") -> Any:
        if isinstance(a, np.ndarray) and not a.flags.writeable:
            a = a.copy()
        return self.torch.as_tensor(a, dtype=self._dtype(kind), device=self.device)

    def zeros(self, shape: tuple[int, ...], kind: str = "f") -> Any:
        return self.torch.zeros(shape, dtype=self._dtype(kind), device=self.device)

    def full(self, shape: tuple[int, ...], value: float, kind: str = "f") -> Any:
        return self.torch.full(shape, value, dtype=self._dtype(kind), device=self.device)

    def arange(self, n: int) -> Any:
        return self.torch.arange(n, dtype=self.i, device=self.device)

    def nonzero(self, mask: Any) -> Any:
        return self.torch.nonzero(mask).reshape(-1)

    def sort(self, a: Any, axis: int) -> Any:
        return self.torch.sort(a, dim=axis).values

    def argsort_stable(self, a: Any, axis: int) -> Any:
        return self.torch.argsort(a, dim=axis, stable=True)

    def take_along(self, a: Any, idx: Any, axis: int) -> Any:
        return self.torch.take_along_dim(a, idx, dim=axis)

    def amin(self, a: Any, axis: int) -> Any:
        return self.torch.amin(a, dim=axis)

    def amax(self, a: Any, axis: int) -> Any:
        return self.torch.amax(a, dim=axis)

    def fl(self, mask: Any) -> Any:
        return mask.to(self.f)

    def argmax(self, a: Any, axis: int) -> Any:
        return self.torch.argmax(a, dim=axis)

    def toi(self, a: Any) -> Any:
        return a.to(self.i)

    def solve(self, a: Any, b: Any) -> Any:
        return self.torch.linalg.solve(a, b)

    def to_numpy(self, a: Any) -> np.ndarray:
        return a.detach().cpu().numpy()


def get_ops(backend: str, device: str = "auto") -> NumpyOps:
    """The operations object for the batched ``backend`` ("numpy" or "torch")."""
    if backend == "numpy":
        if device not in ("auto", "cpu"):
            raise ConfigError(
                f'device={device!r} needs backend="torch"; the numpy backend runs on the CPU'
            )
        return NumpyOps()
    if backend == "torch":
        return TorchOps(device)
    raise ConfigError(f'backend={backend!r} is not one of "numba", "numpy", "torch"')
