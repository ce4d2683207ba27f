"""Recognise Dask columns without importing Dask, and hand them to the Dask path.

:meth:`symgrad.Kernel.data_args` asks :func:`has_dask`; when a column is a Dask collection it
returns :func:`dask_args` instead of the in-memory argument tuple: an empty tuple that carries
the :class:`~symgrad.distributed.DaskBound` and answers the compiled functions' calls
(``value(x)``, ``value_and_grad(x, g)``, ``hvp(x, v, out)``, ``hessian(x, H)``), so every
Kernel method runs on the cluster unchanged.

>>> has_dask({"t": [1.0, 2.0]})
False
"""

from __future__ import annotations

import sys
from collections.abc import Mapping

import numpy as np

from .binding import bind

__all__ = ["DaskArgs", "dask_args", "has_dask"]


def has_dask(data: Mapping) -> bool:
    """Whether any value of ``data`` is a Dask collection (False at once if Dask is not
    imported: then none can exist)."""
    if "dask" not in sys.modules or not isinstance(data, Mapping) or not data:
        return False
    from dask import is_dask_collection

    return any(type(v) not in _PLAIN and is_dask_collection(v) for v in data.values())


_PLAIN = (np.ndarray, list, tuple, float, int)  # the common in-memory types: no attribute lookup


class DaskArgs(tuple):
    """``Kernel.data_args`` for Dask columns: no positional data, the bound kernel inside."""

    def __new__(cls, bound) -> DaskArgs:
        self = super().__new__(cls, ())
        self.bound = bound
        return self

    def value(self, x):
        return self.bound.value(x)

    def value_and_grad(self, x, g):
        return self.bound.value_and_grad(x, g)[0]

    def grad(self, x, g):
        return self.bound.value_and_grad(x, g)[1]

    def hvp(self, x, v, out):
        return self.bound.hvp(x, v, out)

    def hessian(self, x, H):
        return self.bound.hessian(x, H)


def dask_args(kernel, data: Mapping, batch=None) -> DaskArgs:
    """The Dask stand-in for ``kernel.data_args(data, batch)``: the kernel bound by
    :func:`symgrad.distributed.bind`; the kernel's calls hand the result over."""
    return DaskArgs(bind(kernel, data, batch))
