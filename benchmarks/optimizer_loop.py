"""Optimizer-loop overhead: 10,000 heavy-ball momentum steps on the 2-D Rosenbrock function.

    python benchmarks/optimizer_loop.py [--steps 10000] [--repeat 30]

Compares, in the same process and on the same kernel (``sg.compile`` of
``100*(x2 - x1**2)**2 + (1 - x1)**2``; a hand-written Numba stand-in if the core is missing):

- hand-written: an all-Numba loop written by hand: the kernel's ``jit.value_and_grad`` passed
  as a first-class argument and the momentum update, nothing else (the baseline);
- hand-inlined: the same loop with the Rosenbrock gradient typed in by hand (no kernel at all);
- ``sg.minimize(compiled=True)``: the library's compiled loop end to end (argument checks,
  schedule, result object), without and with the per-step history;
- ``sg.minimize(compiled=False)``: the Python-driven loop.

Prints the best-of-``repeat`` wall time, the cost per step and the ratios to the hand-written
loop, all measured in this run. The target is compiled/hand-written within 1.5x.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numba
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import symgrad
from symgrad import optim
from symgrad.train import minimize

LR, BETA, X0 = 1e-4, 0.9, (-1.2, 1.0)


@numba.njit(cache=False)
def _standin_vg(x, g):
    a = x[1] - x[0] * x[0]
    b = 1.0 - x[0]
    g[0] = -400.0 * x[0] * a - 2.0 * b
    g[1] = 200.0 * a
    return 100.0 * a * a + b * b


class _StandIn:
    """The contract's stand-in kernel (used only when ``symgrad.compile`` is unavailable)."""

    params, n_params, data_names = ("x1", "x2"), 2, ()

    class jit:
        value_and_grad = _standin_vg

    def data_args(self, data=None, batch=None):
        return ()

    def value_and_grad(self, x, out=None, *, batch=None):
        g = np.empty(2) if out is None else out
        return _standin_vg(x, g), g


def make_kernel():
    if hasattr(symgrad, "compile"):
        x1, x2 = symgrad.params("x1 x2")
        return symgrad.compile(100 * (x2 - x1**2) ** 2 + (1 - x1) ** 2), "sg.compile kernel"
    return _StandIn(), "hand-written stand-in (sg.compile not available)"


@numba.njit(cache=False)
def hand_written(vg, x, lr, beta, steps):
    """Momentum with the kernel as a first-class argument: the whole loop in Numba."""
    n = x.size
    g = np.empty(n)
    v = np.zeros(n)
    f = 0.0
    for _ in range(steps):
        f = vg(x, g)
        for i in range(n):
            v[i] = beta * v[i] - lr * g[i]
            x[i] = x[i] + v[i]
    return f


@numba.njit(cache=False)
def hand_inlined(x, lr, beta, steps):
    """The same loop with the Rosenbrock gradient typed in."""
    v0 = 0.0
    v1 = 0.0
    f = 0.0
    for _ in range(steps):
        a = x[1] - x[0] * x[0]
        b = 1.0 - x[0]
        f = 100.0 * a * a + b * b
        v0 = beta * v0 - lr * (-400.0 * x[0] * a - 2.0 * b)
        v1 = beta * v1 - lr * (200.0 * a)
        x[0] += v0
        x[1] += v1
    return f


def best_of_interleaved(fns: dict, repeat: int) -> dict:
    """Best wall time of each callable, taking turns so that machine load hits all alike."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def closure_loop(vg):
    """The hand-written loop with the kernel frozen in as a constant (no per-call dispatch
    on a function-typed argument, which costs Numba several microseconds per call)."""

    @numba.njit(cache=False)
    def run(x, lr, beta, steps):
        return hand_written(vg, x, lr, beta, steps)

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=30)
    args = ap.parse_args()
    steps, repeat = args.steps, args.repeat

    f, label = make_kernel()
    vg = f.jit.value_and_grad
    opt = optim.momentum(lr=LR, beta=BETA)

    def run_hand():
        return hand_written(vg, np.array(X0), LR, BETA, steps)

    def run_inlined():
        return hand_inlined(np.array(X0), LR, BETA, steps)

    def run_compiled(record_every):
        return lambda: minimize(f, X0, optimizer=opt, steps=steps, record_every=record_every,
                                compiled=True)  # fmt: skip

    def run_python():
        return minimize(f, X0, optimizer=opt, steps=steps, record_every=0, compiled=False)

    # warm up (compiles) and check that every variant computes the same iterate
    x_hand = np.array(X0)
    hand_written(vg, x_hand, LR, BETA, steps)
    run_inlined()
    res_c = run_compiled(1)()
    run_compiled(0)()
    res_p = run_python()
    assert np.array_equal(res_c.x, x_hand), (res_c.x, x_hand)
    assert np.array_equal(res_c.x, res_p.x)

    closure = closure_loop(vg)
    closure(np.array(X0), LR, BETA, steps)
    fast = best_of_interleaved(
        {
            "hand-written Numba loop (kernel as argument)": run_hand,
            "hand-written Numba loop (kernel as constant)": lambda: closure(
                np.array(X0), LR, BETA, steps
            ),
            "hand-inlined Numba loop (no kernel)": run_inlined,
            "sg.minimize compiled, record_every=0": run_compiled(0),
            "sg.minimize compiled, record_every=1": run_compiled(1),
        },
        repeat,
    )
    py_repeat = max(1, min(repeat, 3))
    rows = [
        *fast.items(),
        ("sg.minimize Python loop", best_of_interleaved({0: run_python}, py_repeat)[0]),
    ]
    base = rows[0][1]
    print(f"{steps} momentum steps (lr={LR}, beta={BETA}) on 2-D Rosenbrock, {label}")
    print(f"numba {numba.__version__}, numpy {np.__version__}, best of {repeat} "
          f"({py_repeat} for the Python loop); final x = {res_c.x}")  # fmt: skip
    print(f"{'variant':48s} {'total':>10s} {'per step':>10s} {'ratio':>8s}")
    for name, t in rows:
        print(f"{name:48s} {t * 1e3:8.3f}ms {t / steps * 1e9:8.1f}ns {t / base:7.2f}x")
    comp, comp_h, py = fast["sg.minimize compiled, record_every=0"], rows[4][1], rows[5][1]
    const = fast["hand-written Numba loop (kernel as constant)"]
    print()
    print(f"compiled (no history) / hand-written (argument): {comp / base:.2f}x  (target <= 1.5x)")
    print(f"compiled (no history) / hand-written (constant): {comp / const:.2f}x")
    print(f"compiled (history)    / hand-written (argument): {comp_h / base:.2f}x")
    print(f"Python loop / compiled (no history): {py / comp:.0f}x; "
          f"Python loop per step: {py / steps * 1e6:.2f} us")  # fmt: skip


if __name__ == "__main__":
    main()
