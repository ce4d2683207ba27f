"""Running ``optim.lbfgs()`` / ``optim.newton()`` for :func:`symgrad.minimize`: the plan's
loss (and HVP) as plain functions, the :class:`~symgrad.train.second_order.Monitor`, and the
:class:`~symgrad.train.result.OptimizeResult`.

Above the loops it drives (:mod:`symgrad.train.lbfgs`, :mod:`symgrad.train.newton`) and the
bookkeeping they share (:mod:`symgrad.train.second_order`), so nothing imports back up.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .evaluate import full_evaluator, hvp_evaluator
from .interrupt import Interrupt
from .lbfgs import lbfgs_minimize
from .newton import newton_minimize
from .plan import Plan, param_labels
from .result import History, OptimizeResult, Progress, diverged_message
from .second_order import Monitor, SecondOrder, describe_stop

__all__ = ["run"]


def run(p: Plan, hvp: Any) -> OptimizeResult:
    """Run the method of the plan ``p`` (:func:`symgrad.train.plan.plan`)."""
    method: SecondOrder = p.opt
    fun_and_grad = full_evaluator(p)
    n = p.x0.size

    def describe(k: int, why: str, f: float, x: np.ndarray, g: np.ndarray) -> str:
        if k == 0:
            return diverged_message(0, why, f, math.inf, x, g, param_labels(p, n))
        return describe_stop(k, why, f)

    bar = Progress(p.steps, p.progress)
    callback = p.callback
    if p.progress:
        def callback(k, x, f, g, _user=p.callback):
            bar.update(1, f)
            return bool(_user(k, x, f, g)) if _user is not None else False

    intr = Interrupt().__enter__()
    gtol = "default" if p.gtol is None else p.gtol
    mon = Monitor(gtol=gtol, tol=p.tol, callback=callback, record_every=p.record_every,
                  record_x=p.record_x, describe=describe, interrupt=intr, arith=p.arith)
    try:
        if method.needs_hvp:
            out = newton_minimize(fun_and_grad, hvp_evaluator(p, hvp), p.x0, steps=p.steps,
                                  monitor=mon, **method.options)
        else:
            out = lbfgs_minimize(fun_and_grad, p.x0, steps=p.steps, monitor=mon,
                                 **method.options)
    finally:
        intr.__exit__(None, None, None)
        bar.close()
    history = History(
        step=np.array(out.steps, dtype=np.int64),
        x=np.array(out.xs, dtype=np.float64).reshape(len(out.xs), n),
        loss=np.array(out.losses, dtype=np.float64),
        lr=np.array(out.step_sizes, dtype=np.float64),
        grad_norm=np.array(out.grad_norms, dtype=np.float64),
    )
    return OptimizeResult(x=out.x, fun=out.fun, jac=out.jac, nit=out.nit, nfev=out.nfev,
                          status=out.status, message=out.message, history=history,
                          compiled=False, nhev=out.nhev)
