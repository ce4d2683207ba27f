"""Logistic regression on 5,000 samples written on arrays: build time against the number of
features, and one value-and-gradient against NumPy, float64.

    OPENBLAS_NUM_THREADS=1 python benchmarks/logistic.py        # the comparison (one thread)

The loss is ``losses.binary_cross_entropy(X @ w, y)`` with ``w = sg.params("w", shape=(P,))`` and
``X = sg.data("X", shape=(P,))``. Prints

- the build time (SymPy + codegen + Numba compile of value_and_grad; cold: a fresh process with
  an empty ``SYMGRAD_CACHE_DIR`` in a temporary directory; warm: a second process on that cache)
  at P = 50 and P = 500 (target: 500 within 1.3x of 50, since no size enters the code);
- the time per value and gradient at P = 500 against NumPy's
  ``z = X @ w; mean(logaddexp(0, z) - y*z), X.T @ (sigmoid(z) - y) / n`` (target: within 1.3x),
  through the raw ``f.jit`` call and through ``f.value_and_grad(x, X=..., y=...)``, and
  ``f.value`` alone. Pin one BLAS thread (``OPENBLAS_NUM_THREADS=1`` on the command line, as
  above): NumPy's products and symgrad's ``np.dot`` calls then run on the same single core.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import timeit

import numpy as np

N = 5000

BUILD = textwrap.dedent("""
    import time
    t0 = time.perf_counter()
    import numpy as np, symgrad as sg
    from symgrad import losses
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


def best(fn, number: int = 20, repeat: int = 7) -> float:
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number


def numpy_vg(w: np.ndarray, X: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """The NumPy reference: loss and gradient of the mean binary cross-entropy."""
    z = X @ w
    loss = np.mean(np.logaddexp(0.0, z) - y * z)
    return loss, X.T @ (1.0 / (1.0 + np.exp(-z)) - y) / len(y)


def main() -> None:
    import symgrad as sg
    from symgrad import losses

    P = 500
    rng = np.random.default_rng(0)
    w = sg.params("w", shape=(P,))
    X, y = sg.data("X", shape=(P,)), sg.data("y")
    f = sg.compile(losses.binary_cross_entropy(X @ w, y))
    Xd = rng.standard_normal((N, P))
    yd = (rng.random(N) < 0.5).astype(np.float64)
    x = rng.standard_normal(P) / np.sqrt(P)
    args = f.data_args({"X": Xd, "y": yd})
    g = np.empty(P)
    value = f.jit.value_and_grad(x, g, *args)
    ref_value, ref_g = numpy_vg(x, Xd, yd)
    assert abs(value - ref_value) <= 1e-12 * abs(ref_value), (value, ref_value)
    np.testing.assert_allclose(g, ref_g, rtol=1e-10, atol=1e-14 * np.abs(ref_g).max())
    assert abs(f.value(x, X=Xd, y=yd) - ref_value) <= 1e-12 * abs(ref_value)

    threads = os.environ.get("OPENBLAS_NUM_THREADS", "default")
    print(f"logistic regression, {N} samples x {P} features, float64, BLAS threads: {threads}")
    t_np = best(lambda: numpy_vg(x, Xd, yd))
    t_sg = best(lambda: f.jit.value_and_grad(x, g, *args))
    t_call = best(lambda: f.value_and_grad(x, g, X=Xd, y=yd))
    t_val = best(lambda: f.value(x, X=Xd, y=yd), number=5, repeat=3)
    print(f"{'NumPy loss + X.T @ (sigmoid(X @ w) - y)':<42} {t_np * 1e3:8.3f} ms")
    print(f"{'symgrad f.jit.value_and_grad':<42} {t_sg * 1e3:8.3f} ms   "
          f"{t_sg / t_np:.2f}x NumPy (target <= 1.3x)")
    print(f"{'symgrad f.value_and_grad (keywords)':<42} {t_call * 1e3:8.3f} ms   "
          f"{t_call / t_np:.2f}x")
    print(f"{'symgrad f.value (keywords)':<42} {t_val * 1e3:8.3f} ms   "
          f"{t_val / t_sg:.2f}x its value_and_grad")
    if "--no-build" not in sys.argv:
        build_times()


if __name__ == "__main__":
    main()
