"""The training loop: ``minimize(f, x0, optimizer=..., steps=...) -> OptimizeResult``.

``f`` is a symgrad Kernel (anything with ``.value_and_grad``, ``.jit`` and ``.data_args``) or
any callable ``f(x, **data) -> (value, grad)``. The loop runs one of two ways, with the same
numbers:

- **Python-driven** (always available): each step calls the objective, then
  ``optimizer.update``. Mini-batches, callbacks and user-defined optimizers run here.
- **Compiled**: with a Kernel, a built-in optimizer, full-batch data and no callback, the whole
  loop runs inside one Numba function that receives ``f.jit.value_and_grad`` as a first-class
  argument (Numba inlines it) and records the history into preallocated arrays. It performs
  the same floating-point operations in the same order as the Python loop, so both give the
  same iterates (checked to 1e-12 in the tests; in practice bit for bit). ``compiled=None``
  picks it for runs of at least :data:`COMPILE_MIN_STEPS` steps (the first run with a new
  kernel compiles the loop, about a second).

Full-batch evaluations call the kernel's serial ``f.jit.value_and_grad`` in both loops (not the
``prange`` variant ``Kernel.value_and_grad`` picks for large data), so the two loops sum in the
same order. Mini-batches call ``f.value_and_grad(x, batch=idx, **data)`` (no copy of the data);
a plain callable gets ``f(x, **{name: column[idx]})``.

Step ``k`` (0-based) evaluates the loss ``f_k`` and gradient ``g_k`` at the iterate ``x_k``,
checks the stopping rules, records ``(k, x_k, f_k, lr_k, |g_k|)`` every ``record_every`` steps
and applies the update to get ``x_{k+1}``. The stopping rules, in order:

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

import functools
import math
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import schedules, second_order
from .arrays.kernel import ArrayKernel
from .optim import Optimizer, sgd
from .second_order import SecondOrder

__all__ = ["COMPILE_MIN_STEPS", "History", "OptimizeResult", "minimize"]

#: With ``compiled=None`` the compiled loop is used for runs of at least this many steps: a
#: first compile for a new kernel costs about a second, the Python loop a few microseconds a step.
COMPILE_MIN_STEPS = 2000

#: Default number of steps when neither ``steps`` nor ``epochs`` is given.
DEFAULT_STEPS = 1000

Callback = Callable[[int, np.ndarray, float, np.ndarray], Any]


@dataclass(frozen=True)
class History:
    """What the loop recorded every ``record_every`` steps (all arrays, one row per record).

    ``step[i]`` is the 0-based step, ``x[i]`` the iterate at which that step evaluated the loss
    ``loss[i]`` and the gradient (Euclidean norm ``grad_norm[i]``), ``lr[i]`` the learning rate
    that step used. The last record is the final iterate (``step == nit``, loss and gradient on
    the full data, ``lr`` the rate the next step would use), so ``x`` is the whole path.
    ``epoch_loss[e]`` (mini-batch runs only, else empty) is the batch-size-weighted mean of the
    step losses of epoch ``e`` (the usual running epoch loss for a mean-reduced loss).
    """

    step: np.ndarray
    x: np.ndarray
    loss: np.ndarray
    lr: np.ndarray
    grad_norm: np.ndarray
    epoch_loss: np.ndarray = field(default_factory=lambda: np.empty(0))

    def __len__(self) -> int:
        return len(self.step)

    def __repr__(self) -> str:
        last = f", last step {int(self.step[-1])}" if len(self.step) else ""
        return f"History({len(self.step)} records{last}, {len(self.epoch_loss)} epochs)"


@dataclass(frozen=True)
class OptimizeResult:
    """Result of :func:`minimize`, with SciPy's field names.

    Attributes:
        x: final parameters. fun: loss at ``x``. jac: gradient at ``x``.
        nit: updates applied (Newton: trust-region iterations, rejected steps included).
        nfev: objective (value-and-gradient) evaluations (``njev`` is the same number: each
        evaluation gives both). nhev: Hessian-vector products (``optim.newton()``), else 0.
        success: False only for ``"diverged"``, ``"maxiter"`` and ``"failed"``.
        status: ``"completed"``, ``"converged"``, ``"stopped"``, ``"maxiter"``, ``"diverged"``
            or ``"failed"`` (second-order methods: no step decreases the loss, i.e. the line
            search or the trust region failed).
        message: what happened, in words (the step number when it diverged).
        history: the recorded path, see :class:`History` (for ``optim.lbfgs()``/``newton()``
            ``lr`` holds the line-search step length / the trust radius).
        compiled: whether the compiled Numba loop ran.
    """

    x: np.ndarray
    fun: float
    jac: np.ndarray
    nit: int
    nfev: int
    success: bool
    status: str
    message: str
    history: History
    compiled: bool = False
    nhev: int = 0

    @property
    def njev(self) -> int:
        """Gradient evaluations: each objective evaluation returns the gradient too."""
        return self.nfev


# --------------------------------------------------------------------------- argument checking


def _is_kernel(f: Any) -> bool:
    return all(hasattr(f, a) for a in ("value_and_grad", "jit", "data_args"))


def _is_bound(f: Any) -> bool:
    """A ``Kernel.bind(**data)`` result: the kernel plus its validated data arguments."""
    return hasattr(f, "args") and _is_kernel(getattr(f, "kernel", None))


def _int_arg(name: str, value: Any, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _opt_float(name: str, value: Any) -> float | None:
    if value is None:
        return None
    v = float(value)
    if not (math.isfinite(v) and v >= 0):
        raise ValueError(f"{name} must be a finite number >= 0 (or None), got {value!r}")
    return v


@dataclass(frozen=True)
class _Plan:
    f: Any
    kernel: bool
    x0: np.ndarray
    opt: Optimizer
    steps: int
    data: Mapping[str, np.ndarray] | None
    n_samples: int
    batch_size: int | None  # None: full batch
    seed: Any
    tol: float | None
    gtol: float | None
    callback: Callback | None
    progress: bool
    record_every: int
    factor: float  # inf disables the loss bound
    jit_vg: Any = None  # f.jit.value_and_grad for kernels
    jit_args: tuple = ()  # its full-batch data arguments, f.data_args(data)


def _plan(
    f: Any,
    x0: Any,
    optimizer: Any,
    steps: Any,
    data: Any,
    batch_size: Any,
    epochs: Any,
    seed: Any,
    tol: Any,
    gtol: Any,
    callback: Any,
    progress: Any,
    record_every: Any,
    diverge_factor: Any,
) -> _Plan:
    bound = _is_bound(f)
    kernel = bound or _is_kernel(f)
    if not kernel and not callable(f):
        raise TypeError(
            "f must be a symgrad Kernel (sg.compile(loss)) or a callable "
            f"f(x, **data) -> (value, grad); got {type(f).__name__}"
        )
    if bound:
        if data is not None:
            raise ValueError("f is a bound kernel (its data are fixed): do not pass data=")
        f, jit_args = f.kernel, tuple(f.args)
    x = np.array(x0, dtype=np.float64)  # a copy: the caller's x0 is never modified
    if x.ndim == 0:
        x = x.reshape(1)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"x0 must be a non-empty 1-D array of parameters, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"x0 must be finite, got {x}")
    n_params = getattr(f, "n_params", None) if kernel else None
    if isinstance(n_params, int) and n_params != x.size:
        names = ", ".join(getattr(f, "params", ()))
        raise ValueError(f"x0 has {x.size} values but the loss has {n_params} parameters ({names})")

    if optimizer is None:
        optimizer = sgd(lr=1e-3)
    if not isinstance(optimizer, Optimizer | SecondOrder):
        raise TypeError(
            f"optimizer must be a symgrad.optim.Optimizer (e.g. optim.adam(lr=1e-3)) or "
            f"optim.lbfgs()/optim.newton(), got {optimizer!r}"
        )

    if data is not None:
        if not isinstance(data, Mapping):
            raise TypeError(f"data must be a mapping name -> array, got {type(data).__name__}")
        data = {str(k): np.asarray(v) for k, v in data.items()}
        lengths = {k: (v.shape[0] if v.ndim else -1) for k, v in data.items()}
        if any(n < 0 for n in lengths.values()):
            raise ValueError(f"data columns must be arrays with one row per sample: {lengths}")
        if len(set(lengths.values())) > 1:
            raise ValueError(f"data columns must have the same number of samples, got {lengths}")
        n_samples = next(iter(lengths.values()), 0)
    else:
        n_samples = 0
        if kernel and not bound and getattr(f, "data_names", ()):
            raise ValueError(f"this loss needs data: pass data={{...}} with {f.data_names}")
    if kernel and not bound:
        jit_args = tuple(f.data_args(data))  # the kernel validates the columns

    if batch_size is not None:
        if data is None or n_samples == 0:
            raise ValueError("batch_size needs data (data={...} with at least one sample)")
        batch_size = min(_int_arg("batch_size", batch_size, minimum=1), n_samples)
    if steps is not None and epochs is not None:
        raise ValueError("give steps or epochs, not both (epochs = passes over the data)")
    if epochs is not None:
        if data is None:
            raise ValueError("epochs needs data (an epoch is one pass over the data); use steps")
        per_epoch = -(-n_samples // batch_size) if batch_size else 1
        steps = _int_arg("epochs", epochs, minimum=0) * per_epoch
    elif steps is None:
        steps = DEFAULT_STEPS
    steps = _int_arg("steps", steps, minimum=0)

    gtol = _opt_float("gtol", gtol)
    if gtol is not None and batch_size is not None:
        raise ValueError("gtol needs full-batch gradients; with batch_size use tol (epoch losses)")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable(step, x, loss, grad), got {callback!r}")
    if diverge_factor is None:
        factor = math.inf
    else:
        factor = float(diverge_factor)
        if not factor > 1:
            raise ValueError(f"diverge_factor must be > 1 (or None), got {diverge_factor!r}")
    return _Plan(
        f,
        kernel,
        x,
        optimizer,
        steps,
        data,
        n_samples,
        batch_size,
        seed,
        _opt_float("tol", tol),
        gtol,
        callback,
        bool(progress),
        _int_arg("record_every", record_every, minimum=0),
        factor,
        f.jit.value_and_grad if kernel else None,
        jit_args if kernel else (),
    )


# --------------------------------------------------------------------------- shared helpers


_DIVERGED = {
    "loss": "the loss is {fk!r}",
    "grad": "the gradient is not finite",
    "bound": "the loss {fk:.6g} exceeds diverge_factor * max(1, |initial loss|) = {bound:.6g}",
    "x": "the update gave non-finite parameters",
}


def _diverged_message(k: int, why: str, fk: float, bound: float, x: np.ndarray | None = None,
                      g: np.ndarray | None = None, names: Any = None) -> str:
    """Why the run stopped as diverged, in words that fit the cause.

    A non-finite loss or gradient at step 0 means the loss is not defined (or not
    differentiable) at the starting point: no learning rate helps. At a later step, or when the
    loss grew past the bound, the steps were too large.
    """
    reason = _DIVERGED[why].format(fk=fk, bound=bound)
    if why in ("loss", "grad") and x is not None:
        bad = None if why == "loss" or g is None else ~np.isfinite(g)
        where = _describe_x(x, names, bad)
        if k == 0:
            what = "not defined" if why == "loss" else "not differentiable"
            return (f"non-finite at the starting point (step 0): {reason} at {where}: the loss "
                    f"is {what} there; start from another x0")
        return (f"diverged at step {k}: {reason} at {where}: the steps left the region where "
                "the loss is defined (or overflowed); try a smaller learning rate")
    return f"diverged at step {k}: {reason}; try a smaller learning rate"


def _describe_x(x: np.ndarray, names: Any, bad: np.ndarray | None = None, most: int = 6) -> str:
    """``a=1, b=0`` for small x; the non-finite gradient components' values when ``bad``."""
    names = list(names) if names is not None and len(names) == x.size else \
        [f"x[{i}]" for i in range(x.size)]
    idx = np.flatnonzero(bad) if bad is not None and bad.any() else np.arange(x.size)
    parts = [f"{names[i]}={x[i]:.6g}" for i in idx[:most]]
    more = f", ... ({idx.size - most} more)" if idx.size > most else ""
    return ("the parameters with a non-finite gradient " if bad is not None and bad.any()
            else "x = ") + ("(" + ", ".join(parts) + more + ")")


