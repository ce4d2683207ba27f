"""Mini-batch SGD over Dask chunks: each step evaluates the loss on a few chunks, drawn with a
seed, where they live; the final loss and gradient are on all the data.

A step's mini-batch is ``chunks_per_step`` whole chunks without replacement (the loss on those
samples, its outer function applied to their means, as an in-memory ``batch=`` would); chunks
are the natural unit on a cluster (no gather of scattered rows).

>>> import dask.array as da, numpy as np, symgrad as sg
>>> a = sg.params("a"); t = sg.data("t")
>>> fb = sg.compile(sg.mean((a - t)**2)).bind(t=da.arange(100.0, chunks=10))
>>> res = sgd(fb, [0.0], optimizer=sg.optim.sgd(lr=0.3), steps=40, seed=0)
>>> res.status, bool(abs(res.x[0] - 49.5) < 10)
('completed', True)
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from ..runtime.argcheck import by_name, seeded
from ..train.result import History, OptimizeResult, final_grad_norm
from .kernel import DaskKernel

__all__ = ["sgd"]


def sgd(fb: DaskKernel, x0, *, optimizer, steps: int, chunks_per_step: int = 1,
        seed=None, callback=None, record_x: bool = False):
    """Minimize the loss of the Dask-bound kernel ``fb`` with ``optimizer`` (an ``(init,
    update)`` pair from :mod:`symgrad.optim`) on random chunks; an ``OptimizeResult``. ``x0``
    is a flat vector or, as for :func:`symgrad.minimize`, a dict of arrays by name.

    ``callback(step, x, loss, grad)`` runs before each update (return True to stop). A
    non-finite batch loss or gradient stops with status ``"diverged"``. Chunks without samples
    (a partition a filter emptied) are skipped: never drawn, so ``chunks_per_step`` is at most
    the number of chunks that hold samples; when the chunk sizes are unknown (Dask DataFrame
    columns, boolean masks) they are computed once, before the first step. The history records
    each step's loss, learning rate and gradient norm, and the iterates only with
    ``record_x=True`` (as :func:`symgrad.minimize`).
    """
    if not isinstance(fb, DaskKernel):
        raise TypeError("sgd needs a kernel bound to Dask columns: f.bind(t=dask_array, ...)")
    if not 1 <= chunks_per_step <= fb.n_chunks:
        raise ValueError(f"chunks_per_step must be in 1..{fb.n_chunks} (the number of chunks), "
                         f"got {chunks_per_step}")
    full = np.flatnonzero(np.array(fb.chunk_sizes()) > 0)  # the chunks a step may draw
    if chunks_per_step > full.size:
        raise ValueError(f"chunks_per_step must be in 1..{full.size} (the number of chunks "
                         f"that hold samples, of {fb.n_chunks}), got {chunks_per_step}")
    rng = seeded(seed)
    if isinstance(x0, Mapping):  # by name, as sg.minimize takes it: the kernel packs it
        x0 = by_name(fb.kernel, x0)
    x = fb._x(np.array(x0, dtype=np.float64))
    state = optimizer.init(x)
    rec: list[tuple] = []
    status, message = "completed", f"{steps} steps"
    k = 0
    for k in range(steps):
        which = full[np.sort(rng.choice(full.size, size=chunks_per_step, replace=False))]
        fk, g = fb.on_chunks(which).value_and_grad(x)
        rec.append((k, x if record_x else None, fk, float(optimizer.lr(k)), final_grad_norm(g)))
        if not (math.isfinite(fk) and np.isfinite(g).all()):
            status, message = "diverged", f"step {k}: the batch loss or gradient is not finite"
            break
        if callback is not None and callback(k, x, fk, g):
            status, message = "stopped", f"callback stopped at step {k}"
            break
        x, state = optimizer.update(g, state, x, k)
    else:
        k = steps
    fun, jac = fb.value_and_grad(x)
    rec.append((k, x if record_x else None, fun, float(optimizer.lr(k)), final_grad_norm(jac)))
    cols = list(zip(*rec, strict=True))
    xs = np.array(cols[1]) if record_x else np.empty((0, x.size))
    hist = History(np.array(cols[0]), xs, np.array(cols[2]), np.array(cols[3]),
                   np.array(cols[4]))
    return OptimizeResult(x=x, fun=fun, jac=jac, nit=k, nfev=len(rec), status=status,
                          message=message, history=hist)
