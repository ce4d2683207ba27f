"""``least_squares``, ``curve_fit`` and the SciPy bridge ``to_scipy``.

>>> import numpy as np, symgrad as sg
>>> a, b = sg.params("a b"); t, y = sg.data("t y")
>>> tt = np.linspace(0, 4, 30); yy = 3 * np.exp(-0.7 * tt)
>>> fit = sg.least_squares(a*sg.exp(-b*t) - y, [1.0, 0.1], data={"t": tt, "y": yy})
>>> np.round(fit.x, 10).tolist(), fit.success
([3.0, 0.7], True)
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..build.residual import compile_residuals
from ..ir.problem import listed
from ..lang.symbols import data as declare_data
from ..runtime.array_residual import compile_array_residuals, is_array_residual, x0_by_name
from ..runtime.bound import is_kernel
from . import options as opt
from . import robust
from .curve import check_curve_inputs, curve_model
from .lm import MESSAGES
from .objective import Objective
from .reference import resolve_symbols
from .result import LeastSquaresResult
from .solve import METHODS, solve

__all__ = ["FTOL", "GTOL", "XTOL", "as_kernel", "curve_fit", "least_squares", "to_scipy"]

#: Default tolerances (SciPy's are 1e-8): the certified NIST problems reach 6.6-11 digits at
#: these (4.7-11 at 1e-8) for 4% more evaluations (``benchmarks/strd.py``). gtol stays above
#: the gradient's rounding, so a fit whose sums run in another order (Dask chunks) stops alike.
XTOL = FTOL = 1e-12
GTOL = 1e-10



def _is_kernel(obj: Any) -> bool:
    """A residual kernel (compiled, on arrays, the reference one, or a look-alike that says so)."""
    return is_kernel(obj, "residual") and hasattr(obj, "bind")


def as_kernel(residual, params=None, data=None):
    """A residual kernel: ``residual`` itself if it is one, else compiled from the expression.

    Expressions compile with :func:`symgrad.compile_residuals` (the generated Numba kernel);
    an array expression that keeps the sample axis (``W @ X + b - Y``) with
    :func:`~symgrad.runtime.array_residual.compile_array_residuals` (m residuals per sample);
    :class:`~symgrad.lsq.reference.ReferenceResiduals` (NumPy) has the same interface.
    """
    if _is_kernel(residual):
        if params is not None:
            names = [str(p) for p in listed(params)]
            if tuple(names) != tuple(residual.params):
                raise ValueError(f"params={names} but the compiled residual's parameters are "
                                 f"{list(residual.params)}")
        return residual
    if is_array_residual(residual):
        return compile_array_residuals(residual, params, data)
    return compile_residuals(residual, params=params, data=data)


def _datum(col, i: int) -> str:
    """Row ``i`` of a data column (or array) for a message."""
    v = np.asarray(col[i] if np.ndim(col) else col, dtype=np.float64)
    return f"{float(v):.6g}" if v.size == 1 else np.array2string(v, precision=6, threshold=8)


def _check_start(obj: Objective, kernel, x0: np.ndarray, data: Mapping) -> Any:
    lin = obj.calibrate(x0)
    if np.isfinite(lin.cost):
        return lin
    with np.errstate(all="ignore"):
        r = obj.fun(x0)
    bad = np.flatnonzero(~np.isfinite(r))
    at = ", ".join(f"{n}={v:.6g}" for n, v in zip(kernel.params, x0, strict=True))
    if bad.size == 0:
        raise ValueError(f"the Jacobian is not finite at x0 ({at}): choose another start")
    i, k = divmod(int(bad[0]), kernel.m)
    row = ", ".join(f"{n}={_datum(data[n], i)}" for n in kernel.data_names)
    which = f"residual {k} of sample {i}" if kernel.m > 1 else f"sample {i}"
    raise ValueError(f"the residual is {r[bad[0]]} at {which} ({row or 'no data'}) with "
                     f"{at} ({bad.size} non-finite residuals): choose another x0 or check "
                     "the data")


def least_squares(residual, x0, params=None, data: Mapping | None = None, *,
                  method: str = "lm", loss: str = "linear", f_scale: float = 1.0,
                  bounds: tuple | None = None, weights=None, xtol: float = XTOL,
                  ftol: float = FTOL, gtol: float = GTOL, max_nfev: int | None = None,
                  x_scale: Any = "jac", refine: bool = True, chunk: int = 4096,
                  fallback: bool = True) -> LeastSquaresResult:
    """Minimise ``0.5 * sum(rho(w_i * r_i(x)**2))`` over the parameters (the loss sees the
    weighted residual ``sqrt(w_i) r_i``, as ``curve_fit``'s ``sigma`` does; a zero weight
    removes a residual, also from the degrees of freedom).

    ``residual``: a SymPy expression in parameters and per-sample data (one residual per
    sample), a list of them (several per sample), a list of parameter-only residuals, or a
    compiled residual kernel. ``method``: ``"lm"`` (Levenberg–Marquardt on the fused normal
    equations, J never stored), ``"precise"`` (LM on a streamed QR factor of J: no squared
    condition number) or ``"gn"`` (Gauss–Newton with a line search). ``loss``/``f_scale``,
    ``xtol``/``ftol``/``gtol``/``x_scale`` and the status codes are SciPy's (defaults 1e-12,
    1e-12, 1e-10; status -2: stalled, see :mod:`symgrad.lsq.solve`). ``max_nfev``: default
    ``200 * (P + 1)`` evaluations, shared with the fallback. ``fallback``: when the method
    stops in doubt (JᵀJ numerically singular, or a gradient that is not small), run the
    alternative method (``lm`` <-> ``precise``, ``gn`` -> ``precise``) from ``x0`` and keep the
    lower cost. ``bounds=(lo, hi)``: a projected active-set step (see :mod:`symgrad.lsq.lm`).
    ``x0`` may be a dict by parameter name. ``refine``: after convergence, take Gauss–Newton
    steps while they shrink the gradient (:func:`~symgrad.lsq.lm.polish`). ``chunk``: samples
    per block of the streamed QR.
    """
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method={method!r}: use one of {', '.join(METHODS)}")
    robust.check(loss, f_scale)
    xtol, ftol, gtol = (opt.tolerance(n, v) for n, v in
                        (("xtol", xtol), ("ftol", ftol), ("gtol", gtol)))
    max_nfev = opt.count("max_nfev", max_nfev, allow_none=True)
    chunk = opt.count("chunk", chunk)
    refine, fallback = opt.flag("refine", refine), opt.flag("fallback", fallback)
    if data is not None and not isinstance(data, Mapping):
        raise TypeError(f"data must be a dict of columns by name, got {type(data).__name__}")
    data = dict(data or {})
    kernel = as_kernel(residual, params)
    names = tuple(kernel.params)
    x = opt.x0(x0_by_name(kernel, x0), names)
    x_scale = opt.x_scale(x_scale, names)
    box = opt.bounds(bounds, names, x)
    bound = kernel.bind(**data)
    if hasattr(bound, "persist"):  # Dask columns: computed into the cluster's memory once
        bound = bound.persist()
    M, P = int(bound.n_residuals()), kernel.n_params
    if M < P:
        raise ValueError(f"{M} residual(s) but {P} parameters ({', '.join(names)}): "
                         "least squares needs at least as many residuals as parameters")
    w = opt.weights(weights, M, kernel.m)
    n_weighted = None if w is None else int(np.count_nonzero(w))
    if n_weighted is not None and n_weighted < P:
        raise ValueError(f"only {n_weighted} residual(s) have a non-zero weight but "
                         f"there are {P} parameters ({', '.join(names)}): least squares needs "
                         "at least as many weighted residuals as parameters")
    obj = Objective(bound, loss=loss, f_scale=f_scale, weights=w,
                    mode=METHODS[method][0], chunk=chunk, M=M)
    lin0 = _check_start(obj, kernel, x, data)
    out, obj = solve(obj, method, x, lin0, xtol=xtol, ftol=ftol, gtol=gtol, max_nfev=max_nfev,
                     x_scale=x_scale, bounds=box, refine=refine, fallback=fallback)
    s = np.float64(obj.s)  # a power of two: s*s overflows only when the cost does (1e160)
    with np.errstate(over="ignore", under="ignore"):
        cost, grad = float(out.lin.cost * s * s), out.lin.g * s * s
    res = LeastSquaresResult(
        x=out.x, cost=cost, grad=grad, nfev=out.nfev, njev=out.nfev, nit=out.nit,
        status=out.status, message=MESSAGES[out.status], params=names,
        n_residuals=M, active_mask=_active_mask(out.active, out.x, box), method=method, loss=loss,
        _model=out.lin.model, _objective=obj, _scale=obj.s, _cost=out.lin.cost,
        n_weighted=n_weighted)
    res.warn_unidentifiable()
    return res


def _active_mask(active: np.ndarray, x: np.ndarray, box: tuple | None) -> np.ndarray:
    """SciPy's ``active_mask``: -1 for a parameter held on its lower bound, 1 on its upper
    bound, 0 for a free one (``active``: those held, :func:`symgrad.lsq.lm._free`)."""
    mask = np.zeros(x.size, dtype=int)
    if box is not None:
        mask[active & (x <= box[0])] = -1
        mask[active & (x >= box[1])] = 1
    return mask


def _curve_symbols(model, xdata, params):
    expr, params = curve_model(model, xdata, params)  # text is parsed safely, never evaluated
    ps, ds = resolve_symbols([expr], params)
    names = [d.name for d in ds]
    if isinstance(xdata, Mapping):
        unused = [str(k) for k in xdata if str(k) not in names]
        if unused:
            raise ValueError(f"curve_fit: xdata column(s) {', '.join(map(repr, unused))} are not "
                             f"in the model (its data: {', '.join(names) or 'none'}); drop them "
                             "or check the names")
        cols = {k: np.asarray(v, dtype=np.float64) for k, v in xdata.items()}
    elif len(names) == 1:
        cols = {names[0]: np.asarray(xdata, dtype=np.float64)}
    elif not names:
        cols = {}  # a model without data (a constant): xdata is not read, as in SciPy
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


def _numbers(name: str, value) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):
        arr = np.asarray(None)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be numbers, got {value!r:.60}")
    return arr.astype(np.float64).ravel()


#: least_squares' arguments that curve_fit sets itself (from model, xdata, ydata, p0, sigma)
_CURVE_OWN = {"residual", "x0", "params", "data", "weights"}


def curve_fit(model, xdata, ydata, p0, *, params=None, sigma=None,
              absolute_sigma: bool = False, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """Fit ``model`` (a SymPy expression in parameters and data symbols) to ``ydata``.

    Returns ``(popt, pcov)`` as ``scipy.optimize.curve_fit``: ``xdata`` is one array (one data
    symbol), a dict by name, or a (k, N) array of the k data symbols sorted by name, naturally
    (``x2`` before ``x10``); ``sigma`` the standard deviations of ``ydata`` (weights
    ``1/sigma**2``); ``pcov`` is scaled by the residual variance unless ``absolute_sigma`` (with
    as many samples as parameters there is none: ``pcov`` is ``inf``, with a warning, as
    SciPy's). Other keywords go to :func:`least_squares`.

    >>> import numpy as np, symgrad as sg
    >>> k = sg.params("k"); x = sg.data("x")
    >>> popt, pcov = sg.curve_fit(k * x, np.arange(1.0, 5.0), [2.1, 3.9, 6.0, 8.1], [1.0])
    >>> round(float(popt[0]), 6), pcov.shape
    (2.01, (1, 1))
    """
    absolute_sigma = opt.flag("absolute_sigma", absolute_sigma)
    passed = set(inspect.signature(least_squares).parameters) - _CURVE_OWN
    unknown = sorted(set(kwargs) - passed)
    if unknown:
        raise TypeError(f"curve_fit() got unexpected keyword argument(s) "
                        f"{', '.join(repr(k) for k in unknown)}: it takes params, sigma, "
                        f"absolute_sigma and least_squares' {', '.join(sorted(passed))}")
    resid, ps, cols, yname = _curve_symbols(model, xdata, params)
    _numbers("ydata", ydata)  # numbers, not text
    y = cols[yname] = check_curve_inputs(cols, np.ravel(ydata), p0, [p.name for p in ps])
    weights = None
    if sigma is not None:
        s = _numbers("sigma", sigma)
        if np.ndim(sigma) > 1 or s.size != y.size:
            raise ValueError(f"sigma must be {y.size} standard deviations, one per ydata value "
                             f"(a 1-D array), got shape {np.shape(sigma)}")
        with np.errstate(over="ignore", divide="ignore"):
            weights = 1.0 / s**2
        if not np.all(np.isfinite(s) & (s > 0) & np.isfinite(weights)):
            raise ValueError("sigma must be positive finite standard deviations (and not so "
                             "small that 1/sigma**2 overflows)")
    fit = least_squares(resid, p0, params=ps, data=cols, weights=weights, **kwargs)
    if absolute_sigma:
        return fit.x, fit.cov_unscaled
    if fit.dof <= 0:
        warnings.warn(f"curve_fit: {fit.dof + len(ps)} weighted samples for {len(ps)} parameters "
                      "leave no degrees of freedom to estimate the residual variance: pcov is "
                      "inf (pass sigma with absolute_sigma=True to use sigma as it is)",
                      RuntimeWarning, stacklevel=2)
        return fit.x, np.full((len(ps), len(ps)), np.inf)
    return fit.x, fit.cov


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

