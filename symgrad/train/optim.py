"""First-order optimizers, each defined once as an element-wise *rule* (optax-style API).

An :class:`Optimizer` holds two pure functions, as in optax:

- ``init(x) -> state``: a tuple of float64 arrays shaped like ``x`` (``()`` for plain SGD);
- ``update(g, state, x, step) -> (new_x, new_state)``: one step from the gradient ``g`` at the
  iterate ``x``, ``step`` the 0-based step number (it reads the learning rate from the schedule).
  Nothing is modified in place.

The built-in optimizers write their arithmetic once, as a *rule*: a plain function
``rule(x, g, *state, lr, k, *hyper) -> (new_x, *new_state)`` of arithmetic and ``np.*`` ufuncs.
Called with arrays it is the NumPy update the Python loop uses; :mod:`symgrad.train.compiled`
jits the same function and calls it on scalars, element by element, inside the compiled loop.
Both loops therefore perform the same operations in the same order (tests check 1e-12; in
practice bit for bit). A new optimizer is one rule plus :func:`from_rule`::

    def sign_rule(x, g, lr, k):          # no state, no hyperparameters
        return (x - lr * np.sign(g),)

    sign_sgd = optim.from_rule("sign_sgd", sign_rule, lr=0.01)

It runs in the compiled loop when the rule is a top-level function of an importable module
(the cached loop imports it by name) that Numba can compile; otherwise (a lambda, a function
of ``__main__``, Python-only code) in the Python loop. A hand-written ``(init, update)`` pair,
``Optimizer(name, init, update, lr)`` with no rule, always runs in the Python loop.

Every ``lr`` is a float or a schedule (``step -> lr``, see :mod:`symgrad.schedules`).

Defaults and tested settings (:data:`DEFAULTS`, :data:`TESTED_HYPERPARAMETERS`; each optimizer
reaches ``|x - x*| < 1e-5`` on a convex 2-D quadratic and on the 2-D Rosenbrock function
``100 (x2 - x1^2)^2 + (1 - x1)^2`` from (-1.2, 1) with the tested settings; ``exp(a, g, s)`` is
``schedules.exponential``):

    ========  ===============================  ====================  ===========================
    name      defaults                         quadratic (steps)     Rosenbrock (steps)
    ========  ===============================  ====================  ===========================
    sgd       lr=1e-3                          lr=0.2 (200)          lr=1e-3 (50k)
    momentum  lr=1e-3, beta=0.9                lr=0.1, beta=0.7      lr=1e-3, beta=0.9 (10k)
    nesterov  lr=1e-3, beta=0.9                lr=0.1, beta=0.7      lr=1e-3, beta=0.9 (10k)
    adam      lr=1e-3, b1=0.9, b2=0.999,       lr=0.1 (1000)         lr=0.02 (5k)
              eps=1e-8
    rmsprop   lr=1e-3, rho=0.9, eps=1e-8       exp(0.1, 0.1, 200)    exp(0.01, 0.1, 5000) (20k)
    adagrad   lr=1e-2, eps=1e-10               lr=0.5 (1000)         lr=0.5 (20k)
    ========  ===============================  ====================  ===========================

``lbfgs()`` and ``newton()`` (at the end of this module) are not ``(init, update)`` pairs: they
choose their own step lengths from the loss at trial points, so :func:`symgrad.minimize` runs
them in their own loops (:mod:`symgrad.train.lbfgs`, :mod:`symgrad.train.newton`, full batch).

RMSProp with a constant rate ends in a small limit cycle (of the order of ``lr``) on Rosenbrock,
hence the decaying schedule.

>>> import numpy as np
>>> from symgrad import optim
>>> opt = optim.momentum(lr=0.1, beta=0.9)
>>> x = np.array([1.0]); state = opt.init(x)
>>> x, state = opt.update(2 * x, state, x, 0)   # f = x**2, g = 2x
>>> x, state[0]
(array([0.8]), array([-0.2]))
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from .rules import (
    adagrad_rule,
    adam_rule,
    momentum_rule,
    nesterov_rule,
    rmsprop_rule,
    sgd_rule,
)
from .schedules import Exponential, Schedule, as_schedule, rate
from .second_order import SecondOrder, frozen

__all__ = [
    "DEFAULTS",
    "TESTED_HYPERPARAMETERS",
    "Optimizer",
    "adagrad",
    "adagrad_rule",
    "adam",
    "adam_rule",
    "from_rule",
    "lbfgs",
    "momentum",
    "momentum_rule",
    "nesterov",
    "nesterov_rule",
    "newton",
    "rmsprop",
    "rmsprop_rule",
    "sgd",
    "sgd_rule",
]

State = tuple[np.ndarray, ...]
InitFn = Callable[[np.ndarray], State]
UpdateFn = Callable[[np.ndarray, State, np.ndarray, int], tuple[np.ndarray, State]]
Rule = Callable[..., tuple]

#: Default hyperparameters of each built-in optimizer.
DEFAULTS: Mapping[str, Mapping[str, float]] = MappingProxyType(
    {
        "sgd": {"lr": 1e-3},
        "momentum": {"lr": 1e-3, "beta": 0.9},
        "nesterov": {"lr": 1e-3, "beta": 0.9},
        "adam": {"lr": 1e-3, "b1": 0.9, "b2": 0.999, "eps": 1e-8},
        "rmsprop": {"lr": 1e-3, "rho": 0.9, "eps": 1e-8},
        "adagrad": {"lr": 1e-2, "eps": 1e-10},
    }
)

#: Settings with which each optimizer converges in tests/test_optim.py, to ``|x - x*| < 1e-5``:
#: "quadratic" is f = 0.5 x^T A x - b^T x with A = [[3, 0.5], [0.5, 1]], b = [1, -2], from (0, 0);
#: "rosenbrock" is 100 (x2 - x1^2)^2 + (1 - x1)^2 from (-1.2, 1). ``steps`` is the step budget.
TESTED_HYPERPARAMETERS: Mapping[str, Mapping[str, Mapping[str, Any]]] = MappingProxyType(
    {
        "quadratic": {
            "sgd": {"lr": 0.2, "steps": 200},
            "momentum": {"lr": 0.1, "beta": 0.7, "steps": 200},
            "nesterov": {"lr": 0.1, "beta": 0.7, "steps": 200},
            "adam": {"lr": 0.1, "steps": 1000},
            "rmsprop": {"lr": Exponential(0.1, gamma=0.1, step_size=200), "steps": 1000},
            "adagrad": {"lr": 0.5, "steps": 1000},
        },
        "rosenbrock": {
            "sgd": {"lr": 1e-3, "steps": 50_000},
            "momentum": {"lr": 1e-3, "beta": 0.9, "steps": 10_000},
            "nesterov": {"lr": 1e-3, "beta": 0.9, "steps": 10_000},
            "adam": {"lr": 0.02, "steps": 5_000},
            "rmsprop": {"lr": Exponential(0.01, gamma=0.1, step_size=5000), "steps": 20_000},
            "adagrad": {"lr": 0.5, "steps": 20_000},
        },
    }
)


@dataclass(frozen=True)
class Optimizer:
    """A first-order optimizer: pure ``init``/``update`` functions (and the rule behind them).

    Attributes:
        name: short name (``"adam"``).
        init: ``init(x) -> state``, a tuple of arrays shaped like ``x``.
        update: ``update(g, state, x, step) -> (new_x, new_state)``, pure.
        lr: the learning-rate schedule (a float was turned into ``schedules.constant``).
        hyper: the other hyperparameters by name, in the order the rule takes them.
        rule: ``rule(x, g, *state, lr, k, *hyper) -> (new_x, *new_state)``, the element-wise
            arithmetic behind ``update`` (see :func:`from_rule`); None for a hand-written
            ``(init, update)`` pair, which runs in the Python loop only.
        n_state: the number of state arrays ``init`` returns (with a rule).
    """

    name: str
    init: InitFn
    update: UpdateFn
    lr: Schedule
    hyper: Mapping[str, float] = field(default_factory=dict)
    rule: Rule | None = None
    n_state: int = 0

    def learning_rate(self, step: int) -> float:
        """The learning rate used at 0-based ``step``."""
        return rate(self.lr, step)

    @property
    def hyper_array(self) -> np.ndarray:
        """``hyper`` as a float64 array (the compiled loop's view of the hyperparameters)."""
        return np.array(list(self.hyper.values()) or [0.0], dtype=np.float64)

    def __repr__(self) -> str:
        args = ", ".join([f"lr={self.lr!r}", *(f"{k}={v!r}" for k, v in self.hyper.items())])
        return f"{self.name}({args})"


def from_rule(name: str, rule: Rule, *, lr: float | Schedule, state: int = 0,
              **hyper: float) -> Optimizer:
    """An :class:`Optimizer` from its element-wise rule (the one definition of its arithmetic).

    ``rule(x, g, *state, lr, k, *hyper) -> (new_x, *new_state)`` is called with NumPy arrays by
    the Python loop and, jitted, with floats by the compiled loop; ``state`` is the number of
    state arrays (each starts at zero), ``hyper`` the hyperparameters: by name when they are the
    rule's own parameter names (in any keyword order), else positionally in the order given.

    >>> import numpy as np
    >>> def sign_rule(x, g, lr, k):
    ...     return (x - lr * np.sign(g),)
    >>> opt = from_rule("sign_sgd", sign_rule, lr=0.5)
    >>> opt.update(np.array([3.0, -2.0]), opt.init(np.zeros(2)), np.zeros(2), 0)[0]
    array([-0.5,  0.5])
    """
    if not callable(rule):
        raise TypeError(f"rule must be a function rule(x, g, *state, lr, k, *hyper), got {rule!r}")
    if isinstance(state, bool) or not isinstance(state, int) or state < 0:
        raise ValueError(f"state (the number of state arrays) must be an integer >= 0, "
                         f"got {state!r}")
    lr_ = _lr(lr)
    hyper = _by_signature(rule, state, {k: float(v) for k, v in hyper.items()})
    h = tuple(hyper.values())
    n_state = state

    def init(x: np.ndarray) -> State:
        return tuple(_zeros(x) for _ in range(n_state))

    def update(g: np.ndarray, state: State, x: np.ndarray, step: int) -> tuple[np.ndarray, State]:
        out = rule(x, g, *state, rate(lr_, step), step, *h)
        return out[0], tuple(out[1:])

    return Optimizer(name, init, update, lr_, MappingProxyType(hyper), rule, n_state)


def _by_signature(rule: Rule, n_state: int, hyper: dict[str, float]) -> dict[str, float]:
    """``hyper`` in the order of the rule's parameters after ``(x, g, *state, lr, k)`` when
    those are its names (``beta=..., damp=...`` for ``rule(..., damp, beta)`` swapped them)."""
    try:
        params = list(inspect.signature(rule).parameters)
    except (TypeError, ValueError):  # no signature to read: the given order
        return hyper
    names = params[4 + n_state:]
    if sorted(names) != sorted(hyper):
        return hyper
    return {k: hyper[k] for k in names}


def _check_unit(name: str, value: Any, *, closed: bool = True) -> float:
    v = float(value)
    ok = 0.0 <= v <= 1.0 if closed else 0.0 <= v < 1.0
    if not (math.isfinite(v) and ok):
        rng = "[0, 1]" if closed else "[0, 1)"
        raise ValueError(f"{name} must be in {rng}, got {value!r}")
    return v


def _check_eps(value: Any) -> float:
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"eps must be finite and > 0, got {value!r}")
    return v


