"""Training: optimizers (one rule each), schedules, the loop (compiled and Python), L-BFGS and
Newton, and the result.

    optim.py         optimizers: an element-wise rule each, and their (init, update) pairs
    schedules.py     learning-rate schedules (step -> value)
    plan.py          minimize's arguments checked into a Plan
    python_loop.py   the loop in Python
    compiled.py      the loop generated per (kernel function, rule), compiled and cached
    compiled_run.py  running it in slices (Ctrl-C between them), the result
    interrupt.py     Ctrl-C: stop at the next step and return the iterate reached
    run.py           minimize: plan, choose the loop, run
    result.py        OptimizeResult, History, divergence messages, progress
    second_order.py  lbfgs.py  newton.py   quasi-Newton and Newton methods
"""

from . import optim, schedules
from .result import History, OptimizeResult
from .run import minimize

__all__ = ["History", "OptimizeResult", "minimize", "optim", "schedules"]
