"""The BLAS thread policy: one rule for NumPy's and SciPy's thread pools, so that the array
kernels' products use the cores other processes leave free.

NumPy and SciPy each bundle an OpenBLAS with its own thread pool; Numba's matrix products, the
array kernels', call SciPy's. An OpenBLAS thread spins for a while after a call, so a product on
two threads while another process keeps a core busy waits for a thread the scheduler has parked:
on a shared 2-core machine a 784-128-10 network's gradient took 15 ms with two threads and 1.8 ms
with one (0.7 ms against 1.1 ms when nothing else runs). So before a kernel call, at most every
half second, :func:`refresh` measures the CPU time the other processes used since the last
look (``/proc/stat`` less this process's own time; the load average elsewhere) and gives every
BLAS pool of the process the cores that are left: all of them on a quiet machine, one when the
others are busy. symgrad's own loops call no NumPy BLAS between kernel calls (:func:`dot`).

The environment decides instead when it names a thread count (``OPENBLAS_NUM_THREADS``,
``OMP_NUM_THREADS``, ...), and so does :func:`set_blas_threads`. The policy finds the pools with
``threadpoolctl``; without it they keep their defaults.

Numba's threads (the ``prange`` loops of every kernel's threaded functions: an array kernel
compiled with ``parallel=True`` or a large call with the default ``parallel=None``; the sample
loops of residual kernels from ``PARALLEL_THRESHOLD`` samples; and the count of the threads that
run scalar kernels' sample loops, :mod:`symgrad.runtime.threads`) follow the same count
once such a kernel exists or such a call ran (:func:`use_threads`): a threaded array core runs
its loops and its BLAS calls one after the other, never together, so the two pools each get the
free cores and never oversubscribe them (and ``parallel=None`` keeps the serial cores when the
matrix products outweigh the loops, see :func:`symgrad.runtime.array.work`); a sample loop on a
core another process keeps busy would wait for it at the loop's end.
``NUMBA_NUM_THREADS`` in the environment, or a ``numba.set_num_threads`` of your own, decides
instead; :func:`set_blas_threads` fixes both.
"""

from __future__ import annotations

import os
import time

import numba
import numpy as np

__all__ = ["dot", "refresh", "set_blas_threads", "use_threads"]

_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")
_PERIOD = 0.5  # seconds between two looks at the machine


class _Policy:
    def __init__(self) -> None:
        self.fixed: int | None = None  # set_blas_threads
        self.libs: list | None = None  # threadpoolctl controllers of the kernels' pool
        self.cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 1)
        self.threads: int | None = None  # what the pool was last given
        self.numba = False  # Numba's threads follow the policy (a parallel kernel exists)
        self.numba_set: int | None = None  # what Numba was last given
        self.due = 0.0
        # The first look, at import: the first decision then measures the machine over the
        # time since (during which this process usually built its kernels) instead of
        # starting on one thread for the first half second of parallel calls.
        self.last: tuple[float, float, float | None] | None = self.sample()

    def controllers(self) -> list:
        if self.libs is None:
            self.libs = []
            try:
                import scipy.linalg.cython_blas  # noqa: F401  (loads the pool Numba calls)
                from threadpoolctl import ThreadpoolController
            except ImportError:
                return self.libs
            # NumPy's and SciPy's (one library when they share a BLAS, as with conda or MKL)
            self.libs = ThreadpoolController().select(user_api="blas").lib_controllers
        return self.libs

    def set(self, n: int) -> None:
        if n != self.threads:
            for c in self.controllers():
                c.set_num_threads(n)
            self.threads = n

    def set_numba(self, n: int, force: bool = False) -> None:
        """Numba's threads for this thread's parallel loops: ``n`` (at most Numba's pool), unless
        the count was changed since the policy last set it (by the user) and not ``force``."""
        if not self.numba:
            return
        cur = numba.get_num_threads()
        # the count the policy left last, or Numba's own before the policy's first (anything
        # else is the user's numba.set_num_threads, made before or since)
        ours = numba.config.NUMBA_NUM_THREADS if self.numba_set is None else self.numba_set
        if not force and cur != ours:
            return
        n = min(n, numba.config.NUMBA_NUM_THREADS)
        if n != cur:
            numba.set_num_threads(n)
        self.numba_set = n

    def sample(self) -> tuple[float, float, float | None]:
        """(wall time, this process's CPU time, the machine's busy CPU time or None)."""
        t = os.times()
        busy = None
        try:
            with open("/proc/stat", "rb") as fh:
                ticks = [int(v) for v in fh.readline().split()[1:]]
            busy = (sum(ticks) - ticks[3] - (ticks[4] if len(ticks) > 4 else 0)) / _HZ
        except (OSError, ValueError, IndexError):
            pass
        return time.monotonic(), t.user + t.system, busy

    def decide(self) -> int:
        """The cores the other processes left free since the last look (1 without one)."""
        now = self.sample()
        last, self.last = self.last, now
        if last is None or now[0] - last[0] <= 0:
            return 1
        wall, own = now[0] - last[0], (now[1] - last[1]) / (now[0] - last[0])
        if now[2] is not None and last[2] is not None:
            others = (now[2] - last[2]) / wall - own
        else:
            others = os.getloadavg()[0] - own if hasattr(os, "getloadavg") else 0.0
        return max(1, min(self.cores, int(self.cores - others + 0.5)))


def dot(a: np.ndarray, b: np.ndarray) -> float:
    """``a @ b`` of two vectors without BLAS: NumPy's BLAS runs on NumPy's own thread pool,
    whose spinning threads would take the cores from the kernels' pool between two calls (the
    loops' norms and line searches call this)."""
    return float(np.einsum("i,i->", a, b))


_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_P = _Policy()


def refresh() -> None:
    """Give the BLAS pools the free cores (at most every half second; about 0.1 us when not
    due). Called before array kernel calls and by the training loops."""
    now = time.monotonic()
    if now < _P.due:
        return
    _P.due = now + _PERIOD
    if _P.fixed is not None:
        return
    n = None
    if not any(os.environ.get(v) for v in _ENV):
        n = _P.decide()
        _P.set(n)
    if _P.numba and not os.environ.get("NUMBA_NUM_THREADS"):
        _P.set_numba(_P.decide() if n is None else n)


def use_threads() -> None:
    """Before a call of any kernel's threaded (``prange``) functions, and when an array kernel
    with parallel loops is made: Numba's threads follow the policy from then on, and the count
    is refreshed when due (about 0.1 us when not). Processes that never call it never start
    Numba's thread pool."""
    if not _P.numba:
        _P.numba = True
        if _P.fixed is not None:
            _P.set_numba(_P.fixed, force=True)
        _P.due = 0.0
    refresh()


def set_blas_threads(n: int | None) -> None:
    """Fix the threads of the BLAS pools (NumPy's, and SciPy's that the array kernels use) and
    of the parallel array kernels' loops to ``n``; ``None`` returns to the automatic policy
    (:func:`refresh`)."""
    if n is not None and (not isinstance(n, int) or n < 1):
        raise ValueError(f"set_blas_threads takes a positive int or None, got {n!r}")
    _P.fixed = n
    _P.due = 0.0
    if n is not None:
        _P.set(n)
        _P.set_numba(n, force=True)
