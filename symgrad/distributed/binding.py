"""``symgrad.distributed.bind``: any loss kernel bound to Dask columns, by what it computes.

A :class:`~symgrad.distributed.DaskBound` whose part is by kind: an array loss's
(:mod:`.arrays`), a scalar loss's with index sums over parameter vectors (:mod:`.vectors`),
another scalar loss's (:mod:`.kernel`). The kernels' own calls on Dask columns (:mod:`.detect`)
come here too.
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
