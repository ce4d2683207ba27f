"""Benchmark: a float32 scalar data loss against the float64 one (value_and_grad, N samples).

    python benchmarks/float32_scalar.py [--sizes 1e6] [--resid-size 2e6] [--rounds 41]

The loss is the MSE of a quadratic model (``sg.mean((a*t**2 + b*t + c - y)**2)``), compiled
twice: ``dtype="float32"`` (each sample's terms in float32, float64 totals; float32 columns)
and the default float64 (float64 columns of the same values). Both are bound to their columns
(``f.bind``: validated once) and timed back to back in each round; the figure is the median
ratio time(float32) / time(float64) over the rounds, for the serial pass and for the default
(prange above ``PARALLEL_THRESHOLD`` samples). The data per call (``f.value_and_grad(x, t=,
y=)``) is also shown: a float32 kernel given float64 columns converts them on every call.
Accuracy: ``sg.mean(y**2)`` of N float32 values near 1 against the exact mean (``math.fsum``)
of the same float32 terms, and NumPy's float32 mean of them for comparison.

Residuals (``--resid-size`` samples): the exponential decay ``a*exp(-b*t) - y`` compiled with
``sg.compile_residuals(..., dtype="float32")`` (each sample's residual and Jacobian row in
float32, widened to float64 before the sums) and in float64, both bound to the same float32
values (float32 and float64 columns); the figure is the paired median time(float32) /
time(float64) of ``normal()`` (JᵀJ, Jᵀr, rᵀr in one pass), with the largest relative
difference of the three sums (relative to each one's largest entry).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numba
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_loss import paired_ratio
from report import record

import symgrad as sg


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", type=float, default=[1e6])
    ap.add_argument("--resid-size", type=float, default=2e6)
    ap.add_argument("--rounds", type=int, default=41)
    args = ap.parse_args(argv)
    a, b, c = sg.params("a b c")
    t, y = sg.data("t y")
    loss = sg.mean((a * t**2 + b * t + c - y) ** 2)
    kernels = {(dt, par): sg.compile(loss, [a, b, c], dtype=dt, parallel=par)
               for dt in ("float32", "float64") for par in (False, None)}
    print(f"numba {numba.__version__}, numpy {np.__version__}, threads "
          f"{numba.get_num_threads()}, cpus {os.cpu_count()}, load average (1 min) "
          f"{os.getloadavg()[0]:.2f}")
    x, g = np.array([0.5, -9.5, 46.0]), np.empty(3)
    rng = np.random.default_rng(0)
    for nf in args.sizes:
        n = int(nf)
        t32 = rng.uniform(0.0, 19.0, n).astype(np.float32)
        y32 = (0.5 * (t32 - 9.5) ** 2 + 1 + rng.normal(size=n)).astype(np.float32)
        t64, y64 = t32.astype(np.float64), y32.astype(np.float64)
        v64 = kernels["float64", False].value_and_grad(x, t=t64, y=y64)[0]
        v32 = kernels["float32", False].value_and_grad(x, t=t32, y=y32)[0]
        print(f"\nN = {n:.0e}: value float32 {v32:.9g}, float64 {v64:.9g} "
              f"(relative difference {abs(v32 - v64) / abs(v64):.1e})")
        accuracy(n, rng)
        for par, what in ((False, "serial"), (None, "default")):
            ratios(kernels["float32", par], kernels["float64", par], what, n, x, g,
                   (t32, y32, t64, y64), args.rounds)
    residuals(int(args.resid_size), args.rounds, rng)


def residuals(n: int, rounds: int, rng) -> None:
    """Print (and record) time(float32) / time(float64) of a residual kernel's normal() and
    the largest relative difference of its sums."""
    a, b = sg.params("a b")
    t, y = sg.data("t y")
    resid = a * sg.exp(-b * t) - y
    k32, k64 = (sg.compile_residuals(resid, [a, b], dtype=dt) for dt in ("float32", "float64"))
    t32 = rng.uniform(0.0, 3.0, n).astype(np.float32)
    y32 = (2.0 * np.exp(-1.3 * t32) + 0.01 * rng.standard_normal(n)).astype(np.float32)
    b32, b64 = k32.bind(t=t32, y=y32), k64.bind(t=t32.astype(np.float64), y=y32.astype(np.float64))
    x = np.array([1.5, 1.0])
    got, want = b32.normal(x), b64.normal(x)
    err = max(float(np.max(np.abs(np.subtract(g, w))) / np.max(np.abs(w)))
              for g, w in zip(got, want, strict=True))
    ratio = paired_ratio(lambda: b64.normal(x), lambda: b32.normal(x), rounds=rounds)
    t0 = time.perf_counter()
    for _ in range(5):
        b64.normal(x)
    one = (time.perf_counter() - t0) / 5
    print(f"\nresiduals a*exp(-b*t) - y, N = {n:.0e}: float64 normal() {one * 1e3:7.3f} ms; "
          f"float32 / float64 {ratio:5.2f}x; max relative difference of JᵀJ, Jᵀr, rᵀr "
          f"{err:.1e}")
    record("float32_scalar", f"float32 / float64 residual normal() time, a*exp(-b*t) - y, "
           f"bound, N = {n:.0e} (paired median)", ratio, unit="x",
           note=f"max relative difference of the sums {err:.1e}")


def accuracy(n: int, rng) -> None:
    """Print the relative error of a float32 kernel's mean of N one-signed float32 terms."""
    y = sg.data("y")
    a = sg.params("a")
    f = sg.compile(sg.mean((a * y) ** 2), [a], dtype="float32")
    Y = (1 + 0.01 * rng.standard_normal(n)).astype(np.float32)
    terms = Y**2  # the kernel's float32 terms at a = 1
    exact = math.fsum(terms.astype(np.float64)) / n
    err = abs(f.value([1.0], y=Y) - exact) / exact
    print(f"  accuracy: mean of {n:.0e} float32 terms near 1, relative error {err:.1e} "
          f"(NumPy's float32 mean {abs(float(terms.mean()) - exact) / exact:.1e})")


def ratios(f32, f64, what: str, n: int, x, g, cols, rounds: int) -> None:
    """Print (and record) time(float32) / time(float64) of value_and_grad: bound, per call,
    and per call with float64 columns (converted on every call)."""
    t32, y32, t64, y64 = cols
    b32, b64 = f32.bind(t=t32, y=y32), f64.bind(t=t64, y=y64)
    b32.value_and_grad(x, g)
    b64.value_and_grad(x, g)
    t0 = time.perf_counter()
    for _ in range(20):
        b64.value_and_grad(x, g)
    one = (time.perf_counter() - t0) / 20
    bound = paired_ratio(lambda: b64.value_and_grad(x, g), lambda: b32.value_and_grad(x, g),
                         rounds=rounds)
    call = paired_ratio(lambda: f64.value_and_grad(x, g, t=t64, y=y64),
                        lambda: f32.value_and_grad(x, g, t=t32, y=y32), rounds=rounds)
    conv = paired_ratio(lambda: f64.value_and_grad(x, g, t=t64, y=y64),
                        lambda: f32.value_and_grad(x, g, t=t64, y=y64), rounds=rounds)
    print(f"  {what:8s} float64 bound {one * 1e3:7.3f} ms; float32 / float64: bound "
          f"{bound:5.2f}x, per call {call:5.2f}x, per call with float64 columns "
          f"(converted every call) {conv:5.2f}x")
    record("float32_scalar", f"float32 / float64 value_and_grad time, MSE of a quadratic, "
           f"bound, {what}, N = {n:.0e} (paired median)", bound, unit="x")


if __name__ == "__main__":
    main()
