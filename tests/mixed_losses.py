"""The mixed loss (index sums + array terms) shared by tests/test_mixed_sums.py and
tests/test_float32_fused.py: the same expression and names give the same generated module, so
a cold run compiles its float64 fused kernel once (the second file loads it from the cache)."""

from __future__ import annotations

import symgrad as sg


def mixed_loss(width: int = 3):
    """A smoothing penalty over a vector v (index sums, with an element-wise data column z and
    a scalar c only they read) plus a least-squares array term of ``width`` features; ``a`` is
    shared by both.

    (The parameter names are these files' own: the default packing order follows the last
    declaration of a name, so re-declaring another test module's ``a`` would reorder it.)"""
    v = sg.params("vm", indexed=True)
    i = sg.index("i")
    a, c = sg.params("am cm")
    z = sg.data("z", indexed=True)
    w = sg.params("wm", shape=(width,))
    X = sg.data("X", shape=(width,))
    y = sg.data("y")
    smooth = sg.sum((v[i + 1] - v[i]) ** 2 + a ** 2 * v[i] ** 2, (i, 0, v.length - 1))
    fit = sg.sum((v[i] - c * z[i]) ** 2, (i, 0, v.length))
    return smooth + sg.mean((X @ w + a - y) ** 2) + fit + 0.1 * sg.sum(w ** 2)
