"""The fused normal-equation pass (``ResidualKernel.normal``) vs a NumPy materialised Jacobian.

    python benchmarks/lsq_pass.py [--scale 0.1]

One Levenberg-Marquardt iteration needs ``J^T J``, ``J^T r`` and ``r^T r``. The baseline
materialises J with vectorised NumPy (the fastest hand-written NumPy we could write: each
exponential once, columns written into one (N, P) array) and calls BLAS (``J.T @ J``); symgrad's
pass streams the samples once and never stores J. Cases: the decay model
``a*exp(-b*t) + c*t + d - y`` at N = 4e6 (P = 4) and a sum of five exponentials at N = 1e7
(P = 10). Each is timed with one thread (BLAS pinned with threadpoolctl, Numba with
``set_num_threads``) and with two; times are the best of several repeats, measured in this run.

Memory: the peak growth of traced allocations (tracemalloc: NumPy arrays; the pass's own
scratch is a few KB inside Numba) and of the process's peak RSS (``resource``), per phase, the
fused pass measured first so the RSS peak is not masked by the baseline's.

Reference (issue 13): a hand-written fused Numba pass 0.07 s / 405 MB (153 MB of data) at
N = 1e7, P = 10, vs SciPy's lm 5.7 s / 3.9 GB for a whole fit.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tracemalloc
from pathlib import Path

import numba
import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from report import best, record

import symgrad as sg


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def peak(fn) -> tuple[float, float]:
    """(traced peak MB, growth of the process's peak RSS in MB) while running fn."""
    r0 = rss_mb()
    tracemalloc.start()
    fn()
    _, top = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return top / 2**20, rss_mb() - r0


def numpy_decay(x, t, y):
    a, b, c, d = x
    e = np.exp(-b * t)
    J = np.empty((t.shape[0], 4))
    J[:, 0] = e
    J[:, 1] = -a * t * e
    J[:, 2] = t
    J[:, 3] = 1.0
    r = a * e + c * t + d - y
    return J.T @ J, J.T @ r, r @ r


def numpy_exp5(x, t, y):
    J = np.empty((t.shape[0], 10))
    r = -y
    for i in range(5):
        a, k = x[2 * i], x[2 * i + 1]
        e = np.exp(-k * t)
        J[:, 2 * i] = e
        J[:, 2 * i + 1] = -a * t * e
        r = r + a * e
    return J.T @ J, J.T @ r, r @ r


def case(name: str, rk, baseline, x, n: int) -> None:
    rng = np.random.default_rng(0)
    t = rng.uniform(0.0, 5.0, n)
    y = 1.0 + 0.1 * rng.standard_normal(n)
    bk = rk.bind(t=t, y=y)
    rk.normal(x, t=t[:10], y=y[:10])  # compile or load from the cache, on a few samples
    fused_mem = peak(lambda: bk.normal(x))  # first: the RSS peak only grows
    base_mem = peak(lambda: baseline(x, t, y))
    (A, g, s), (A0, g0, s0) = bk.normal(x), baseline(x, t, y)
    rel = max(np.abs(A - A0).max() / np.abs(A0).max(), np.abs(g - g0).max() / np.abs(g0).max(),
              abs(s - s0) / s0)
    data_mb = (t.nbytes + y.nbytes) / 2**20
    print(f"\n{name}: N = {n:.0e}, P = {rk.n_params}, data {data_mb:.0f} MB, "
          f"max rel. difference fused vs NumPy {rel:.1e}")
    for threads in (1, 2):
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        with threadpool_limits(threads):
            tf = best(lambda: bk.normal(x))
            tb = best(lambda: baseline(x, t, y), repeat=3)
        print(f"  {threads} thread(s): fused {tf:.3f} s   NumPy J + BLAS {tb:.3f} s   "
              f"ratio {tb / tf:.1f}x")
        record("lsq_pass", f"NumPy J + BLAS / fused J^T J pass, {name}, N = {n:.0e}, P = "
               f"{rk.n_params}, {threads} thread(s)", tb / tf, unit="x",
               target=3.5 if threads == 1 else None, better="higher")
    record("lsq_pass", f"fused pass peak RSS growth, {name}", fused_mem[1], unit="MB",
           target=40)
    print(f"  memory (traced peak / peak-RSS growth): fused {fused_mem[0]:.2f} / "
          f"{fused_mem[1]:.0f} MB   NumPy {base_mem[0]:.0f} / {base_mem[1]:.0f} MB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=float, default=1.0, help="multiply the sample counts")
    args = ap.parse_args()
    a, b, c, d = sg.params("a b c d")
    t, y = sg.data("t y")
    decay = sg.compile_residuals(a * sg.exp(-b * t) + c * t + d - y)
    p = sg.params("a1 k1 a2 k2 a3 k3 a4 k4 a5 k5")
    exp5 = sg.compile_residuals(sum(p[2 * i] * sg.exp(-p[2 * i + 1] * t) for i in range(5)) - y)
    print(f"numba threads available: {numba.config.NUMBA_NUM_THREADS}")
    case("decay model", decay, numpy_decay, np.array([2.0, 0.7, 0.1, 1.0]),
         int(4e6 * args.scale))
    case("five exponentials", exp5, numpy_exp5,
         np.array([2.0, 0.3, 1.0, 1.1, 0.5, 2.3, 0.25, 4.0, 0.1, 0.05]), int(1e7 * args.scale))


if __name__ == "__main__":
    main()
