"""The generated module texts of representative losses, byte for byte (a guardrail for refactors
of the code generators: any change to a text must be deliberate).

Regenerate deliberately (then review the diff of ``tests/snapshots/``)::

    SYMGRAD_UPDATE_SNAPSHOTS=1 python -m pytest -q -o addopts="" tests/test_snapshots.py
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import sympy as sp

import symgrad as sg
from symgrad.ad.derive import derive
from symgrad.backend.numba import CodegenOptions, module_source
from symgrad.backend.numba.array_module import array_module_source
from symgrad.backend.numba.model_module import model_module_source
from symgrad.backend.numba.residual_module import residual_source
from symgrad.ir.array_problem import array_problem
from symgrad.ir.model_problem import model_problem
from symgrad.ir.problem import problem
from symgrad.ir.residual_problem import residual_problem
from symgrad.lang import losses

SNAPSHOTS = Path(__file__).parent / "snapshots"
#: fixed options, so a version bump does not change the snapshots
OPTS = CodegenOptions(regenerate="snapshot", version="snapshot")


def _scalar_data(real="float64"):
    a, b, c = sg.params("a b c")
    t, y = sg.data("t y")
    return module_source(derive(problem(sg.mean((a * sg.exp(-b * t) + c - y) ** 2)
                                        + 0.1 * sp.Abs(a))), OPTS, real)


def _logsumexp():
    a, b = sg.params("a b")
    t, y = sg.data("t y")
    return module_source(derive(problem(sg.mean(sg.logsumexp(a * t, b, y) - y * a))), OPTS)


def _param_only():
    x1, x2 = sg.params("x1 x2")
    return module_source(derive(problem((x2 - x1**2)**2 + (1 - x1)**2 + sg.max(x1, x2, 0))), OPTS)


def _vector_sum():
    x = sg.params("x", indexed=True)
    i = sg.index("i")
    return module_source(derive(problem(sg.sum(100 * (x[i + 1] - x[i] ** 2) ** 2
                                                + (1 - x[i]) ** 2, (i, 0, x.length - 1)))), OPTS)


def _elements():
    x = sg.params("x", indexed=True)
    lam = sg.params("lam")
    y, w = sg.data("y w", indexed=True)
    i = sg.index("i")
    return module_source(derive(problem(
        lam**2 * sg.sum(w[i] * (x[i] - y[i]) ** 2, (i, 0, x.length))
        + sg.sum((x[i + 1] - x[i]) ** 2, (i, 0, x.length - 1)))), OPTS)


def _mlp(real="float64"):
    W1, b1 = sg.params("W1", shape=(4, 3)), sg.params("b1", shape=(4,))
    W2 = sg.params("W2", shape=(2, 4))
    X, Y = sg.data("X", shape=(3,)), sg.data("Y", shape=(2,))
    loss = losses.cross_entropy(W2 @ sg.tanh(W1 @ X + b1), Y)
    return array_module_source(array_problem(loss), opts=OPTS, real=real)


def _f32():
    b = sg.params("b", shape=(2,))
    X = sg.data("X", shape=(2,))
    return array_module_source(array_problem(sg.mean(sg.sum(sg.relu(X + b) ** 2, axis=0))),
                               opts=OPTS, real="float32")


def _model():
    W = sg.params("W", shape=(3, 2))
    X = sg.data("X", shape=(2,))
    return model_module_source(model_problem(sg.softmax(W @ X)), opts=OPTS)


def _residual_small():
    a, b = sg.params("a b")
    t, y = sg.data("t y")
    return residual_source(residual_problem(a * sg.exp(-b * t) - y), opts=OPTS)


def _residual_looped():
    ps = sg.params(" ".join(f"p{k}" for k in range(14)))
    t, y = sg.data("t y")
    return residual_source(residual_problem(sum(p * t**k for k, p in enumerate(ps)) - y),
                           opts=OPTS)


def _residual_two():
    a, b = sg.params("a b")
    t, y = sg.data("t y")
    return residual_source(residual_problem([a * t - y, sg.relu(b * t) - y]), opts=OPTS)


CASES = {"scalar_data": _scalar_data, "scalar_f32": lambda: _scalar_data("float32"),
         "logsumexp": _logsumexp, "param_only": _param_only,
         "vector_sum": _vector_sum, "elements": _elements, "array_mlp": _mlp,
         "array_f32": _f32, "model": _model,
         "residual_small": _residual_small, "residual_looped": _residual_looped,
         "residual_two": _residual_two}


@pytest.mark.parametrize("name", sorted(CASES))
def test_snapshot(name):
    text = CASES[name]()
    path = SNAPSHOTS / f"{name}.py.txt"
    if os.environ.get("SYMGRAD_UPDATE_SNAPSHOTS") == "1":
        SNAPSHOTS.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    want = path.read_text(encoding="utf-8")
    if text != want:
        a, b = text.splitlines(), want.splitlines()
        pairs = enumerate(zip(a, b, strict=False))
        k = next((k for k, (x, y) in pairs if x != y), min(len(a), len(b)))
        pytest.fail(f"the generated text of {name!r} changed (sha256 "
                    f"{hashlib.sha256(text.encode()).hexdigest()[:12]}, snapshot "
                    f"{hashlib.sha256(want.encode()).hexdigest()[:12]}), first at line {k + 1}:\n"
                    f"  now:      {a[k] if k < len(a) else '<end>'}\n"
                    f"  snapshot: {b[k] if k < len(b) else '<end>'}\n"
                    "if deliberate: SYMGRAD_UPDATE_SNAPSHOTS=1 python -m pytest -q -o addopts='' "
                    "tests/test_snapshots.py")


def test_looped_case_is_looped():
    """The P = 14 residual case exercises the looped J^T J pass (P > 12)."""
    assert "Jb = np.empty((14, " in CASES["residual_looped"]()
    assert "Jb = np.empty(" not in CASES["residual_small"]()
