"""Sample reductions on Dask: columns stay on the workers, only accumulators come back.

Pass Dask arrays or Dask DataFrame columns as data and every kernel call runs as a map-reduce
(see :mod:`symgrad.distributed.kernel`): ``f.value(x, t=dask_t, y=dask_y)``, and ``f.bind(...)``
returns a :class:`DaskKernel` (``persist()`` keeps the columns in cluster memory, held by one
actor per worker that serves calls directly, see :mod:`symgrad.distributed.resident`; calling
it gives ``(value, grad)``, so ``sg.minimize(fb, x0, optimizer=...)`` works, L-BFGS included).
Workers receive the generated module's text, not the SymPy expression
(:mod:`symgrad.distributed.worker`). Needs the ``symgrad[dask]`` extra.

Supported: scalar losses whose data enter through ``sg.mean``/``sg.sum`` over samples (any
outer function, parameter-only terms). Refused with NotImplementedError: array losses
(``shape=``) and sums over an index (``sg.index``), whose modules have no chunk/finish split.
"""

from .detect import has_dask
from .kernel import FAN_IN, DaskKernel, bind
from .sgd import sgd
from .worker import ModuleSpec

__all__ = ["FAN_IN", "DaskKernel", "ModuleSpec", "bind", "has_dask", "sgd"]