def _lr(lr: float | Schedule) -> Schedule:
    sched = as_schedule(lr, "lr")
    if not callable(lr) and not float(lr) > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    return sched


def _zeros(x: np.ndarray) -> np.ndarray:
    return np.zeros(np.shape(x), dtype=np.float64)


# --------------------------------------------------------------------------- constructors


def sgd(lr: float | Schedule = 1e-3) -> Optimizer:
    """Plain gradient descent (:func:`sgd_rule`).

    >>> import numpy as np
    >>> opt = sgd(lr=0.1)
    >>> opt.update(np.array([2.0]), opt.init(np.array([1.0])), np.array([1.0]), 0)[0]
    array([0.8])
    """
    return from_rule("sgd", sgd_rule, lr=lr)


def momentum(lr: float | Schedule = 1e-3, beta: float = 0.9) -> Optimizer:
    """Heavy-ball momentum (MATLAB's ``sgdmupdate``, :func:`momentum_rule`), ``v`` starts at 0.

    >>> import numpy as np
    >>> opt = momentum(lr=0.1, beta=0.5)
    >>> x = np.array([1.0]); s = opt.init(x)
    >>> x, s = opt.update(np.array([1.0]), s, x, 0); x, s = opt.update(np.array([1.0]), s, x, 1)
    >>> x, s[0]
    (array([0.75]), array([-0.15]))
    """
    return from_rule("momentum", momentum_rule, lr=lr, state=1,
                     beta=_check_unit("beta", beta, closed=False))


