"""Logistic regression on 5,000 samples written on arrays: build time against the number of
features, and one value-and-gradient against NumPy, float64, with the default environment.

    python benchmarks/logistic.py                          # the default environment
    OPENBLAS_NUM_THREADS=1 python benchmarks/logistic.py   # one BLAS thread, for comparison

The loss is ``losses.binary_cross_entropy(X @ w, y)`` with ``w = sg.params("w", shape=(P,))`` and
``X = sg.data("X", shape=(P,))``, and the same with a scalar bias, ``X @ w + c``. Prints

- the time per value and gradient at P = 500 against NumPy's
  ``z = X @ w + c; mean(logaddexp(0, z) - y*z), X.T @ (sigmoid(z) - y) / n`` (target: within
  1.3x), without and with the bias, through the raw ``f.jit`` call and through
  ``f.value_and_grad(x, X=..., y=...)``, and ``f.value`` alone; each contender is timed in
  alternating rounds, best of 9, so that a shared machine's load falls on all alike;
- the build time (SymPy + codegen + Numba compile of value_and_grad; cold: a fresh process with
  an empty ``SYMGRAD_CACHE_DIR`` in a temporary directory; warm: a second process on that cache)
  at P = 50 and P = 500 (target: 500 within 1.3x of 50, since no size enters the code).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import timeit

import numpy as np
from report import record

N, P = 5000, 500

BUILD = textwrap.dedent("""
    import time
    t0 = time.perf_counter()
    import numpy as np, symgrad as sg
    from symgrad.lang import losses
    t1 = time.perf_counter()
    P = {p}
    w = sg.params("w", shape=(P,))
    X, y = sg.data("X", shape=(P,)), sg.data("y")
    f = sg.compile(losses.binary_cross_entropy(X @ w, y))
    f.value_and_grad(np.zeros(P), X=np.zeros((4, P)), y=np.zeros(4))
    t2 = time.perf_counter()
    print(f"{{t1 - t0:.2f}} {{t2 - t1:.2f}}")
""")


def build_times() -> None:
    print("\nbuild (SymPy + codegen + Numba compile of value_and_grad), fresh processes:")
    print(f"{'features':>9} {'cold':>8} {'warm':>8}   (import of symgrad not included)")
    cold = {}
    for p in (50, 500):
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "SYMGRAD_CACHE_DIR": cache}
            out = []
            for _ in range(2):
                r = subprocess.run([sys.executable, "-c", BUILD.format(p=p)], env=env,
                                   capture_output=True, text=True, check=True)
                out.append(float(r.stdout.split()[1]))
        cold[p] = out[0]
        print(f"{p:>9} {out[0]:7.2f}s {out[1]:7.2f}s")
    print(f"cold build at 500 features: {cold[500] / cold[50]:.2f}x that at 50 (target <= 1.3x)")
    record("logistic", "cold build at 500 features / at 50", cold[500] / cold[50], unit="x",
           target=1.3)


def race(fns: dict, number: int = 20, repeat: int = 9) -> dict:
    """Best time per call of each function, measured in alternating rounds (a shared machine's
    load then falls on every contender alike)."""
    times = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            times[k].append(timeit.timeit(fn, number=number) / number)
    return {k: min(v) for k, v in times.items()}


def numpy_vg(w: np.ndarray, c: float, X: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """The NumPy reference: loss and gradient (w, then c) of the mean binary cross-entropy."""
    z = X @ w + c
    loss = np.mean(np.logaddexp(0.0, z) - y * z)
    r = (1.0 / (1.0 + np.exp(-z)) - y) / len(y)
    return loss, X.T @ r, r.sum()


def main() -> None:
    threads = os.environ.get("OPENBLAS_NUM_THREADS", "default")
    print(f"logistic regression, {N} samples x {P} features, float64, BLAS threads: {threads}")
    for bias in (False, True):
        run(bias)
    if "--no-build" not in sys.argv:
        build_times()


def run(bias: bool) -> None:
    """Time value_and_grad without or with a scalar bias c, against NumPy in the same rounds."""
    import symgrad as sg
    from symgrad.lang import losses

    rng = np.random.default_rng(0)
    w, c = sg.params("w", shape=(P,)), sg.params("c")
    X, y = sg.data("X", shape=(P,)), sg.data("y")
    f = sg.compile(losses.binary_cross_entropy(X @ w + c if bias else X @ w, y))
    Xd = rng.standard_normal((N, P))
    yd = (rng.random(N) < 0.5).astype(np.float64)
    x = rng.standard_normal(f.n_params) / np.sqrt(P)
    cd = x[-1] if bias else 0.0
    args = f.data_args({"X": Xd, "y": yd})
    g = np.empty(f.n_params)
    value = f.jit.value_and_grad(x, g, *args)
    ref_value, ref_gw, ref_gc = numpy_vg(x[:P], cd, Xd, yd)
    ref_g = np.append(ref_gw, ref_gc) if bias else ref_gw
    assert abs(value - ref_value) <= 1e-12 * abs(ref_value), (value, ref_value)
    np.testing.assert_allclose(g, ref_g, rtol=1e-10, atol=1e-14 * np.abs(ref_g).max())
    assert abs(f.value(x, X=Xd, y=yd) - ref_value) <= 1e-12 * abs(ref_value)

    t = race({"np": lambda: numpy_vg(x[:P], cd, Xd, yd),
              "jit": lambda: f.jit.value_and_grad(x, g, *args),
              "call": lambda: f.value_and_grad(x, g, X=Xd, y=yd),
              "value": lambda: f.value(x, X=Xd, y=yd)})
    ref = "X @ w + c" if bias else "X @ w"
    print(f"-- {'with a scalar bias c' if bias else 'without a bias'}")
    print(f"{'NumPy loss + X.T @ (sigmoid(' + ref + ') - y)':<46} {t['np'] * 1e3:8.3f} ms")
    print(f"{'symgrad f.jit.value_and_grad':<46} {t['jit'] * 1e3:8.3f} ms   "
          f"{t['jit'] / t['np']:.2f}x NumPy (target <= 1.3x)")
    print(f"{'symgrad f.value_and_grad (keywords)':<46} {t['call'] * 1e3:8.3f} ms   "
          f"{t['call'] / t['np']:.2f}x NumPy (target <= 1.3x)")
    print(f"{'symgrad f.value (keywords)':<46} {t['value'] * 1e3:8.3f} ms   "
          f"{t['value'] / t['jit']:.2f}x its value_and_grad")
    threads = os.environ.get("OPENBLAS_NUM_THREADS", "default")
    record("logistic", f"logistic regression 5,000 x 500{' + scalar bias' if bias else ''}: "
           f"f.value_and_grad(x, X=, y=) / NumPy, BLAS threads {threads}",
           t["call"] / t["np"], unit="x", target=1.3)


if __name__ == "__main__":
    main()
