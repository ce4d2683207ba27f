"""Accuracy of each checker method on smooth expressions (compiled with symgrad).

Prints, per expression and method, the largest relative error of the numeric derivative
against the compiled analytic gradient (which agrees with the exact one to rounding), and the
number of function evaluations. Expected: complex step and "exact" at rounding level (<= 1e-13),
Richardson close to it, central differences about 1e-9..1e-11.

    python benchmarks/checker_accuracy.py
"""

from __future__ import annotations

import time

import numpy as np
import sympy as sp
from report import record

import symgrad as sg
from symgrad.check import check_grad, check_hessian

METHODS = ("central", "richardson", "complex", "exact")


def cases() -> list[tuple[str, sp.Expr, np.ndarray]]:
    x1, x2 = sg.params("x1 x2")
    a, b, c = sg.params("a b c")
    return [
        ("rosenbrock 100(x2-x1^2)^2+(1-x1)^2 at (-1, 2)",
         100 * (x2 - x1**2) ** 2 + (1 - x1) ** 2, np.array([-1.0, 2.0])),
        ("exp(sin(a) b) + tanh(a c)/(1+b^2)",
         sp.exp(sp.sin(a) * b) + sp.tanh(a * c) / (1 + b**2), np.array([0.3, -0.7, 1.1])),
        ("log(1+a^2) sqrt(1+b^2) cos(c)",
         sp.log(1 + a**2) * sp.sqrt(1 + b**2) * sp.cos(c), np.array([1.3, 0.4, -2.2])),
        ("sigmoid(a b) + softplus(c - a) + exp(tanh(b c))",
         sg.sigmoid(a * b) + sg.softplus(c - a) + sp.exp(sp.tanh(b * c)),
         np.array([0.8, -1.2, 0.5])),
        ("exp(3a) sin(5b) / (1 + c^2)",
         sp.exp(3 * a) * sp.sin(5 * b) / (1 + c**2), np.array([0.9, 0.33, 2.0])),
    ]


def count_calls(f: sg.Kernel) -> tuple[object, dict[str, int]]:
    """A wrapper that counts value / value_complex calls (duck-typed like a Kernel)."""
    n = {"calls": 0}

    class Counted:
        params, analytic, expr, data_names = f.params, f.analytic, f.expr, f.data_names
        problem = f.problem

        def value(self, x, **d):
            n["calls"] += 1
            return f.value(x, **d)

        def value_complex(self, x, **d):
            n["calls"] += 1
            return f.value_complex(x, **d)

        def grad(self, x, **d):
            return f.grad(x, **d)

    return Counted(), n


def main() -> None:
    print(f"{'expression':<50} {'method':<11} {'max rel err':>11} {'max abs err':>11} "
          f"{'f evals':>7} {'time ms':>8}  ok")
    worst = dict.fromkeys(METHODS, 0.0)
    for name, expr, x in cases():
        f = sg.compile(expr)
        f.grad(x)  # compile outside the timing
        f.value(x)
        f.value_complex(x.astype(complex))
        for m in METHODS:
            k, calls = count_calls(f)
            t0 = time.perf_counter()
            chk = check_grad(k, x, method=m)
            ms = 1e3 * (time.perf_counter() - t0)
            worst[m] = max(worst[m], chk.max_rel_err)
            print(f"{name[:50]:<50} {m:<11} {chk.max_rel_err:>11.2e} {chk.max_abs_err:>11.2e} "
                  f"{calls['calls']:>7d} {ms:>8.2f}  {chk.ok}")
        if name.startswith("rosenbrock"):
            print(f"{'':<50} gradient {f.grad(x).tolist()} (seed: [396, 200])")
    print()
    print("worst max rel err per method: " + ", ".join(f"{m} {worst[m]:.1e}" for m in METHODS))
    for m in METHODS:
        record("checker_accuracy", f"check_grad worst relative error, method={m!r}", worst[m],
               target=1e-13 if m in ("complex", "exact") else None)
    print()
    print(f"{'Hessian (differences of the gradient)':<50} {'method':<11} {'max rel err':>11}")
    for name, expr, x in cases():
        f = sg.compile(expr)
        for m in ("central", "richardson", "complex", "exact"):
            h = check_hessian(f, x, method=m)
            print(f"{name[:50]:<50} {m:<11} {h.max_rel_err:>11.2e}  hvp {h.hvp_max_rel_err:.1e}"
                  f"  {h.ok}")


if __name__ == "__main__":
    main()
