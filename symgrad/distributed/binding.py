"""``symgrad.distributed.bind``: any loss kernel bound to Dask columns, by what it computes.

An array loss gives a :class:`~symgrad.distributed.DaskArrayKernel` (:mod:`.arrays`), a scalar
loss with index sums over parameter vectors a
:class:`~symgrad.distributed.vectors.DaskVectorKernel` (:mod:`.vectors`), another scalar loss a
:class:`~symgrad.distributed.DaskKernel` (:mod:`.kernel`). (A module of its own: the Dask path
of the kernels' own calls, :mod:`.detect`, reaches the array binding but must not reach the
vector one, which compiles scalar losses.)
"""

from __future__ import annotations

from collections.abc import Mapping

from .arrays import bind_array
from .kernel import bind as bind_scalar
from .vectors import bind_vectors

__all__ = ["bind"]


def bind(kernel, data: Mapping, batch=None, *, persist: bool = False):
    """``kernel`` bound to the Dask columns ``data`` (a mapping of names to Dask arrays or
    DataFrame columns); ``persist=True`` keeps the columns in the cluster's memory."""
    if getattr(kernel, "kind", None) == "array":
        return bind_array(kernel, data, batch, persist=persist)
    if getattr(getattr(kernel, "problem", None), "vector_sums", ()) and batch is None:
        return bind_vectors(kernel, data, persist=persist)
    return bind_scalar(kernel, data, batch, persist=persist)
