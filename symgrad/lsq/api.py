"""``least_squares``, ``curve_fit`` and the SciPy bridge ``to_scipy``.

>>> import numpy as np, symgrad as sg
>>> a, b = sg.params("a b"); t, y = sg.data("t y")
>>> tt = np.linspace(0, 4, 30); yy = 3 * np.exp(-0.7 * tt)
>>> fit = sg.least_squares(a*sg.exp(-b*t) - y, [1.0, 0.1], data={"t": tt, "y": yy})
>>> np.round(fit.x, 10).tolist(), fit.success
([3.0, 0.7], True)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from . import robust
from .curve import check_curve_inputs
from .lm import MESSAGES, gauss_newton, levenberg_marquardt, polish
from .objective import Objective
from .result import LeastSquaresResult

__all__ = ["as_kernel", "curve_fit", "least_squares", "to_scipy"]

METHODS = {"lm": ("normal", levenberg_marquardt), "gn": ("normal", gauss_newton),
           "precise": ("qr", levenberg_marquardt)}


def _is_kernel(obj: Any) -> bool:
    return all(hasattr(obj, a) for a in ("normal", "n_residuals", "rows", "bind", "params"))


def as_kernel(residual, params=None, data=None):
    """A residual kernel: ``residual`` itself if it is one, else compiled from the expression.

    Expressions compile with :func:`symgrad.compile_residuals` (the generated Numba kernel);
    :class:`~symgrad.lsq.reference.ReferenceResiduals` (NumPy) has the same interface.
    """
    if _is_kernel(residual):
        if params is not None:
            names = [str(p) for p in (params.replace(",", " ").split()
                                      if isinstance(params, str) else params)]
            if tuple(names) != tuple(residual.params):
                raise ValueError(f"params={names} but the compiled residual's parameters are "
                                 f"{list(residual.params)}")
        return residual
    from .build import compile_residuals

    return compile_residuals(residual, params=params, data=data)


def _x0(x0, names: tuple[str, ...]) -> np.ndarray:
    if isinstance(x0, Mapping):
        missing = [n for n in names if n not in x0]
        extra = sorted(set(map(str, x0)) - set(names))
        if missing or extra:
            raise ValueError(f"x0 must give every parameter ({', '.join(names)}): "
                             + (f"missing {', '.join(missing)} " if missing else "")
                             + (f"unknown {', '.join(extra)}" if extra else ""))
        x0 = [x0[n] for n in names]
    x = np.array(x0, dtype=np.float64).ravel()
    if x.size != len(names):
        raise ValueError(f"x0 has {x.size} values but there are {len(names)} parameters "
                         f"({', '.join(names)})")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"x0 must be finite, got {x.tolist()}")
    return x


def _bounds(bounds, names, x0) -> tuple | None:
    if bounds is None:
        return None
    lo, hi = (np.broadcast_to(np.asarray(b, dtype=np.float64), x0.shape).copy()
              for b in bounds)
    if np.all(np.isinf(lo) & (lo < 0)) and np.all(np.isinf(hi) & (hi > 0)):
        return None
    bad = [n for n, lo_, hi_ in zip(names, lo, hi, strict=True) if not lo_ < hi_]
    if bad:
        raise ValueError(f"bounds: lower must be < upper for {', '.join(bad)}")
    out = [n for n, v, lo_, hi_ in zip(names, x0, lo, hi, strict=True) if not lo_ <= v <= hi_]
    if out:
        raise ValueError(f"x0 is outside the bounds for {', '.join(out)}")
    return lo, hi


def _weights(weights, M: int, m: int) -> np.ndarray | None:
    if weights is None:
        return None
    w = np.asarray(weights, dtype=np.float64).ravel()
    if w.size == M // m and m > 1:
        w = np.repeat(w, m)
    if w.size != M:
        raise ValueError(f"weights has {w.size} values; give one per sample ({M // m}) or per "
                         f"residual ({M})")
    if not np.all(np.isfinite(w) & (w >= 0)):
        raise ValueError("weights must be finite and >= 0")
    return w


def _check_start(obj: Objective, kernel, x0: np.ndarray, data: Mapping) -> Any:
    lin = obj.linearize(x0)
    if np.isfinite(lin.cost):
        return lin
    with np.errstate(all="ignore"):
        r = obj.fun(x0)
    bad = np.flatnonzero(~np.isfinite(r))
    at = ", ".join(f"{n}={v:.6g}" for n, v in zip(kernel.params, x0, strict=True))
    if bad.size == 0:
        raise ValueError(f"the Jacobian is not finite at x0 ({at}): choose another start")
    i, k = divmod(int(bad[0]), kernel.m)
    row = ", ".join(f"{n}={float(np.asarray(data[n][i])):.6g}" for n in kernel.data_names)
    which = f"residual {k} of sample {i}" if kernel.m > 1 else f"sample {i}"
    raise ValueError(f"the residual is {r[bad[0]]} at {which} ({row or 'no data'}) with "
                     f"{at} ({bad.size} non-finite residuals): choose another x0 or check "
                     "the data")


def least_squares(residual, x0, params=None, data: Mapping | None = None, *,
                  method: str = "lm", loss: str = "linear", f_scale: float = 1.0,
                  bounds: tuple | None = None, weights=None, xtol: float = 1e-8,
                  ftol: float = 1e-8, gtol: float = 1e-8, max_nfev: int | None = None,
                  x_scale: Any = "jac", refine: bool = True, chunk: int = 4096
                  ) -> LeastSquaresResult:
    """Minimise ``0.5 * sum(w_i * rho(r_i(x)**2))`` over the parameters.

    ``residual``: a SymPy expression in parameters and per-sample data (one residual per
    sample), a list of them (several per sample), a list of parameter-only residuals, or a
    compiled residual kernel. ``method``: ``"lm"`` (Levenberg–Marquardt on the fused normal
    equations, J never stored), ``"precise"`` (LM on a streamed QR factor of J: no squared
    condition number) or ``"gn"`` (Gauss–Newton with a line search). ``loss``/``f_scale``,
    ``xtol``/``ftol``/``gtol``/``max_nfev``/``x_scale`` and the status codes are SciPy's.
    ``bounds=(lo, hi)``: a projected active-set step (see :mod:`symgrad.lsq.lm`). ``x0`` may
    be a dict by parameter name. ``refine``: after convergence, take Gauss–Newton steps while
    they shrink the gradient (digits the cost tests cannot see; :func:`~symgrad.lsq.lm.polish`).
    ``chunk``: samples per block of the streamed QR.
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r}: use one of {', '.join(METHODS)}")
    robust.check(loss, f_scale)
    for name, tol in (("xtol", xtol), ("ftol", ftol), ("gtol", gtol)):
        if not tol >= 0:
            raise ValueError(f"{name} must be >= 0, got {tol}")
    if max_nfev is not None and max_nfev < 1:
        raise ValueError(f"max_nfev must be >= 1, got {max_nfev}")
    data = dict(data or {})
    kernel = as_kernel(residual, params)
    x = _x0(x0, tuple(kernel.params))
    bound = kernel.bind(**data)
    if hasattr(bound, "persist"):  # Dask columns: computed into the cluster's memory once
        bound = bound.persist()
    M, P = int(bound.n_residuals()), kernel.n_params
    if M < P:
        raise ValueError(f"{M} residual(s) but {P} parameters ({', '.join(kernel.params)}): "
                         "least squares needs at least as many residuals as parameters")
    if not isinstance(x_scale, str):
        xs = np.broadcast_to(np.asarray(x_scale, dtype=float), x.shape)
        if not np.all(np.isfinite(xs) & (xs > 0)):
            raise ValueError("x_scale must be 'jac' or positive numbers")
        x_scale = xs
    elif x_scale != "jac":
        raise ValueError(f"x_scale={x_scale!r}: use 'jac' or an array")
    box = _bounds(bounds, tuple(kernel.params), x)
    mode, solver = METHODS[method]
    obj = Objective(bound, loss=loss, f_scale=f_scale, weights=_weights(weights, M, kernel.m),
                    mode=mode, chunk=chunk)
    lin0 = _check_start(obj, kernel, x, data)
    out = solver(obj, x, xtol=xtol, ftol=ftol, gtol=gtol, max_nfev=max_nfev, x_scale=x_scale,
                 bounds=box, lin0=lin0)
    if refine:
        out = polish(obj, out, box)
    res = LeastSquaresResult(
        x=out.x, cost=out.lin.cost, grad=out.lin.g, nfev=out.nfev, njev=out.nfev, nit=out.nit,
        status=out.status, message=MESSAGES[out.status], params=tuple(kernel.params),
        n_residuals=M, active_mask=out.active.astype(int), method=method, loss=loss,
        _model=out.lin.model, _objective=obj)
    res.warn_unidentifiable()
    return res