def nesterov(lr: float | Schedule = 1e-3, beta: float = 0.9) -> Optimizer:
    """Nesterov momentum in the textbook look-ahead form (:func:`nesterov_rule`).

    >>> import numpy as np
    >>> opt = nesterov(lr=0.1, beta=0.5)
    >>> x = np.array([1.0]); s = opt.init(x)
    >>> opt.update(np.array([1.0]), s, x, 0)[0]
    array([0.85])
    """
    return from_rule("nesterov", nesterov_rule, lr=lr, state=1,
                     beta=_check_unit("beta", beta, closed=False))


def adam(
    lr: float | Schedule = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
) -> Optimizer:
    """Adam (Kingma & Ba 2015) with bias correction (:func:`adam_rule`); ``m``, ``v`` start at 0.

    The first step therefore moves every coordinate by about ``lr`` (``-lr*sign(g)``).

    >>> import numpy as np
    >>> opt = adam(lr=0.1)
    >>> x = np.array([1.0, 1.0])
    >>> opt.update(np.array([3.0, -0.5]), opt.init(x), x, 0)[0]
    array([0.9, 1.1])
    """
    return from_rule("adam", adam_rule, lr=lr, state=2,
                     b1=_check_unit("b1", b1, closed=False),
                     b2=_check_unit("b2", b2, closed=False), eps=_check_eps(eps))


