"""Sample reductions on Dask: columns stay on the workers, only accumulators come back.

Pass Dask arrays or Dask DataFrame columns as data and every kernel call runs as a map-reduce
(see :mod:`symgrad.distributed.kernel`): ``f.value(x, t=dask_t, y=dask_y)``, and ``f.bind(...)``
returns a :class:`DaskBound` (``persist()`` keeps the columns in cluster memory, held by one
actor per worker that serves calls directly, see :mod:`symgrad.distributed.resident`; calling
it gives ``(value, grad)``, so ``sg.minimize(fb, x0, optimizer=...)`` works, L-BFGS included).
Workers receive the generated module's text, not the SymPy expression
(:mod:`symgrad.distributed.worker`). Needs the ``symgrad[dask]`` extra.

Supported: scalar losses whose data enter through ``sg.mean``/``sg.sum`` over samples (any
outer function, parameter-only terms); scalar losses with index sums over parameter vectors
added to those (the index sums run on the client: :mod:`.vectors`); array losses (``shape=``)
that are sums/means over samples times data-free factors plus data-free terms
(:class:`DaskArrayKernel`; :mod:`symgrad.passes.split` says what is refused and why). Bind any of
them with :func:`bind`, or call ``f.value(x, X=dask_X)`` / ``f.bind(X=dask_X)`` as in memory.
"""

from .arrays import DaskArrayKernel
from .binding import bind
from .bound import DaskBound
from .detect import has_dask
from .kernel import FAN_IN, DaskKernel
from .sgd import sgd
from .worker import ModuleSpec

__all__ = ["FAN_IN", "DaskArrayKernel", "DaskBound", "DaskKernel", "ModuleSpec", "bind", "has_dask",
           "sgd"]