def _curve_symbols(model, xdata, params):
    from ..symbols import data as declare_data
    from .curve import curve_model
    from .reference import resolve_symbols

    expr, params = curve_model(model, xdata, params)  # text is parsed safely, never evaluated
    ps, ds = resolve_symbols([expr], params)
    names = [d.name for d in ds]
    if isinstance(xdata, Mapping):
        cols = {k: np.asarray(v, dtype=np.float64) for k, v in xdata.items()}
    elif len(names) == 1:
        cols = {names[0]: np.asarray(xdata, dtype=np.float64)}
    else:
        arr = np.asarray(xdata, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[0] != len(names):
            raise ValueError(f"the model has data columns {', '.join(names)}: pass xdata as a "
                             f"dict or a ({len(names)}, N) array in that order")
        cols = dict(zip(names, arr, strict=True))
    yname = "ydata"
    while yname in names or yname in [p.name for p in ps]:
        yname += "_"
    return expr - declare_data(yname), ps, cols, yname


def curve_fit(model, xdata, ydata, p0, *, params=None, sigma=None,
              absolute_sigma: bool = False, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """Fit ``model`` (a SymPy expression in parameters and data symbols) to ``ydata``.

    Returns ``(popt, pcov)`` as ``scipy.optimize.curve_fit``: ``xdata`` is one array (one data
    symbol), a dict by name, or a (k, N) array of the k data symbols sorted by name; ``sigma``
    the standard deviations of ``ydata`` (weights ``1/sigma**2``); ``pcov`` is scaled by the
    residual variance unless ``absolute_sigma``. Other keywords go to :func:`least_squares`.

    >>> import numpy as np, symgrad as sg
    >>> k = sg.params("k"); x = sg.data("x")
    >>> popt, pcov = sg.curve_fit(k * x, np.arange(1.0, 5.0), [2.1, 3.9, 6.0, 8.1], [1.0])
    >>> round(float(popt[0]), 6), pcov.shape
    (2.01, (1, 1))
    """
    resid, ps, cols, yname = _curve_symbols(model, xdata, params)
    cols[yname] = check_curve_inputs(cols, np.ravel(ydata), p0, [p.name for p in ps])
    weights = None
    if sigma is not None:
        s = np.asarray(sigma, dtype=np.float64)
        if s.ndim != 1 or not np.all(s > 0):
            raise ValueError("sigma must be a 1-D array of positive standard deviations")
        weights = 1.0 / s**2
    fit = least_squares(resid, p0, params=ps, data=cols, weights=weights, **kwargs)
    pcov = fit.cov_unscaled if absolute_sigma else fit.cov
    return fit.x, pcov


def to_scipy(residual, data: Mapping | None = None, params=None
             ) -> tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]:
    """``(fun, jac)`` for ``scipy.optimize.least_squares(fun, x0, jac=jac)``: the same
    compiled residuals and their exact Jacobian.

    >>> import numpy as np, symgrad as sg
    >>> from scipy.optimize import least_squares as scipy_lsq
    >>> a = sg.params("a"); t, y = sg.data("t y")
    >>> fun, jac = sg.lsq.to_scipy(a*t - y, {"t": np.arange(4.0), "y": np.arange(4.0)*2})
    >>> round(float(scipy_lsq(fun, [1.0], jac=jac, method="lm").x[0]), 12)
    2.0
    """
    bound = as_kernel(residual, params).bind(**dict(data or {}))

    def fun(x: np.ndarray) -> np.ndarray:
        return bound.residuals(np.asarray(x, dtype=np.float64))

    def jac(x: np.ndarray) -> np.ndarray:
        return bound.jacobian(np.asarray(x, dtype=np.float64))

    return fun, jac

