"""Second-order and quasi-Newton methods: the option objects and their bookkeeping.

``optim.lbfgs()`` and ``optim.newton()`` return a :class:`SecondOrder`: a name and options, no
``(init, update)`` pair, because these methods choose their own step lengths (a line search, a
trust region) and so need the loss at trial points, not only the gradient at the iterate.
:func:`symgrad.minimize` recognises them and runs :func:`symgrad.train.lbfgs.lbfgs_minimize` or
:func:`symgrad.train.newton.newton_minimize` on plain callables ``fun_and_grad(x) -> (f, g)`` and
``hvp(x, v) -> H v``; both work on any such callables, not only on symgrad kernels.

:class:`Monitor` holds what both loops share: the stopping rules of ``minimize`` (non-finite
loss or gradient: diverged; ``|g| <= gtol`` or a relative change of the loss ``<= tol``:
converged; the callback returned True: stopped), the recorded history, and the counters.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from .interrupt import interrupted_message
from .result import _DIVERGED, converged, ran_out, rel_change
from .result import grad_norm as norm  # one norm for the loops (no NumPy BLAS)

__all__ = ["DEFAULT_GTOL", "Monitor", "Outcome", "SecondOrder", "at_rounding_floor", "check_call",
           "default_gtol", "describe_stop", "rounding_floor"]

FunAndGrad = Callable[[np.ndarray], tuple[float, np.ndarray]]
Hvp = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class SecondOrder:
    """A second-order / quasi-Newton method for :func:`symgrad.minimize` (full batch only).

    Attributes:
        name: ``"lbfgs"`` or ``"newton"``.
        options: keyword arguments of :func:`symgrad.train.lbfgs.lbfgs_minimize` or
            :func:`symgrad.train.newton.newton_minimize` (the method's own settings).
    """

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def needs_hvp(self) -> bool:
        """Whether the method needs Hessian-vector products (Newton does, L-BFGS does not)."""
        return self.name == "newton"

    def __repr__(self) -> str:
        return f"{self.name}({', '.join(f'{k}={v!r}' for k, v in self.options.items())})"


def frozen(options: dict[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(options))


@dataclass
class Outcome:
    """What a second-order loop returns (``minimize`` turns it into an OptimizeResult).

    ``step_sizes`` per record: the line-search step length that reached the iterate (L-BFGS,
    1 at the start) or the trust radius the next step starts from (Newton).
    """

    x: np.ndarray
    fun: float
    jac: np.ndarray
    nit: int
    nfev: int
    nhev: int
    status: str
    message: str
    steps: list[int]
    xs: list[np.ndarray]
    losses: list[float]
    step_sizes: list[float]
    grad_norms: list[float]


#: minimize's default gtol for L-BFGS and Newton: SciPy's L-BFGS-B default (``gtol=1e-5``),
#: relative to the starting gradient when that is below 1 (see :func:`default_gtol`).
DEFAULT_GTOL = 1e-5


def default_gtol(g0_norm: float) -> float:
    """``DEFAULT_GTOL * min(1, |g_0|)``: SciPy's 1e-5, but a loss whose starting gradient is
    small (a small-scale loss) must still reduce it 1e5-fold, so it never stops at its start."""
    return DEFAULT_GTOL * min(1.0, g0_norm)


_EPS = float(np.finfo(np.float64).eps)
#: How many roundings of the loss (or of x) a step below the rounding floor may reach: a loss
#: summed over many samples is exact to about this many ulps.
FLOOR_ULPS = 1e4
#: The same for a float32 kernel, in float32 roundings: its terms are rounded to float32 and
#: summed in float64, so the loss is exact to a few of them (1e4 would be 0.1% of the loss).
FLOOR_ULPS_F32 = 16


def rounding_floor(arith: Any = np.float64) -> float:
    """The relative rounding floor of a kernel computing in ``arith`` (float64: 2.2e-12,
    float32: 1.9e-6): steps and decreases below it times |x| / |f| are rounding."""
    if np.dtype(arith) == np.float32:
        return FLOOR_ULPS_F32 * float(np.finfo(np.float32).eps)
    return FLOOR_ULPS * _EPS


def at_rounding_floor(f: float, x: np.ndarray, pred: float, step: np.ndarray, *,
                      by_loss: bool = True, rel: float = FLOOR_ULPS * _EPS) -> bool:
    """Whether a model step ``step`` from ``x`` (a Newton or quasi-Newton step) is below the
    rounding of the problem: ``|step_i| <= rel * |x_i|`` for every i (x cannot move by it;
    component-wise, so a badly scaled x is judged per coordinate) or, ``by_loss``, its
    predicted decrease ``pred <= rel * |f|`` (the loss cannot tell it from rounding, so no
    line search can accept it); ``rel`` is :func:`rounding_floor` of the kernel's arithmetic.
    Scale-free: multiplying the loss or x by a constant changes neither test."""
    if not (math.isfinite(pred) and np.isfinite(step).all()):
        return False
    return (bool(np.all(np.abs(step) <= rel * np.abs(x)))
            or (by_loss and pred <= rel * abs(f)))


class Monitor:
    """The stopping rules, history and counters shared by the L-BFGS and Newton loops.

    Args:
        gtol: converged when ``|g| <= gtol`` (Euclidean norm); None: never; ``"default"``:
            :data:`DEFAULT_GTOL` ``* min(1, |g_0|)`` (see :func:`default_gtol`).
        tol: converged when ``|f_prev - f| <= tol * max(|f_prev|, |f|, 1)``; None: never.
        callback: ``callback(k, x, f, g)`` before each step; True stops the run.
        record_every: record every this many iterations (0: only counters).
        record_x: whether the records keep the iterates.
        describe: ``(k, why, f, x, g) -> message`` for a non-finite loss or gradient.
        interrupt: an :class:`symgrad.train.interrupt.Interrupt`: Ctrl-C ends the run as
            ``"interrupted"`` at the next iterate.
        arith: the type the kernel computes in (float32: a coarser rounding floor, see
            :func:`rounding_floor`).
    """

    def __init__(self, *, gtol: float | str | None = None, tol: float | None = None,
                 callback: Callable[..., Any] | None = None, record_every: int = 1,
                 record_x: bool = True, describe: Callable[..., str] | None = None,
                 interrupt: Any = None, arith: Any = np.float64) -> None:
        self.by_default = gtol == "default"
        self.floor_rel = rounding_floor(arith)
        #: the rounding unit of the loss's value (float32 kernels: float32's)
        self.eps = float(np.finfo(np.float32).eps) if np.dtype(arith) == np.float32 else _EPS
        self.gtol = None if self.by_default else gtol
        self.tol, self.callback, self.rec = tol, callback, record_every
        self.record_x, self.interrupt = record_x, interrupt
        self.describe = describe or describe_stop
        self.nfev = self.nhev = 0
        self.status = self.message = ""
        self.f_prev = math.nan
        self.steps: list[int] = []
        self.xs: list[np.ndarray] = []
        self.losses: list[float] = []
        self.sizes: list[float] = []
        self.gnorms: list[float] = []

    def stop(self, k: int, x: np.ndarray, f: float, g: np.ndarray, size: float) -> bool:
        """Apply the stopping rules at iterate ``k``; record it when the run goes on."""
        gn = norm(g)
        why = "loss" if not math.isfinite(f) else "grad" if not np.isfinite(g).all() else ""
        if why:
            return self.end("diverged", self.describe(k, why, f, x, g))
        if gn == 0.0:  # a stationary point exactly: no method can move from here
            return self.end("converged", f"converged at step {k}: the gradient is zero")
        if self.by_default and k == 0:
            self.gtol = default_gtol(gn)
        if self.gtol is not None and gn <= self.gtol:
            rule = " (the default, 1e-5 * min(1, |g_0|))" if self.by_default else ""
            return self.end("converged", converged(k, "gradient norm", gn,
                                                   f"gtol={self.gtol:g}{rule}"))
        if self.tol is not None and k > 0:
            d = rel_change(self.f_prev, f)
            if d <= self.tol:
                return self.end("converged", converged(k, "relative loss change", d,
                                                       f"tol={self.tol:g}"))
        if self.callback is not None and self.callback(k, x, f, g):
            return self.end("stopped", f"stopped by callback at step {k}")
        if self.interrupt is not None and self.interrupt.requested:
            return self.end("interrupted", interrupted_message(k))
        if self.rec and k % self.rec == 0:
            self.record(k, x, f, size, gn)
        self.f_prev = f
        return False

    def fail(self, k: int, x: np.ndarray, x0: np.ndarray, f: float, what: str) -> bool:
        """No step decreased the loss: ``"failed"``, or ``"diverged"`` when the iterates ran
        off (|x| grew by 1e12 over the start: the steps fall below the rounding of x, as on a
        loss unbounded below)."""
        xn, x0n = norm(x), norm(x0)
        if not xn <= 1e12 * max(1.0, x0n):
            return self.end("diverged", f"diverged at step {k}: the iterates grew to |x| = "
                            f"{xn:.3g} (loss {f:.6g}) until steps no longer change x; the loss "
                            "may be unbounded below")
        return self.end("failed", what)

    def floor(self, k: int, x: np.ndarray, f: float, g: np.ndarray, pred: float,
              step: np.ndarray | None, what: str, *, by_loss: bool = True) -> bool:
        """Converged if the model's step from ``x`` is below rounding (see
        :func:`at_rounding_floor`); ``pred`` is its predicted decrease."""
        if step is None or not at_rounding_floor(f, x, pred, step, by_loss=by_loss,
                                                 rel=self.floor_rel):
            return False
        return self.end("converged", f"converged at step {k}: at the rounding floor, no step "
                        f"decreases the loss and {what} is below rounding (predicted decrease "
                        f"{pred:.3g} at loss {f:.6g}, |g| = {norm(g):.3g})")

    def end(self, status: str, message: str) -> bool:
        self.status, self.message = status, message
        return True

    def record(self, k: int, x: np.ndarray, f: float, size: float, gn: float) -> None:
        self.steps.append(k)
        if self.record_x:
            self.xs.append(np.array(x, dtype=np.float64))
        self.losses.append(float(f))
        self.sizes.append(float(size))
        self.gnorms.append(gn)

    def outcome(self, k: int, steps: int, x: np.ndarray, f: float, g: np.ndarray,
                size: float) -> Outcome:
        """Close the run at iterate ``k`` (the final record is the final iterate)."""
        if not self.status:
            self.end(*ran_out(steps, self.tol, self.gtol))
        if self.rec and not (self.steps and self.steps[-1] == k):  # once (stop() may have)
            with np.errstate(over="ignore", invalid="ignore"):
                self.record(k, x, f, size, norm(g))
        return Outcome(np.array(x, dtype=np.float64), float(f), np.array(g, dtype=np.float64),
                       k, self.nfev, self.nhev, self.status, self.message, self.steps, self.xs,
                       self.losses, self.sizes, self.gnorms)


def describe_stop(k: int, why: str, f: float) -> str:
    what = _DIVERGED[why].format(fk=f)
    if k == 0:
        return f"non-finite at the starting point (step 0): {what}; start from another x0"
    return f"diverged at step {k}: {what}"


# --------------------------------------------------------------------------- minimize's hook


def check_call(method: SecondOrder, *, exact_hvp: bool, hvp: Any, batch_size: Any, epochs: Any,
               compiled: Any) -> None:
    """Refuse what these full-batch methods cannot do, in the user's terms (before planning).
    ``exact_hvp``: ``f`` brings its own HVP (:func:`symgrad.train.objective.own_hvp`)."""
    who = f"optim.{method.name}()"
    if batch_size is not None or epochs is not None:
        raise ValueError(f"{who} is a full-batch method (its line search / trust region compares "
                         "losses on the same data): drop batch_size/epochs and give steps "
                         "(iterations); for mini-batches use a first-order optimizer")
    if compiled:
        raise ValueError(f"compiled=True is not possible: {who} runs in Python (each iteration "
                         "is a few kernel calls); use compiled=None")
    if hvp is not None and not method.needs_hvp:
        raise ValueError(f"hvp= is used by optim.newton() only, not by {who}")
    if hvp is not None and exact_hvp:
        raise ValueError("f is a symgrad Kernel: its exact Hessian-vector product is used; "
                         "do not pass hvp=")
    if method.needs_hvp and not exact_hvp and hvp is None:
        raise TypeError("optim.newton() needs Hessian-vector products: pass a symgrad Kernel "
                        "(sg.compile(loss)) or hvp=callable(x, v, **data) -> H v with f")
    if hvp is not None and not callable(hvp):
        raise TypeError(f"hvp must be callable(x, v, **data) -> H v, got {hvp!r}")