def _param_labels(p: _Plan, n: int) -> Any:
    """One name per entry of x (Kernels know them), else None."""
    f = p.f
    try:
        return f.param_names(n) if hasattr(f, "param_names") else getattr(f, "params", None)
    except (TypeError, ValueError):
        return None


def _rel_change(f_prev: float, fk: float) -> float:
    return abs(f_prev - fk) / max(abs(f_prev), abs(fk), 1.0)


def _grad_norm(g: np.ndarray) -> float:
    return math.sqrt(float(np.dot(g, g)))


def _final_grad_norm(g: np.ndarray) -> float:
    with np.errstate(over="ignore", invalid="ignore"):
        return _grad_norm(g)


class _Progress:
    """tqdm when installed, else a line on stderr at most every half second."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.done, self.bar, self.enabled = total, 0, None, enabled
        self.last = 0.0
        if not enabled:
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return
        self.bar = tqdm(total=total, desc="minimize", unit="step")

    def update(self, n: int, loss: float) -> None:
        if not self.enabled:
            return
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            self.bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
            return
        now = time.perf_counter()
        if now - self.last >= 0.5 or self.done >= self.total:
            self.last = now
            pct = 100.0 * self.done / max(self.total, 1)
            sys.stderr.write(
                f"\rminimize: {pct:5.1f}% ({self.done}/{self.total} steps) loss={loss:.4g}"
            )
            sys.stderr.flush()

    def close(self) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.close()
        else:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _full_evaluator(p: _Plan) -> Callable[[np.ndarray], tuple[float, np.ndarray]]:
    """``x -> (loss, grad)`` on the full data, a fresh gradient array each call."""
    if p.kernel:
        vg, args = p.jit_vg, p.jit_args

        def ev(x: np.ndarray) -> tuple[float, np.ndarray]:
            g = np.empty_like(x)
            return float(vg(x, g, *args)), g

        return ev
    data = dict(p.data or {})
    return functools.partial(_call_plain, p.f, data)


def _call_plain(f: Callable, data: dict, x: np.ndarray) -> tuple[float, np.ndarray]:
    out = f(x, **data)
    try:
        value, grad = out
    except (TypeError, ValueError):
        raise TypeError(
            f"f(x, **data) must return (value, grad), got {type(out).__name__}"
        ) from None
    grad = np.array(grad, dtype=np.float64)
    if grad.shape != x.shape:
        raise ValueError(f"f returned a gradient of shape {grad.shape}, expected {x.shape}")
    return float(value), grad


def _batch_evaluator(p: _Plan) -> Callable[[np.ndarray, np.ndarray], tuple[float, np.ndarray]]:
    """``(x, idx) -> (loss, grad)`` on the samples ``idx``."""
    data = dict(p.data or {})
    if p.kernel:
        f = p.f

        def ev(x: np.ndarray, idx: np.ndarray) -> tuple[float, np.ndarray]:
            value, grad = f.value_and_grad(x, batch=idx, **data)
            return float(value), np.array(grad, dtype=np.float64)

        return ev

    def ev_plain(x: np.ndarray, idx: np.ndarray) -> tuple[float, np.ndarray]:
        return _call_plain(p.f, {k: v[idx] for k, v in data.items()}, x)

    return ev_plain


# --------------------------------------------------------------------------- Python-driven loop


def _run_python(p: _Plan) -> OptimizeResult:
    opt, steps, rec = p.opt, p.steps, p.record_every
    full = _full_evaluator(p)
    batch_ev = _batch_evaluator(p) if p.batch_size is not None else None
    rng = np.random.default_rng(p.seed) if batch_ev is not None else None
    bs = p.batch_size or 0
    per_epoch = -(-p.n_samples // bs) if bs else 0

    x = p.x0
    state = opt.init(x)
    r_step: list[int] = []
    r_x: list[np.ndarray] = []
    r_f: list[float] = []
    r_lr: list[float] = []
    r_gn: list[float] = []
    epoch_losses: list[float] = []
    e_sum = e_n = 0.0
    perm = np.arange(0)
    nfev = 0
    bound = math.inf
    f_prev = math.nan
    status, message = "", ""
    last: tuple[float, np.ndarray] | None = None  # (f, g) at the final x, on the full data
    bar = _Progress(steps, p.progress)
    k = 0
    # Overflow is reported as divergence, not as NumPy warnings from the norm or the update.
    errstate = np.errstate(over="ignore", invalid="ignore")
    errstate.__enter__()
    try:
        while k < steps:
            if batch_ev is not None:
                b = k % per_epoch
                if b == 0:
                    perm = rng.permutation(p.n_samples)  # type: ignore[union-attr]
                idx = perm[b * bs : (b + 1) * bs]
                fk, gk = batch_ev(x, idx)
            else:
                fk, gk = full(x)
            nfev += 1
            if k == 0:
                bound = p.factor * max(1.0, abs(fk)) if math.isfinite(fk) else math.inf
            gn = math.sqrt(gk @ gk)
            why = ""
            if not math.isfinite(fk):
                why = "loss"
            elif not math.isfinite(gn) and not np.isfinite(gk).all():
                why = "grad"
            elif fk > bound:
                why = "bound"
            if why:
                status, message = "diverged", _diverged_message(
                    k, why, fk, bound, x, gk, _param_labels(p, x.size))
                last = (fk, gk) if batch_ev is None else None
                break
            if p.gtol is not None and gn <= p.gtol:
                status = "converged"
                message = f"converged at step {k}: gradient norm {gn:.3g} <= gtol={p.gtol:g}"
                last = (fk, gk)
                break
            if p.tol is not None and batch_ev is None and k > 0:
                d = _rel_change(f_prev, fk)
                if d <= p.tol:
                    status = "converged"
                    message = (
                        f"converged at step {k}: relative loss change {d:.3g} <= tol={p.tol:g}"
                    )
                    last = (fk, gk)
                    break
            if p.callback is not None and p.callback(k, x, fk, gk):
                status, message = "stopped", f"stopped by callback at step {k}"
                last = (fk, gk) if batch_ev is None else None
                break
            if rec and k % rec == 0:
                r_step.append(k)
                r_x.append(x)
                r_f.append(fk)
                r_lr.append(opt.learning_rate(k))
                r_gn.append(gn)
            x_new, state = opt.update(gk, state, x, k)
            x_new = np.asarray(x_new, dtype=np.float64)
            # x @ x is finite iff every entry is (barring overflow of huge finite entries)
            if not math.isfinite(x_new @ x_new) and not np.isfinite(x_new).all():
                status, message = "diverged", _diverged_message(k, "x", fk, bound)
                last = (fk, gk) if batch_ev is None else None
                break
            x, f_prev = x_new, fk
            k += 1
            if p.progress:
                bar.update(1, fk)
            if batch_ev is not None:
                e_sum += fk * len(idx)
                e_n += len(idx)
                if b == per_epoch - 1:
                    epoch_losses.append(e_sum / e_n)
                    e_sum = e_n = 0.0
                    if p.tol is not None and len(epoch_losses) > 1:
                        d = _rel_change(epoch_losses[-2], epoch_losses[-1])
                        if d <= p.tol:
                            status = "converged"
                            message = (
                                f"converged at step {k} (epoch {len(epoch_losses) - 1}): relative "
                                f"epoch-loss change {d:.3g} <= tol={p.tol:g}"
                            )
                            break
    finally:
        errstate.__exit__(None, None, None)
        bar.close()
    if e_n:
        epoch_losses.append(e_sum / e_n)  # the last, partial epoch
    if not status:
        if p.tol is not None or p.gtol is not None:
            status, message = "maxiter", f"reached steps={steps} without meeting tol/gtol"
        else:
            status, message = "completed", f"completed {steps} steps"
    if last is None:
        last = full(x)
        nfev += 1
    fun, jac = last
    if rec:
        r_step.append(k)
        r_x.append(x)
        r_f.append(fun)
        r_lr.append(opt.learning_rate(k))
        r_gn.append(_final_grad_norm(jac))
    n = p.x0.size
    history = History(
        step=np.array(r_step, dtype=np.int64),
        x=np.array(r_x, dtype=np.float64).reshape(len(r_x), n),
        loss=np.array(r_f, dtype=np.float64),
        lr=np.array(r_lr, dtype=np.float64),
        grad_norm=np.array(r_gn, dtype=np.float64),
        epoch_loss=np.array(epoch_losses, dtype=np.float64),
    )
    return OptimizeResult(
        x=np.array(x, dtype=np.float64),
        fun=float(fun),
        jac=np.array(jac, dtype=np.float64),
        nit=k,
        nfev=nfev,
        success=status not in ("diverged", "maxiter"),
        status=status,
        message=message,
        history=history,
        compiled=False,
    )


# --------------------------------------------------------------------------- compiled loop

# Status codes returned by the compiled loop.
_RUNNING, _GTOL, _TOL, _DIV_LOSS, _DIV_GRAD, _DIV_BOUND, _DIV_X = range(7)
_WHY = {_DIV_LOSS: "loss", _DIV_GRAD: "grad", _DIV_BOUND: "bound", _DIV_X: "x"}
# Layout of the packed arguments (few arguments keep Numba's per-call dispatch cheap):
#   W  (3 + n_state, n): rows x, saved x, g, then the optimizer state arrays
#   H  (records, 4 + n): columns step, loss, lr, |g|, then x
#   ip int64:   kind, k0, k1, record_every, next record step, records written, lr stride
#               (stride 0: a constant rate stored once instead of an array of steps + 1 copies)
#   fp float64: tol, gtol, loss bound (diverge_factor until step 0 sets it), f_prev, hyper[0:4]
_IP_KIND, _IP_K0, _IP_K1, _IP_REC, _IP_NEXT, _IP_NREC, _IP_LSTRIDE = range(7)
_FP_TOL, _FP_GTOL, _FP_BOUND, _FP_PREV, _FP_HYPER = range(5)


@functools.cache
def _compiled_loop() -> Callable[..., tuple[int, int, float, float]]:
    """Build (once) the Numba loop. Numba is imported here, never at module import.

    Numba compiles one specialisation per kernel (the jitted value-and-grad is an argument
    and is inlined), in memory, the first time that kernel runs here.
    """
    import numba

    @numba.njit(cache=False, nogil=True, error_model="numpy")
    def loop(vg, args, W, lrs, H, ip, fp):
        """Steps ip[k0]..ip[k1]-1; returns (status, step, f_k, detail) and updates ip, fp."""
        x = W[0]
        xs = W[1]
        g = W[2]
        n = x.size
        kind = ip[_IP_KIND]
        rec = ip[_IP_REC]
        nxt = ip[_IP_NEXT]
        r = ip[_IP_NREC]
        k1 = ip[_IP_K1]
        lstride = ip[_IP_LSTRIDE]
        tol = fp[_FP_TOL]
        gtol = fp[_FP_GTOL]
        bound = fp[_FP_BOUND]
        f_prev = fp[_FP_PREV]
        h0 = fp[_FP_HYPER]
        h1 = fp[_FP_HYPER + 1]
        h2 = fp[_FP_HYPER + 2]
        status = _RUNNING
        k_end = k1
        fk = math.nan
        detail = 0.0
        for k in range(ip[_IP_K0], k1):
            fk = vg(x, g, *args)
            gn2 = 0.0
            for i in range(n):
                gn2 += g[i] * g[i]
            gn = math.sqrt(gn2)
            if k == 0:
                bound = bound * max(1.0, abs(fk)) if math.isfinite(fk) else math.inf
            if not math.isfinite(fk):
                status = _DIV_LOSS
            elif not math.isfinite(gn):
                for i in range(n):
                    if not math.isfinite(g[i]):
                        status = _DIV_GRAD
            if status == _RUNNING and fk > bound:
                status = _DIV_BOUND
            if status == _RUNNING and gn <= gtol:
                status = _GTOL
            if status == _RUNNING and k > 0:
                d = abs(f_prev - fk) / max(abs(f_prev), abs(fk), 1.0)
                if d <= tol:
                    status = _TOL
                    gn = d
            if status != _RUNNING:
                k_end = k
                detail = gn
                break
            a = lrs[k * lstride]
            if k == nxt:
                H[r, 0] = k
                H[r, 1] = fk
                H[r, 2] = a
                H[r, 3] = gn
                for i in range(n):
                    H[r, 4 + i] = x[i]
                r += 1
                nxt = k + rec
            for i in range(n):
                xs[i] = x[i]
            if kind == 0:  # sgd: x <- x - lr*g
                for i in range(n):
                    x[i] = x[i] - a * g[i]
            elif kind == 1:  # momentum: v <- beta*v - lr*g; x <- x + v
                for i in range(n):
                    v = h0 * W[3, i] - a * g[i]
                    W[3, i] = v
                    x[i] = x[i] + v
            elif kind == 2:  # nesterov: v <- beta*v - lr*g; x <- x + beta*v - lr*g
                for i in range(n):
                    v = h0 * W[3, i] - a * g[i]
                    W[3, i] = v
                    x[i] = x[i] + h0 * v - a * g[i]
            elif kind == 3:  # adam
                t = k + 1.0
                bc1 = 1.0 - h0**t
                bc2 = 1.0 - h1**t
                c1 = 1.0 - h0
                c2 = 1.0 - h1
                for i in range(n):
                    gi = g[i]
                    m = h0 * W[3, i] + c1 * gi
                    v = h1 * W[4, i] + c2 * (gi * gi)
                    W[3, i] = m
                    W[4, i] = v
                    x[i] = x[i] - a * (m / bc1) / (math.sqrt(v / bc2) + h2)
            elif kind == 4:  # rmsprop: s <- rho*s + (1-rho)*g*g; x <- x - lr*g/(sqrt(s)+eps)
                c = 1.0 - h0
                for i in range(n):
                    gi = g[i]
                    s = h0 * W[3, i] + c * (gi * gi)
                    W[3, i] = s
                    x[i] = x[i] - a * gi / (math.sqrt(s) + h1)
            else:  # adagrad: s <- s + g*g; x <- x - lr*g/(sqrt(s)+eps)
                for i in range(n):
                    gi = g[i]
                    s = W[3, i] + gi * gi
                    W[3, i] = s
                    x[i] = x[i] - a * gi / (math.sqrt(s) + h0)
            bad = False
            for i in range(n):
                if not math.isfinite(x[i]):
                    bad = True
            if bad:
                for i in range(n):
                    x[i] = xs[i]
                status = _DIV_X
                k_end = k
                detail = gn
                break
            f_prev = fk
        ip[_IP_NEXT] = nxt
        ip[_IP_NREC] = r
        fp[_FP_BOUND] = bound
        fp[_FP_PREV] = f_prev
        return status, k_end, fk, detail

    return loop


@functools.lru_cache(maxsize=64)
def _runner(vg: Any) -> Callable[..., tuple[int, int, float, float]]:
    """The compiled loop for one kernel: ``vg`` is a compile-time constant of a tiny wrapper.

    The loop itself takes ``vg`` as a first-class argument; calling it from Python with a
    dispatcher argument costs ~5-10 us of type resolution per call, the wrapper ~0.5 us.
    """
    import numba

    loop = _compiled_loop()

    @numba.njit(cache=False, nogil=True)
    def run(args, W, lrs, H, ip, fp):
        return loop(vg, args, W, lrs, H, ip, fp)

    return run


def _compiled_reason(p: _Plan) -> str:
    """Why the compiled loop cannot run ('' when it can)."""
    if not p.kernel:
        return "f is not a symgrad Kernel"
    if p.opt.kind is None:
        return f"optimizer {p.opt.name!r} has no compiled update (kind=None)"
    if p.batch_size is not None:
        return "mini-batches run in the Python loop (batch_size was given)"
    if p.callback is not None:
        return "a Python callback needs the Python loop"
    return ""


def _run_compiled(p: _Plan) -> OptimizeResult:
    opt, steps, rec, n = p.opt, p.steps, p.record_every, p.x0.size
    vg, args = p.jit_vg, p.jit_args
    run = _runner(vg)
    state = opt.init(p.x0)
    W = np.empty((3 + len(state), n))
    W[0] = p.x0
    for j, s in enumerate(state):
        W[3 + j] = s
    x, g = W[0], W[2]
    if isinstance(opt.lr, schedules.Constant):
        lrs, lstride = np.array([opt.lr.value]), 0
    else:
        lrs, lstride = schedules.values(opt.lr, steps + 1), 1
    m = (steps + rec - 1) // rec + 1 if rec else 0
    H = np.empty((m, 4 + n))
    ip = np.array([opt.kind, 0, 0, rec, 0 if rec else -1, 0, lstride], dtype=np.int64)
    fp = np.zeros(_FP_HYPER + 4)
    fp[:_FP_HYPER] = (
        -1.0 if p.tol is None else p.tol,
        -1.0 if p.gtol is None else p.gtol,
        p.factor,
        math.nan,
    )
    hyper = tuple(p.opt.hyper.values())[:4]
    fp[_FP_HYPER : _FP_HYPER + len(hyper)] = hyper
    chunk = max(1, steps // 100) if p.progress else max(steps, 1)
    bar = _Progress(steps, p.progress)
    code, k, fk, detail = _RUNNING, 0, math.nan, 0.0
    try:
        for k0 in range(0, steps, chunk):
            ip[_IP_K0], ip[_IP_K1] = k0, min(k0 + chunk, steps)
            code, k, fk, detail = run(args, W, lrs, H, ip, fp)
            bar.update(k - k0, fk)
            if code != _RUNNING:
                break
    finally:
        bar.close()
    nfev = k + (0 if code == _RUNNING else 1)
    if code == _RUNNING:
        fun = float(vg(x, g, *args))
        nfev += 1
        if p.tol is not None or p.gtol is not None:
            status, message = "maxiter", f"reached steps={steps} without meeting tol/gtol"
        else:
            status, message = "completed", f"completed {steps} steps"
    else:
        fun = fk
        if code == _GTOL:
            status = "converged"
            message = f"converged at step {k}: gradient norm {detail:.3g} <= gtol={p.gtol:g}"
        elif code == _TOL:
            status = "converged"
            message = f"converged at step {k}: relative loss change {detail:.3g} <= tol={p.tol:g}"
        else:
            bound = fp[_FP_BOUND]
            status, message = "diverged", _diverged_message(
                k, _WHY[code], fk, bound, x, g, _param_labels(p, n))
    r = int(ip[_IP_NREC])
    if rec:
        H[r, :4] = k, fun, lrs[k * lstride], _final_grad_norm(g)
        H[r, 4:] = x
        r += 1
    history = History(
        step=H[:r, 0].astype(np.int64),
        x=H[:r, 4:].copy(),
        loss=H[:r, 1].copy(),
        lr=H[:r, 2].copy(),
        grad_norm=H[:r, 3].copy(),
        epoch_loss=np.empty(0),
    )
    return OptimizeResult(
        x=x.copy(),
        fun=float(fun),
        jac=g.copy(),
        nit=k,
        nfev=nfev,
        success=status not in ("diverged", "maxiter"),
        status=status,
        message=message,
        history=history,
        compiled=True,
    )


# --------------------------------------------------------------------------- public entry point


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
    compiled: bool | None = None,
    diverge_factor: float | None = 1e6,
    hvp: Callable[..., Any] | None = None,
) -> OptimizeResult:
    """Minimize ``f`` from ``x0`` (first-order, L-BFGS or Newton); see the module docstring.

    Args:
        f: a Kernel from ``sg.compile`` or a callable ``f(x, **data) -> (value, grad)``.
        x0: initial parameters (1-D; copied, never modified).
        optimizer: from :mod:`symgrad.optim`; default ``optim.sgd(lr=1e-3)``.
            ``optim.lbfgs()`` / ``optim.newton()``: ``steps`` counts their iterations.
        steps: number of optimizer steps (default 1000 unless ``epochs`` is given).
        data: data columns by name (1-D or 2-D arrays, one row per sample).
        batch_size: mini-batch size; batches are drawn without replacement from a fresh
            permutation each epoch (``np.random.default_rng(seed)``), the last batch of an
            epoch holds the remainder. ``None``: full batch.
        epochs: passes over the data (instead of ``steps``).
        seed: seed of the shuffling.
        tol: stop when the relative change of the loss (per step; per epoch with batches)
            is ``<= tol``.
        gtol: stop when the gradient norm is ``<= gtol`` (full batch only).
        callback: ``callback(step, x, loss, grad)`` before each update; return True to stop.
            Do not modify the arrays it receives.
        progress: show a progress bar (tqdm when installed, else a line on stderr).
        record_every: record the history every this many steps (0: no history).
        compiled: run the loop inside Numba: None chooses (a scalar Kernel, a built-in
            optimizer, full batch, no callback and ``steps >= COMPILE_MIN_STEPS``; never for an
            array kernel, whose steps dwarf the Python loop's overhead); True insists
            (ValueError when not possible); False never.
        diverge_factor: stop as diverged when the loss exceeds
            ``diverge_factor * max(1, |initial loss|)``; None keeps only the non-finite check.
            (L-BFGS and Newton never increase the loss; they ignore it.)
        hvp: ``hvp(x, v, **data) -> H v`` for ``optim.newton()`` with a plain callable ``f``
            (a Kernel brings its exact HVP).

    ``optim.lbfgs()`` and ``optim.newton()`` (full batch only) run their own loops, see
    :mod:`symgrad.second_order`: same stopping rules, history and result.

    Returns:
        OptimizeResult with x, fun, jac, nit, nfev, success, status, message, history.

    >>> import numpy as np
    >>> from symgrad import optim
    >>> res = minimize(lambda x: (x @ x, 2 * x), [3.0, -4.0], optimizer=optim.sgd(0.25),
    ...                steps=50, gtol=1e-8)
    >>> res.status, res.nit, bool(np.abs(res.x).max() < 1e-8)   # x halves every step
    ('converged', 30, True)
    """
    if isinstance(optimizer, SecondOrder):  # L-BFGS / Newton: their own loops
        second_order.check_call(optimizer, kernel=_is_kernel(f) or _is_bound(f), hvp=hvp,
                                batch_size=batch_size, epochs=epochs, compiled=compiled)
    elif hvp is not None:
        raise ValueError("hvp= is used by optim.newton() only")
    p = _plan(f, x0, optimizer, steps, data, batch_size, epochs, seed, tol, gtol, callback,
              progress, record_every, diverge_factor)  # fmt: skip
    if isinstance(p.opt, SecondOrder):
        return second_order.run(p, hvp)
    if compiled is None:
        # An array kernel's step costs microseconds to milliseconds: the Python loop's ~1 us
        # per step is noise, and compiling the loop (seconds, per process) would not pay off.
        use = (not _compiled_reason(p) and p.steps >= COMPILE_MIN_STEPS
               and not isinstance(p.f, ArrayKernel))
    elif compiled:
        reason = _compiled_reason(p)
        if reason:
            raise ValueError(f"compiled=True is not possible: {reason}; use compiled=None")
        use = True
    else:
        use = False
    return _run_compiled(p) if use else _run_python(p)
