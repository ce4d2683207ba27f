"""Assertion helpers for users' own pytest suites.

Example:
    >>> import numpy as np
    >>> from symgrad.testing import assert_grad_close
    >>> fun = lambda x: float(x[0] ** 2 + 3 * x[1])
    >>> grad = lambda x: np.array([2 * x[0], 3.0])
    >>> chk = assert_grad_close((fun, grad), [1.5, -2.0])
    >>> chk.ok
    True
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import numpy as np

from .check import GradCheck, HessianCheck, check_grad, check_hessian

__all__ = ["assert_grad_close", "assert_hessian_close"]

#: Rows of the table shown in a failure message (the worst ones).
MAX_ROWS = 12


def assert_grad_close(
    f: Any, x: Any, data: Mapping[str, Any] | None = None, **kw: Any
) -> GradCheck:
    """Assert that the gradient of ``f`` at ``x`` agrees with the checker.

    ``f``, ``x``, ``data`` and the keyword arguments (``method``, ``directions``, ``seed``,
    ``rtol``, ``atol``, ``step``, ``names``) are as in :func:`symgrad.check_grad`. On failure
    the AssertionError names the worst component (the parameter name when known) with its
    analytic and numeric values, followed by a table of the worst components. Returns the
    :class:`~symgrad.GradCheck` when it passes.
    """
    chk = check_grad(f, x, data, **kw)
    if not chk.ok:
        raise AssertionError(_grad_message(chk))
    return chk


def assert_hessian_close(
    f: Any, x: Any, data: Mapping[str, Any] | None = None, **kw: Any
) -> HessianCheck:
    """Assert that the Hessian (and Hessian-vector product) of ``f`` at ``x`` agree.

    Arguments as :func:`symgrad.check_hessian`; ``f`` may also be ``(fun, grad, hess)``, the
    natural extension of :func:`assert_grad_close`'s ``(fun, grad)`` pair (``fun`` is then not
    needed and dropped). On failure the AssertionError names the worst entry
    (e.g. ``d2/dx1 dx2``) with analytic and numeric values.

    >>> fun = lambda x: float(x[0] ** 2 * x[1])
    >>> grad = lambda x: np.array([2 * x[0] * x[1], x[0] ** 2])
    >>> hess = lambda x: np.array([[2 * x[1], 2 * x[0]], [2 * x[0], 0.0]])
    >>> assert_hessian_close((fun, grad, hess), [1.0, 3.0]).ok
    True
    """
    chk = check_hessian(_grad_hess(f, x, data), x, data, **kw)
    if not chk.ok:
        raise AssertionError(_hessian_message(chk))
    return chk


def _grad_hess(f: Any, x: Any, data: Mapping[str, Any] | None) -> Any:
    """``(fun, grad, hess)`` -> ``(grad, hess)``; a ``(grad, hess, hvp)`` triple is kept.

    The two triples are told apart by what they return: ``fun`` a scalar, ``grad`` a vector;
    with one parameter (where a gradient may be a scalar too), by whether the third takes
    ``(x, v)`` as ``hvp`` does."""
    if not (isinstance(f, tuple | list) and len(f) == 3 and all(callable(c) for c in f)):
        return f
    first, second, third = f
    x = np.asarray(x, dtype=np.float64)
    if np.ndim(first(x, **dict(data or {}))) != 0:
        return f
    return (second, third) if x.size > 1 or not _takes_two(third) else f


def _takes_two(fn: Any) -> bool:
    """Whether ``fn`` can be called with two positional arguments (``hvp(x, v)``)."""
    try:
        inspect.signature(fn).bind(None, None)
    except TypeError:
        return False
    except ValueError:  # no signature (a builtin): assume the documented (grad, hess, hvp)
        return True
    return True


def _mismatch(chk: GradCheck | HessianCheck, what: str, unit: str) -> str:
    """The worst component (entry) of a failed check, with its values and tolerance."""
    i = chk.worst
    return (
        f"{what} mismatch at {chk.label(i)} ({unit} {i}): "
        f"analytic {chk.analytic[i]!r} vs numeric {chk.numeric[i]!r} "
        f"(abs err {chk.abs_err[i]:.3e}, rel err {chk.rel_err[i]:.3e}, "
        f"tolerance {chk.tol[i]:.3e}; method={chk.method}, rtol={chk.rtol:g}, atol={chk.atol:g})"
    )


def _grad_message(chk: GradCheck) -> str:
    return _mismatch(chk, "gradient", "component") + "\n" + chk.table(max_rows=MAX_ROWS)


def _hessian_message(chk: HessianCheck) -> str:
    ij = chk.worst
    entry_bad = chk.abs_err[ij] > chk.tol[ij] and ij not in set(chk.kinks)
    if entry_bad or chk.hvp_ok:
        head = _mismatch(chk, "Hessian", "entry")
    else:
        head = (
            f"Hessian-vector product mismatch: analytic {chk.hvp_analytic!r} vs numeric "
            f"{chk.hvp_numeric!r} (max rel err {chk.hvp_max_rel_err:.3e})"
        )
    return head + "\n" + chk.table(max_rows=MAX_ROWS)
