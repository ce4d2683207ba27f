"""Expression swell: value_and_grad cost relative to value, symgrad vs naive per-parameter diff.

    python benchmarks/expression_swell.py

symgrad differentiates by accumulation over the shared-subexpression DAG, so the gradient code
grows linearly. The naive approach (``sympy.diff`` of the whole tree per parameter, lambdified and
jitted) is printed alongside. Target: value_and_grad time / value time <= 4 for symgrad.
"""

from __future__ import annotations

import sys
import time
import timeit
from pathlib import Path

import numba
import numpy as np
import sympy as sp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from report import record

import symgrad as sg


def best_ns(stmt, number: int = 20_000, repeat: int = 5) -> float:
    return min(timeit.repeat(stmt, number=number, repeat=repeat)) / number * 1e9


def product(n: int = 40):
    a = sg.params([f"a{k}" for k in range(n)])
    return sp.Mul(*[sp.sin(ak) for ak in a]), list(a)


def nested_tanh(depth: int = 40):
    w, b = sg.params("w b")
    t = w
    for _ in range(depth):
        t = sp.tanh(w * t + b)
    return t, [w, b]


def naive(loss, params):
    """sympy.diff per parameter on the whole tree, lambdified to math and jitted."""
    t0 = time.perf_counter()
    grads = [sp.diff(loss, p) for p in params]
    val = numba.njit(sp.lambdify([params], loss, modules="math"))
    vg_py = sp.lambdify([params], [loss, *grads], modules="math")
    vg = numba.njit(vg_py)
    x = np.linspace(0.1, 0.9, len(params))
    val(x), vg(x)
    lines = len(sp.pycode(sp.Matrix([loss, *grads]), fully_qualified_modules=True).split("\n"))
    chars = sum(len(sp.pycode(e)) for e in [loss, *grads])
    return val, vg, x, time.perf_counter() - t0, lines, chars



def report(name: str, loss, params) -> None:
    t0 = time.perf_counter()
    f = sg.compile(loss, params=params)
    x = np.linspace(0.1, 0.9, len(params))
    g = np.empty(len(params))
    f.value(x), f.value_and_grad(x, out=g)
    t_sg = time.perf_counter() - t0
    jv, jvg = f.jit.value, f.jit.value_and_grad
    tv, tvg = best_ns(lambda: jv(x)), best_ns(lambda: jvg(x, g))
    src = f.source
    vg_src = src[src.index("def value_and_grad("):src.index("def grad(")]
    v_src = src[src.index("def value("):src.index("def value_and_grad(")]
    print(f"{name}  ({len(params)} parameters)")
    print(f"  symgrad  value {tv:8.0f} ns  value_and_grad {tvg:8.0f} ns  ratio {tvg / tv:5.2f} "
          f"(target <= 4: {'met' if tvg / tv <= 4 else 'NOT met'})")
    record("expression_swell", f"value_and_grad / value, {name}", tvg / tv, unit="x", target=4)
    print(f"           lines: value {v_src.count(chr(10))}, value_and_grad "
          f"{vg_src.count(chr(10))}, module {src.count(chr(10))};  "
          f"compile+first call {t_sg:.2f} s (cache dir {f.path.parent})")
    t0 = time.perf_counter()
    try:
        val, vg, x, t_nv, _lines, chars = naive(loss, params)
    except RecursionError:
        print(f"  naive    fails after {time.perf_counter() - t0:.1f} s: RecursionError (the "
              f"recursive diff/print of a depth-40 tree exceeds the recursion limit "
              f"{sys.getrecursionlimit()})")
        return
    nv, nvg = best_ns(lambda: val(x)), best_ns(lambda: vg(x))
    print(f"  naive    value {nv:8.0f} ns  value_and_grad {nvg:8.0f} ns  ratio {nvg / nv:5.2f}")
    print(f"           printed gradient: {chars} characters;  diff+lambdify+njit {t_nv:.2f} s")
    print(f"  symgrad value_and_grad vs naive: {nvg / tvg:5.2f}x faster")


if __name__ == "__main__":
    sys.setrecursionlimit(20_000)  # give the naive approach a fair chance on deep trees
    report("product of 40 sin(a_k)", *product(40))
    report("tanh nested 40 deep", *nested_tanh(40))
