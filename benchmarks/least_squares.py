"""The whole fit at large N: symgrad's fused LM against SciPy's ``lm`` with an exact Jacobian.

    python benchmarks/least_squares.py [--n 4000000] [--big-n 10000000] [--array-n 200000]
    (--n 0 / --big-n 0 / --array-n 0: skip that case)

Case 1: ``y = a*exp(-b*t) + c*t + d`` with N noisy samples (P = 4). Case 2: a sum of five
exponentials ``sum_k a_k*exp(-b_k*t)`` (P = 10). For each: ``sg.least_squares`` on the compiled
residual kernel (``sg.compile_residuals``: J never stored) vs ``scipy.optimize.least_squares(
method="lm")`` given the residual and an exact vectorised NumPy Jacobian (N x P). Prints wall
times and their ratio, the largest relative difference of the answers, and the peak memory
growth of each fit (tracemalloc: NumPy's allocations; and the sampled resident set size,
which also sees allocations inside Numba code). BLAS is pinned to one thread.

Case 3 (array residuals): a tanh layer with 3 outputs per sample, ``tanh(W @ X + b) - Y``
(W 3 x 4, b 3: P = 15, M = 3N), ``sg.least_squares`` on the array residual by both lowerings in
one run: the default (one fused sample loop: the residual unrolled per sample, JᵀJ summed per
sample) and ``fuse=False`` (blocks of the model's code, JᵀJ by BLAS per block), vs SciPy's
``lm`` with an exact NumPy Jacobian (3N x 15).
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from scipy.optimize import least_squares as scipy_lsq  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from report import record  # noqa: E402

import symgrad as sg  # noqa: E402
from symgrad.runtime.scalar import PARALLEL_THRESHOLD  # noqa: E402

TOL = {"xtol": 1e-12, "ftol": 1e-12, "gtol": 1e-12}


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measured(fn):
    """(result, seconds, peak MB of new allocations during the call: (tracemalloc, RSS)).

    tracemalloc sees NumPy's allocations, not those made inside compiled Numba code; the peak
    resident set size (sampled every 2 ms by a thread) sees both."""
    base, peak_rss, done = _rss(), [0], threading.Event()

    def watch():
        while not done.is_set():
            peak_rss[0] = max(peak_rss[0], _rss())
            time.sleep(0.002)

    w = threading.Thread(target=watch, daemon=True)
    w.start()
    tracemalloc.start()
    t0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    done.set()
    w.join()
    return out, dt, (peak, max(peak_rss[0] - base, 0) / 1e6)


def case_linear_exp(n: int, rng):
    a, b, c, d = sg.params("a b c d")
    t, y = sg.data("t y")
    tt = np.linspace(0, 10, n)
    true = np.array([2.0, 0.8, 0.3, -1.0])
    yy = true[0] * np.exp(-true[1] * tt) + true[2] * tt + true[3] + 0.1 * rng.standard_normal(n)

    def fun(x):
        return x[0] * np.exp(-x[1] * tt) + x[2] * tt + x[3] - yy

    def jac(x):
        e = np.exp(-x[1] * tt)
        return np.column_stack([e, -x[0] * tt * e, tt, np.ones_like(tt)])

    resid = a * sg.exp(-b * t) + c * t + d - y
    return resid, [a, b, c, d], {"t": tt, "y": yy}, np.array([1.0, 0.5, 0.0, 0.0]), fun, jac


def case_five_exp(n: int, rng):
    ps = sg.params(" ".join(f"a{k} b{k}" for k in range(5)))
    t, y = sg.data("t y")
    tt = np.linspace(0, 10, n)
    true = np.array([1.0, 0.1, 2.0, 0.5, 1.5, 1.3, 0.8, 3.0, 0.5, 7.0])
    yy = sum(true[2 * k] * np.exp(-true[2 * k + 1] * tt) for k in range(5))
    yy = yy + 0.01 * rng.standard_normal(n)

    def fun(x):
        return sum(x[2 * k] * np.exp(-x[2 * k + 1] * tt) for k in range(5)) - yy

    def jac(x):
        cols = []
        for k in range(5):
            e = np.exp(-x[2 * k + 1] * tt)
            cols += [e, -x[2 * k] * tt * e]
        return np.column_stack(cols)

    resid = sum(ps[2 * k] * sg.exp(-ps[2 * k + 1] * t) for k in range(5)) - y
    return resid, list(ps), {"t": tt, "y": yy}, true * 1.1, fun, jac


def case_tanh_layer(n: int, rng):
    """``tanh(W @ X + b) - Y`` per sample: 4 inputs, 3 outputs (an array residual)."""
    D, K = 4, 3
    W, b = sg.params("W", shape=(K, D)), sg.params("b", shape=(K,))
    X, Y = sg.data("X", shape=(D,)), sg.data("Y", shape=(K,))
    Xv = rng.standard_normal((n, D))
    Wt, bt = 0.5 * rng.standard_normal((K, D)), 0.3 * rng.standard_normal(K)
    Yv = np.tanh(Xv @ Wt.T + bt) + 0.05 * rng.standard_normal((n, K))

    def fun(x):
        return (np.tanh(Xv @ x[:K * D].reshape(K, D).T + x[K * D:]) - Yv).ravel()

    def jac(x):
        d = 1 - np.tanh(Xv @ x[:K * D].reshape(K, D).T + x[K * D:]) ** 2
        J = np.zeros((n, K, K * D + K))
        for k in range(K):
            J[:, k, k * D:(k + 1) * D] = d[:, k:k + 1] * Xv
            J[:, k, K * D + k] = d[:, k]
        return J.reshape(-1, K * D + K)

    return (sg.tanh(W @ X + b) - Y, [W, b], {"X": Xv, "Y": Yv}, np.full(K * D + K, 0.1), fun,
            jac)


def _fit(rk, x0, data: dict, n: int):
    """A warm fit (JIT on a subsample first: large enough for the kernels' parallel
    functions, ``PARALLEL_THRESHOLD`` samples, which a large fit runs): ``(result, seconds,
    memory)``."""
    step = max(1, n // max(2000, PARALLEL_THRESHOLD))
    sg.least_squares(rk, x0, data={k: v[::step] for k, v in data.items()})  # warm (JIT)
    return measured(lambda: sg.least_squares(rk, x0, data=data))  # defaults


def _diff(fit, ref) -> float:
    return float(np.max(np.abs(fit.x - ref.x) / np.maximum(np.abs(ref.x), 1e-300)))


def _line(name: str, fit, t: float, mem) -> str:
    return (f"  {name:<11}: {t:8.2f} s  {fit.nfev:3d} passes  peak +{mem[0]:7.1f} MB "
            f"(tracemalloc) +{mem[1]:7.1f} MB (RSS)  {fit.message}")


def run(label: str, case, n: int, compile_residuals, speed_target: float = 10) -> None:
    resid, params, data, x0, fun, jac = case(n, np.random.default_rng(0))
    rk = compile_residuals(resid, params)
    fit, t_sg, mem_sg = _fit(rk, x0, data, n)
    ref, t_sp, mem_sp = measured(lambda: scipy_lsq(fun, x0, jac=jac, method="lm", **TOL))
    diff = _diff(fit, ref)
    P = x0.size
    print(f"{label}, N = {n:.0e}, P = {P}")
    print(_line("symgrad lm", fit, t_sg, mem_sg))
    print(f"  scipy lm   : {t_sp:8.2f} s  {ref.nfev:3d} fun + {ref.njev} jac  "
          f"peak +{mem_sp[0]:7.1f} MB (tracemalloc) +{mem_sp[1]:7.1f} MB (RSS)")
    print(f"  speed-up {t_sp / t_sg:6.1f}x   max relative difference of x {diff:.1e}   "
          f"J alone would be {rk.m * n * P * 8 / 1e6:.0f} MB")
    tag = f"least squares, {label}, N = {n:.0e}"
    record("least_squares", f"{tag}: SciPy lm (exact NumPy Jacobian, tolerances 1e-12) / "
           "sg.least_squares (default arguments)", t_sp / t_sg, unit="x", target=speed_target,
           better="higher")
    # the five exponentials are ill-conditioned: both stop at ftol with x ~1e-7 apart
    record("least_squares", f"{tag}: max relative difference of x", diff,
           target=1e-8 if P != 10 else None)
    record("least_squares", f"{tag}: peak RSS growth", mem_sg[1], unit="MB", target=40)


def run_array(label: str, case, n: int) -> None:
    """An array residual by both lowerings in one run: the default (one fused sample loop,
    ``fuse=None`` picks it for this small model) and the array lowering (``fuse=False``:
    blocks of the model's code, BLAS sums), against SciPy's ``lm``."""
    resid, params, data, x0, fun, jac = case(n, np.random.default_rng(0))
    fused = sg.compile_residuals(resid, params)
    array = sg.compile_residuals(resid, params, fuse=False)
    assert fused.fused and not array.fused
    fit_f, t_f, mem_f = _fit(fused, x0, data, n)
    fit_a, t_a, mem_a = _fit(array, x0, data, n)
    ref, t_sp, mem_sp = measured(lambda: scipy_lsq(fun, x0, jac=jac, method="lm", **TOL))
    P = x0.size
    print(f"{label}, N = {n:.0e}, P = {P}")
    print(_line("fused lm", fit_f, t_f, mem_f))
    print(_line("array lm", fit_a, t_a, mem_a))
    print(f"  scipy lm   : {t_sp:8.2f} s  {ref.nfev:3d} fun + {ref.njev} jac  "
          f"peak +{mem_sp[0]:7.1f} MB (tracemalloc) +{mem_sp[1]:7.1f} MB (RSS)")
    print(f"  speed-up over SciPy: fused {t_sp / t_f:6.1f}x, array {t_sp / t_a:6.1f}x; fused / "
          f"array {t_a / t_f:5.1f}x   max relative difference of x {_diff(fit_f, ref):.1e} "
          f"(fused), {_diff(fit_a, ref):.1e} (array)   J alone would be "
          f"{fused.m * n * P * 8 / 1e6:.0f} MB")
    tag = f"least squares, {label}, N = {n:.0e}"
    what = "SciPy lm (exact NumPy Jacobian, tolerances 1e-12) / sg.least_squares"
    record("least_squares", f"{tag}: {what} (default arguments: the fused sample loop)",
           t_sp / t_f, unit="x", target=10, better="higher")
    record("least_squares", f"{tag}: {what} (fuse=False: the array lowering)", t_sp / t_a,
           unit="x", target=1, better="higher")
    record("least_squares", f"{tag}: array lowering / fused sample loop", t_a / t_f, unit="x",
           target=5, better="higher")
    record("least_squares", f"{tag}: max relative difference of x (fused)", _diff(fit_f, ref),
           target=1e-8)
    record("least_squares", f"{tag}: max relative difference of x (array)", _diff(fit_a, ref),
           target=1e-8)
    record("least_squares", f"{tag}: peak RSS growth (fused)", mem_f[1], unit="MB", target=40)
    record("least_squares", f"{tag}: peak RSS growth (array)", mem_a[1], unit="MB", target=40)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=float, default=4e6)
    ap.add_argument("--big-n", type=float, default=1e7)
    ap.add_argument("--array-n", type=float, default=2e5)
    args = ap.parse_args(argv)
    if args.n:
        run("a*exp(-b*t) + c*t + d", case_linear_exp, int(args.n), sg.compile_residuals)
    if args.big_n:
        run("five exponentials", case_five_exp, int(args.big_n), sg.compile_residuals)
    if args.array_n:
        run_array("tanh(W @ X + b) - Y, 3 outputs per sample (array residual)",
                  case_tanh_layer, int(args.array_n))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