def rmsprop(lr: float | Schedule = 1e-3, rho: float = 0.9, eps: float = 1e-8) -> Optimizer:
    """RMSProp (Hinton, :func:`rmsprop_rule`): a running mean of squared gradients, from 0.

    >>> import numpy as np
    >>> opt = rmsprop(lr=0.01, rho=0.75)
    >>> x = np.array([1.0])
    >>> opt.update(np.array([4.0]), opt.init(x), x, 0)[0]
    array([0.98])
    """
    return from_rule("rmsprop", rmsprop_rule, lr=lr, state=1,
                     rho=_check_unit("rho", rho, closed=False), eps=_check_eps(eps))


def adagrad(lr: float | Schedule = 1e-2, eps: float = 1e-10) -> Optimizer:
    """AdaGrad (Duchi et al. 2011, :func:`adagrad_rule`): the running *sum* of squared gradients.

    >>> import numpy as np
    >>> opt = adagrad(lr=0.5)
    >>> x = np.array([1.0])
    >>> opt.update(np.array([4.0]), opt.init(x), x, 0)[0]
    array([0.5])
    """
    return from_rule("adagrad", adagrad_rule, lr=lr, state=1, eps=_check_eps(eps))


# --------------------------------------------------------------------------- second order


def lbfgs(m: int = 10, *, c1: float = 1e-4, c2: float = 0.9,
          max_linesearch: int = 25) -> SecondOrder:
    """L-BFGS with a strong Wolfe line search, for :func:`symgrad.minimize` (full batch).

    ``m`` pairs of past steps and gradient changes approximate the inverse Hessian; each
    iteration costs one or a few value-and-gradient evaluations. See :mod:`symgrad.train.lbfgs`.

    >>> lbfgs(m=5)
    lbfgs(m=5, c1=0.0001, c2=0.9, max_linesearch=25)
    """
    if isinstance(m, bool) or not isinstance(m, int | np.integer) or m < 1:
        raise ValueError(f"m (the number of stored pairs) must be an integer >= 1, got {m!r}")
    c1, c2 = float(c1), float(c2)
    if not 0 < c1 < c2 < 1:
        raise ValueError(f"the Wolfe constants need 0 < c1 < c2 < 1, got c1={c1}, c2={c2}")
    if isinstance(max_linesearch, bool) or not isinstance(max_linesearch, int) \
            or max_linesearch < 2:
        raise ValueError(f"max_linesearch must be an integer >= 2, got {max_linesearch!r}")
    return SecondOrder("lbfgs", frozen({"m": int(m), "c1": c1, "c2": c2,
                                        "max_linesearch": max_linesearch}))


def newton(*, radius: float = 1.0, max_radius: float = 1e10, eta: float = 0.15,
           max_cg: int | None = None) -> SecondOrder:
    """Newton's method in a trust region on exact Hessian-vector products (Steihaug–Toint CG).

    For :func:`symgrad.minimize` (full batch) with a Kernel, or a callable plus ``hvp=``.
    Each iteration costs one value-and-gradient evaluation and up to ``max_cg`` HVPs
    (default ``2 n``). A residual kernel's HVP is the Gauss–Newton product ``JᵀJ v``, so there
    this is a trust-region Gauss–Newton method (linear convergence on a nonzero-residual fit);
    :func:`symgrad.least_squares` is the method for residuals, and ``sg.compile`` of the loss
    ``0.5 * sum(r**2)`` gives exact Newton. See :mod:`symgrad.train.newton`.

    >>> newton(radius=0.5)
    newton(radius=0.5, max_radius=10000000000.0, eta=0.15, max_cg=None)
    """
    radius, max_radius, eta = float(radius), float(max_radius), float(eta)
    if not (0 < radius <= max_radius):
        raise ValueError(f"need 0 < radius <= max_radius, got radius={radius}, "
                         f"max_radius={max_radius}")
    if not 0 <= eta < 0.25:
        raise ValueError(f"eta (the acceptance ratio) must be in [0, 0.25), got {eta}")
    if max_cg is not None and (isinstance(max_cg, bool) or not isinstance(max_cg, int)
                               or max_cg < 1):
        raise ValueError(f"max_cg must be an integer >= 1 (or None), got {max_cg!r}")
    return SecondOrder("newton", frozen({"radius": radius, "max_radius": max_radius,
                                         "eta": eta, "max_cg": max_cg}))
