"""The training loop: ``minimize(f, x0, optimizer=..., steps=...) -> OptimizeResult``.

``f`` is a symgrad Kernel of a loss (``kind`` ``"scalar"`` or ``"array"``, or its bound form),
any other object with ``value_and_grad(x, **data) -> (value, grad)`` (a residual kernel's
½‖r‖², a Dask-bound kernel), or any callable ``f(x, **data) -> (value, grad)``; see
:mod:`symgrad.train.objective`. The loop runs one of two ways, with the same numbers (tests
check 1e-12; in practice bit for bit):

- **compiled** (:mod:`symgrad.train.compiled`): a Kernel of a loss, an optimizer with a rule
  (every built-in one; :func:`symgrad.optim.from_rule`) and no callback, full batch or
  mini-batch, float64 or float32 kernels. The loop is generated once per kernel and optimizer
  rule and cached on disk like the kernels.
- **Python** (:mod:`symgrad.train.python_loop`): always available; callbacks, hand-written
  ``(init, update)`` pairs, objects with ``value_and_grad`` and plain callables run here.

A float32 kernel is called with ``x`` rounded to float32 and its gradient widened to float64:
``x``, the optimizer state, the history and the result are float64 in both loops (updates
below float32's resolution still add up; the same numbers in both loops). An ``x0`` beyond
float32's range is refused, and an update that leaves it ends the run as diverged.

``compiled=None`` (the default) runs the compiled loop whenever it can run. The first run of a
(kernel, optimizer rule) pair on a machine compiles it (about 1-3 s) and caches it on disk; a
later process loads it in milliseconds, and a later run in the same process reuses it. (Hiding
that first compile behind a Python run is not done: Numba compiles holding the GIL, so the
Python loop would stall beside it.) The Python loop runs what cannot compile: a callback, a
hand-written ``(init, update)`` pair, an object's ``value_and_grad``, a plain callable. One
exception: a rule that cannot be cached on disk (defined in ``__main__`` or in a closure)
would compile again in every process, so it compiles only for runs long enough to pay for it (over
``_COMPILE_SECONDS / _PYTHON_STEP_SECONDS`` = 400,000 steps) or once compiled in the process.

Ctrl-C ends a run at the next step (Python loop) or slice of at most about 0.2 s (compiled
loop) with ``status="interrupted"``, ``x`` the iterate reached (:mod:`symgrad.train.interrupt`);
a second Ctrl-C raises KeyboardInterrupt at once.

Both loops call the kernel's serial ``f.jit.value_and_grad`` (not the ``prange`` variant
``Kernel.value_and_grad`` picks for large data), so they sum in the same order; mini-batches
pass a scalar kernel the batch's sample indices (no copy of the data) and an array kernel the
batch's rows (gathered, contiguous for BLAS, as its ``batch=`` does); an object or a plain
callable gets ``f.value_and_grad(x, **data)`` / ``f(x, **data)`` with the batch's rows of the
per-sample columns (the others whole).

Step ``k`` (0-based) evaluates the loss ``f_k`` and gradient ``g_k`` at the iterate ``x_k``,
checks the stopping rules, records ``(k, f_k, lr_k, |g_k|)`` every ``record_every`` steps (and
``x_k`` with ``record_x=True``) and applies the update to get ``x_{k+1}``. The stopping rules,
in order:

- *diverged*: ``f_k`` or ``g_k`` not finite, or ``f_k > diverge_factor * max(1, |f_0|)``, or the
  update produced non-finite parameters. ``res.x`` is then ``x_k``, the last iterate with
  finite parameters, and ``res.message`` names the step. Never a silent NaN.
- *converged*: ``|g_k| <= gtol`` (Euclidean norm), or ``|f_{k-1} - f_k| <= tol * max(|f_{k-1}|,
  |f_k|, 1)``. In mini-batch mode ``tol`` compares consecutive epoch losses instead (and
  ``gtol`` is not available: batch gradients are noise).
- *stopped*: ``callback(k, x_k, f_k, g_k)`` returned True.
- otherwise the loop ends after ``steps`` steps: status ``"completed"`` (or ``"maxiter"``,
  unsuccessful, when ``tol``/``gtol`` were given and not met).

``res.x`` is the final iterate, ``res.fun``/``res.jac`` the loss and gradient there on the
full data (one extra evaluation unless the loop already has them), ``res.nit`` the number of
updates applied, ``res.nfev`` the number of objective evaluations. NumPy overflow warnings
inside the loop are silenced: non-finite values are reported through ``status="diverged"``.

>>> import numpy as np
>>> from symgrad import optim, schedules
>>> def f(x):   # the seed's Rosenbrock variant, hand-differentiated
...     a, b = x[1] - x[0]**2, 1 - x[0]
...     return a*a + b*b, np.array([-4*x[0]*a - 2*b, 2*a])
>>> res = minimize(f, [2.0, 2.0], optimizer=optim.sgd(lr=0.1), steps=100)
>>> res.status, np.round(res.x, 4), f"{res.fun:.2e}"
('completed', array([1.0088, 1.0214]), '9.13e-05')
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

from ..distributed.detect import has_dask
from ..runtime import blas
from ..runtime.bound import KINDS
from ..runtime.bound import is_kernel as any_kernel
from . import second_run
from .compiled import compiled_reason, loads_fast
from .compiled_run import run_compiled
from .objective import own_hvp
from .optim import Optimizer, lbfgs, newton, sgd
from .plan import Callback, plan
from .python_loop import run_python
from .result import OptimizeResult
from .second_order import SecondOrder, check_call

__all__ = ["default_optimizer", "minimize"]

#: For a loop that cannot be cached on disk: its compile time (1-3 s on a 2-core machine) and
#: the Python loop's overhead per step (3-10 us).
_COMPILE_SECONDS, _PYTHON_STEP_SECONDS = 2.0, 5e-6


def minimize(
    f: Any,
    x0: Any,
    *,
    optimizer: Optimizer | SecondOrder | None = None,
    steps: int | None = None,
    data: Mapping[str, Any] | None = None,
    batch_size: int | None = None,
    epochs: int | None = None,
    seed: Any = None,
    tol: float | None = None,
    gtol: float | None = None,
    callback: Callback | None = None,
    progress: bool = False,
    record_every: int = 1,
    record_x: bool = False,
    compiled: bool | None = None,
    diverge_factor: float | None = 1e6,
    hvp: Callable[..., Any] | None = None,
    **columns: Any,
) -> OptimizeResult:
    """Minimize ``f`` from ``x0`` (first-order, L-BFGS or Newton); see the module docstring.

    Args:
        f: a Kernel from ``sg.compile``, an object with ``value_and_grad(x, **data)``, or a
            callable ``f(x, **data) -> (value, grad)``.
        x0: initial parameters (1-D; copied, never modified).
        optimizer: from :mod:`symgrad.optim`. ``optim.lbfgs()`` / ``optim.newton()``:
            ``steps`` counts their iterations. Default (:func:`default_optimizer`):
            ``optim.lbfgs()`` on the full data (``optim.newton()`` when ``hvp=`` is given),
            ``optim.sgd(lr=1e-3)`` with ``batch_size`` or ``epochs``.
        steps: number of optimizer steps (default 1000 unless ``epochs`` is given).
        data: data columns by name: per-sample columns (one row per sample) and a Kernel's
            whole arrays (``samples=False``, ``indexed=True``: read whole, any length); only
            the per-sample columns are batched.
        batch_size: mini-batch size; batches are drawn without replacement from a fresh
            permutation each epoch (``np.random.default_rng(seed)``), the last batch of an
            epoch holds the remainder. ``None``: full batch.
        epochs: passes over the data (instead of ``steps``).
        seed: seed of the shuffling.
        tol: stop when the relative change of the loss (per step; per epoch with batches)
            is ``<= tol``.
        gtol: stop when the gradient norm is ``<= gtol`` (full batch only). None: never, for
            first-order optimizers; for ``optim.lbfgs()``/``optim.newton()`` the default
            ``1e-5 * min(1, |g_0|)`` (SciPy's L-BFGS-B ``gtol=1e-5``, relative to a starting
            gradient below 1). These also report ``"converged"`` when no step decreases the
            loss and their own step is below rounding (the rounding floor, see
            :func:`symgrad.train.second_order.at_rounding_floor`); ``"failed"`` otherwise.
        callback: ``callback(step, x, loss, grad)`` before each update; return True to stop.
            Do not modify the arrays it receives.
        progress: show a progress bar (tqdm when installed, else a line on stderr).
        record_every: record the history (step, loss, learning rate, gradient norm: at most
            32 bytes) every this many steps (0: no history).
        record_x: record the iterate ``x`` too (``history.x``: ``8 * len(x)`` bytes a
            record, e.g. for ``plot.contour``); False keeps ``history.x`` empty.
        compiled: run the loop inside Numba: None whenever possible (see the module
            docstring); True insists (ValueError saying why when not possible); False never.
        diverge_factor: stop as diverged when the loss exceeds
            ``diverge_factor * max(1, |initial loss|)``; None keeps only the non-finite check.
            (L-BFGS and Newton never increase the loss; they ignore it.)
        hvp: ``hvp(x, v, **data) -> H v`` for ``optim.newton()`` with a plain callable ``f``
            (a Kernel brings its exact HVP).

    ``optim.lbfgs()`` and ``optim.newton()`` (full batch only) run their own loops, see
    :mod:`symgrad.train.second_order`: same stopping rules, history and result.

    Returns:
        OptimizeResult with x, fun, jac, nit, nfev, success, status, message, history.

    >>> import numpy as np
    >>> from symgrad import optim
    >>> res = minimize(lambda x: (x @ x, 2 * x), [3.0, -4.0], optimizer=optim.sgd(0.25),
    ...                steps=50, gtol=1e-8)
    >>> res.status, res.nit, bool(np.abs(res.x).max() < 1e-8)   # x halves every step
    ('converged', 30, True)
    """
    if columns:
        names = ", ".join(f"{k!r}: ..." for k in columns)
        raise TypeError(f"minimize() takes the data as one mapping: data={{{names}}} (got "
                        f"{', '.join(columns)} as keywords)")
    if optimizer is None:
        optimizer = default_optimizer(batch_size, epochs, compiled, hvp)
    if data is not None and has_dask(data):  # columns on a Dask cluster: reduced there
        f, data = _on_dask(f, data, batch_size, epochs)  # its methods (hvp too) run there
    if isinstance(optimizer, SecondOrder):  # L-BFGS / Newton: their own loops
        check_call(optimizer, exact_hvp=own_hvp(f), hvp=hvp, batch_size=batch_size, epochs=epochs,
                   compiled=compiled)
    elif hvp is not None:
        raise ValueError("hvp= is used by optim.newton() only")
    p = plan(f, x0, optimizer, steps, data, batch_size, epochs, seed, tol, gtol, callback,
              progress, record_every, diverge_factor, record_x)  # fmt: skip
    blas.refresh()  # the kernels' BLAS threads for this run (the Python loop also per step)
    if isinstance(p.opt, SecondOrder):
        return second_run.run(p, hvp)
    if compiled is None:
        use = not compiled_reason(p) and (
            loads_fast(p) or p.steps * _PYTHON_STEP_SECONDS > _COMPILE_SECONDS)
    elif compiled:
        reason = compiled_reason(p)
        if reason:
            raise ValueError(f"compiled=True is not possible: {reason}; use compiled=None")
        use = True
    else:
        use = False
    if not use:
        return run_python(p)
    if compiled:
        return run_compiled(p)
    return _compiled_or_python(p)


def default_optimizer(batch_size: Any = None, epochs: Any = None, compiled: bool | None = None,
                      hvp: Any = None) -> Optimizer | SecondOrder:
    """The optimizer of ``minimize(..., optimizer=None)``: ``optim.lbfgs()`` on the full data,
    so that a run with default arguments converges and says so (status ``"converged"``; a
    fixed-step first-order method would stop after ``steps`` wherever it is);
    ``optim.newton()`` when an ``hvp`` is given; ``optim.sgd(lr=1e-3)`` for mini-batches or
    epochs, which L-BFGS cannot take. ``compiled=True`` on the full data needs an explicit
    first-order optimizer (L-BFGS runs in Python): ValueError.

    >>> default_optimizer().name, default_optimizer(batch_size=32).name
    ('lbfgs', 'sgd')
    """
    if batch_size is not None or epochs is not None:
        return sgd(lr=1e-3)
    if compiled:
        raise ValueError("compiled=True runs first-order optimizers, and the default optimizer "
                         "of a full-batch run is optim.lbfgs() (it runs in Python): pass "
                         "optimizer= (e.g. optim.adam(lr=1e-3)) or drop compiled=True")
    return newton() if hvp is not None else lbfgs()


def _compiled_or_python(p: Any) -> OptimizeResult:
    """The default: the compiled loop; if Numba cannot compile it for this kernel (an error at
    its first call, before any step), the Python loop with a warning saying why."""
    from numba.core.errors import NumbaError

    try:
        return run_compiled(p)
    except NumbaError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        warnings.warn(f"the compiled training loop did not compile for this loss ({first}); "
                      "running the Python loop (compiled=False silences this)", RuntimeWarning,
                      stacklevel=3)
        return run_python(p)


def _on_dask(f: Any, data: Mapping[str, Any], batch_size: Any, epochs: Any) -> tuple[Any, None]:
    """Full-batch training on Dask columns: the kernel bound to them, persisted on the cluster
    once; each step is then one map-reduce over the chunks (:mod:`symgrad.distributed`)."""
    if not (any_kernel(f, *KINDS, "sum") and hasattr(f, "bind")):  # loss, residual, index sum
        raise TypeError("Dask data need a symgrad Kernel (sg.compile(loss)): a plain callable "
                        "would pull the columns into this process")
    if batch_size is not None or epochs is not None:
        raise ValueError("mini-batches of Dask data: use sg.distributed.sgd(f.bind(**data), ...)"
                         ", which samples whole chunks with a seed")
    return f.bind(**data).persist(), None
