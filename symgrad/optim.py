"""First-order optimizers as pure ``(init, update)`` pairs with explicit state (optax style).

An :class:`Optimizer` holds two pure functions:

- ``init(x) -> state``: a tuple of float64 arrays shaped like ``x`` (``()`` for plain SGD);
- ``update(g, state, x, step) -> (new_x, new_state)``: one step from the gradient ``g`` at the
  iterate ``x``, with ``step`` the 0-based step number (it picks the learning rate from the
  schedule and the bias corrections of Adam). Nothing is modified in place.

``update`` returns the new *parameters*, not a delta, so the equation in each docstring is the
arithmetic performed, operation for operation. The same arithmetic is implemented once more,
element by element, for the compiled Numba loop in :mod:`symgrad.minimize`; each optimizer
exposes the numbers that loop needs as :attr:`Optimizer.kind` (which update) and
:attr:`Optimizer.hyper` (its hyperparameters in a fixed order), and the two implementations
agree bit for bit (tests/test_minimize.py checks it).

Every ``lr`` is a float or a schedule (``step -> lr``, see :mod:`symgrad.schedules`).

A new optimizer is one ``(init, update)`` pair::

    def sign_sgd(lr=1e-3):
        lr_ = schedules.as_schedule(lr)
        return Optimizer("sign_sgd", init=lambda x: (),
                         update=lambda g, s, x, k: (x - lr_(k) * np.sign(g), s), lr=lr_)

(it then runs in the Python loop; ``kind=None`` means no compiled update).

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
them in their own loops (:mod:`symgrad.lbfgs`, :mod:`symgrad.newton`, full batch only).

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

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from .schedules import Exponential, Schedule, as_schedule
from .second_order import SecondOrder, frozen

__all__ = [
    "DEFAULTS",
    "KINDS",
    "TESTED_HYPERPARAMETERS",
    "Optimizer",
    "adagrad",
    "adam",
    "lbfgs",
    "momentum",
    "nesterov",
    "newton",
    "rmsprop",
    "sgd",
]

State = tuple[np.ndarray, ...]
InitFn = Callable[[np.ndarray], State]
UpdateFn = Callable[[np.ndarray, State, np.ndarray, int], tuple[np.ndarray, State]]

#: Numeric ids of the built-in updates, as used by the compiled loop.
KINDS: Mapping[str, int] = MappingProxyType(
    {"sgd": 0, "momentum": 1, "nesterov": 2, "adam": 3, "rmsprop": 4, "adagrad": 5}
)

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
    """A first-order optimizer: pure ``init``/``update`` functions plus their numeric spec.

    Attributes:
        name: short name (``"adam"``).
        init: ``init(x) -> state``, a tuple of arrays shaped like ``x``.
        update: ``update(g, state, x, step) -> (new_x, new_state)``, pure.
        lr: the learning-rate schedule (a float was turned into ``schedules.constant``).
        hyper: the other hyperparameters by name, in the order the compiled loop reads them.
        kind: id of the compiled update (:data:`KINDS`), ``None`` for a Python-only optimizer.
    """

    name: str
    init: InitFn
    update: UpdateFn
    lr: Schedule
    hyper: Mapping[str, float] = field(default_factory=dict)
    kind: int | None = None

    def learning_rate(self, step: int) -> float:
        """The learning rate used at 0-based ``step``."""
        return float(self.lr(step))

    @property
    def hyper_array(self) -> np.ndarray:
        """``hyper`` as a float64 array (the compiled loop's view of the hyperparameters)."""
        return np.array(list(self.hyper.values()) or [0.0], dtype=np.float64)

    def __repr__(self) -> str:
        args = ", ".join([f"lr={self.lr!r}", *(f"{k}={v!r}" for k, v in self.hyper.items())])
        return f"{self.name}({args})"


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


def sgd(lr: float | Schedule = 1e-3) -> Optimizer:
    """Plain gradient descent.

    ``x <- x - lr*g``

    >>> import numpy as np
    >>> opt = sgd(lr=0.1)
    >>> opt.update(np.array([2.0]), opt.init(np.array([1.0])), np.array([1.0]), 0)[0]
    array([0.8])
    """
    lr_ = _lr(lr)

    def init(x: np.ndarray) -> State:
        return ()

    def update(g: np.ndarray, state: State, x: np.ndarray, step: int) -> tuple[np.ndarray, State]:
        return x - lr_(step) * g, state

    return Optimizer("sgd", init, update, lr_, {}, KINDS["sgd"])


def momentum(lr: float | Schedule = 1e-3, beta: float = 0.9) -> Optimizer:
    """Heavy-ball momentum (MATLAB's ``sgdmupdate``), velocity ``v`` starts at 0.

    ``v <- beta*v - lr*g``;  ``x <- x + v``

    >>> import numpy as np
    >>> opt = momentum(lr=0.1, beta=0.5)
    >>> x = np.array([1.0]); s = opt.init(x)
    >>> x, s = opt.update(np.array([1.0]), s, x, 0); x, s = opt.update(np.array([1.0]), s, x, 1)
    >>> x, s[0]
    (array([0.75]), array([-0.15]))
    """
    lr_ = _lr(lr)
    beta = _check_unit("beta", beta, closed=False)

    def init(x: np.ndarray) -> State:
        return (_zeros(x),)

    def update(g: np.ndarray, state: State, x: np.ndarray, step: int) -> tuple[np.ndarray, State]:
        (v,) = state
        v = beta * v - lr_(step) * g
        return x + v, (v,)

    return Optimizer("momentum", init, update, lr_, {"beta": beta}, KINDS["momentum"])


def nesterov(lr: float | Schedule = 1e-3, beta: float = 0.9) -> Optimizer:
    """Nesterov momentum in the textbook "look-ahead" form, ``v`` starts at 0.

    ``v <- beta*v - lr*g``;  ``x <- x + beta*v - lr*g``  (with the new ``v``)

    >>> import numpy as np
    >>> opt = nesterov(lr=0.1, beta=0.5)
    >>> x = np.array([1.0]); s = opt.init(x)
    >>> opt.update(np.array([1.0]), s, x, 0)[0]
    array([0.85])
    """
    lr_ = _lr(lr)
    beta = _check_unit("beta", beta, closed=False)

    def init(x: np.ndarray) -> State:
        return (_zeros(x),)

    def update(g: np.ndarray, state: State, x: np.ndarray, step: int) -> tuple[np.ndarray, State]:
        (v,) = state
        a = lr_(step)
        v = beta * v - a * g
        return x + beta * v - a * g, (v,)

    return Optimizer("nesterov", init, update, lr_, {"beta": beta}, KINDS["nesterov"])


def adam(
    lr: float | Schedule = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
) -> Optimizer:
    """Adam (Kingma & Ba 2015) with bias correction; ``m``, ``v`` start at 0, ``t = step + 1``.

    ``m <- b1*m + (1-b1)*g``;  ``v <- b2*v + (1-b2)*g*g``;
    ``x <- x - lr * (m/(1-b1**t)) / (sqrt(v/(1-b2**t)) + eps)``

    The first step therefore moves every coordinate by about ``lr`` (``-lr*sign(g)``).

    >>> import numpy as np
    >>> opt = adam(lr=0.1)
    >>> x = np.array([1.0, 1.0])
    >>> opt.update(np.array([3.0, -0.5]), opt.init(x), x, 0)[0]
    array([0.9, 1.1])
    """
    lr_ = _lr(lr)
    b1 = _check_unit("b1", b1, closed=False)
    b2 = _check_unit("b2", b2, closed=False)
    eps = _check_eps(eps)
    c1, c2 = 1.0 - b1, 1.0 - b2

    def init(x: np.ndarray) -> State:
        return (_zeros(x), _zeros(x))

    def update(g: np.ndarray, state: State, x: np.ndarray, step: int) -> tuple[np.ndarray, State]:
        m, v = state
        t = step + 1.0
        bc1 = 1.0 - b1**t
        bc2 = 1.0 - b2**t
        m = b1 * m + c1 * g
        v = b2 * v + c2 * (g * g)
        return x - lr_(step) * (m / bc1) / (np.sqrt(v / bc2) + eps), (m, v)

    hyper = {"b1": b1, "b2": b2, "eps": eps}
    return Optimizer("adam", init, update, lr_, hyper, KINDS["adam"])


def rmsprop(lr: float | Schedule = 1e-3, rho: float = 0.9, eps: float = 1e-8) -> Optimizer:
    """RMSProp (Hinton): a running mean of squared gradients scales the step; ``s`` starts at 0.

    ``s <- rho*s + (1-rho)*g*g``;  ``x <- x - lr*g / (sqrt(s) + eps)``

    >>> import numpy as np
    >>> opt = rmsprop(lr=0.01, rho=0.75)
    >>> x = np.array([1.0])
    >>> opt.update(np.array([4.0]), opt.init(x), x, 0)[0]
    array([0.98])
    """
    lr_ = _lr(lr)
    rho = _check_unit("rho", rho, closed=False)
    eps = _check_eps(eps)
    c = 1.0 - rho

    def init(x: np.ndarray) -> State:
        return (_zeros(x),)

    def update(g: np.ndarray, state: State, x: np.ndarray, step: int) -> tuple[np.ndarray, State]:
        (s,) = state
        s = rho * s + c * (g * g)
        return x - lr_(step) * g / (np.sqrt(s) + eps), (s,)

    return Optimizer("rmsprop", init, update, lr_, {"rho": rho, "eps": eps}, KINDS["rmsprop"])


def adagrad(lr: float | Schedule = 1e-2, eps: float = 1e-10) -> Optimizer:
    """AdaGrad (Duchi et al. 2011): the running *sum* of squared gradients scales the step.

    ``s <- s + g*g``;  ``x <- x - lr*g / (sqrt(s) + eps)``  (``s`` starts at 0)

    >>> import numpy as np
    >>> opt = adagrad(lr=0.5)
    >>> x = np.array([1.0])
    >>> opt.update(np.array([4.0]), opt.init(x), x, 0)[0]
    array([0.5])
    """
    lr_ = _lr(lr)
    eps = _check_eps(eps)

    def init(x: np.ndarray) -> State:
        return (_zeros(x),)

    def update(g: np.ndarray, state: State, x: np.ndarray, step: int) -> tuple[np.ndarray, State]:
        (s,) = state
        s = s + g * g
        return x - lr_(step) * g / (np.sqrt(s) + eps), (s,)

    return Optimizer("adagrad", init, update, lr_, {"eps": eps}, KINDS["adagrad"])


# --------------------------------------------------------------------------- second order


def lbfgs(m: int = 10, *, c1: float = 1e-4, c2: float = 0.9,
          max_linesearch: int = 25) -> SecondOrder:
    """L-BFGS with a strong Wolfe line search, for :func:`symgrad.minimize` (full batch).

    ``m`` pairs of past steps and gradient changes approximate the inverse Hessian; each
    iteration costs one or a few value-and-gradient evaluations. See :mod:`symgrad.lbfgs`.

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
    (default ``2 n``). See :mod:`symgrad.newton`.

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
