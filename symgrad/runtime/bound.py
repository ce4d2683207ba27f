"""A kernel with its data validated once (:class:`Bound`), and the protocol consumers rely on.

``kernel.bind(**data)`` returns a :class:`Bound` (a :class:`BoundResiduals` for residual
kernels): the kernel's own methods with the data side of the call fixed. They run the same code
as the unbound call, so the checks are the same: ``out`` may not overlap ``x``, ``v`` or the
data, and a non-finite result names the first non-finite datum (of the bound arrays, which are
the caller's and may have changed since ``bind``).

:class:`LossKernel` is what :func:`symgrad.minimize`, :func:`symgrad.check_grad` and the least
squares solvers rely on; :func:`is_kernel` tests for it by ``kind``, never by class.

>>> import numpy as np, symgrad as sg
>>> a = sg.params("a"); t = sg.data("t")
>>> tt = np.array([1.0, 3.0])
>>> fb = sg.compile(sg.mean((a - t)**2)).bind(t=tt)
>>> tt[1] = np.nan  # the bound data are the caller's array, not a copy
>>> fb.value(np.array([2.0]))
Traceback (most recent call last):
ValueError: data column 't' has a non-finite value (nan) at row 1: clean or drop it before fitting
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["Bound", "BoundResiduals", "LossKernel", "bound", "is_kernel"]

#: The kinds of compiled kernels (``f.kind``).
KINDS = frozenset({"scalar", "array", "residual"})


@runtime_checkable
class LossKernel(Protocol):
    """What the consumers of a kernel (training loops, checkers, solvers) rely on."""

    kind: str
    params: tuple[str, ...]

    def value(self, x, /) -> float: ...
    def value_and_grad(self, x, /, out=None) -> tuple[float, np.ndarray]: ...
    def grad(self, x, /, out=None) -> np.ndarray: ...
    def hvp(self, x, v, /, out=None) -> np.ndarray: ...
    def hessian(self, x, /, out=None) -> np.ndarray: ...


def is_kernel(obj: Any, *kinds: str) -> bool:
    """Whether ``obj`` is a symgrad kernel or bound kernel (of one of ``kinds`` when given)."""
    kind = getattr(obj, "kind", None)
    return kind in (kinds or KINDS) and not isinstance(obj, type)


class Bound:
    """A kernel bound to its data: ``value``, ``value_and_grad``, ``grad``, ``hvp``,
    ``hessian``, ``value_complex`` of ``x`` alone, with the unbound call's checks."""

    def __init__(self, kernel, at) -> None:
        self.kernel, self._at = kernel, at
        #: The compiled functions' data tail (``f.kernel.jit.value_and_grad(x, g, *f.args)``).
        self.args: tuple = at.args
        self.kind: str = kernel.kind
        self.params: tuple[str, ...] = kernel.params
        self.n_params: int | None = kernel.n_params
        self.shapes: dict = kernel.shapes
        self.dtype = kernel.dtype
        #: A bound kernel takes no data.
        self.data_names: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"<symgrad.Bound of {self.kernel!r}>"

    @property
    def labels(self) -> tuple[str, ...]:
        return self.kernel.labels

    def pack(self, **arrays) -> np.ndarray:
        return self.kernel.pack(**arrays)

    def unpack(self, x) -> dict[str, np.ndarray]:
        return self.kernel.unpack(x)

    def formulas(self) -> str:
        return self.kernel.formulas()

    def value(self, x, /) -> float:
        return self.kernel._value(x, self._at)

    def value_and_grad(self, x, /, out=None) -> tuple[float, np.ndarray]:
        return self.kernel._value_and_grad(x, out, self._at)

    def grad(self, x, /, out=None) -> np.ndarray:
        return self.kernel._value_and_grad(x, out, self._at)[1]

    def hvp(self, x, v, /, out=None) -> np.ndarray:
        return self.kernel._hvp(x, v, out, self._at)

    def hessian(self, x, /, out=None) -> np.ndarray:
        return self.kernel._hessian(x, out, self._at)

    def value_complex(self, x, /) -> complex:
        return self.kernel._value_complex(x, self._at)

    def no_complex_step(self) -> str | None:
        return self.kernel.no_complex_step()


class BoundResiduals(Bound):
    """A residual kernel bound to its data: the loss methods of ``½‖r‖²`` and ``residuals``,
    ``jacobian``, ``jvp``, ``vjp``, ``normal``, ``rows`` of ``x`` alone."""

    def __init__(self, kernel, at) -> None:
        super().__init__(kernel, at)
        #: Residuals per sample; number of samples (1 for parameter-only residuals).
        self.m: int = kernel.m
        self.n_samples: int = kernel._samples(at.args)

    def __repr__(self) -> str:
        return f"<symgrad.BoundResiduals M={self.n_residuals()} of {self.kernel!r}>"

    @property
    def cols(self) -> tuple[np.ndarray, ...]:
        """The bound data columns, in ``kernel.data_names`` order."""
        return tuple(self.kernel._columns(self.args).values())

    def n_residuals(self) -> int:
        return self.n_samples * self.m

    def residuals(self, x, /, out=None) -> np.ndarray:
        return self.kernel._residuals(x, out, self._at)

    def jacobian(self, x, /, out=None) -> np.ndarray:
        return self.kernel._jacobian(x, out, self._at)

    def jvp(self, x, v, /) -> np.ndarray:
        return self.kernel._jvp(x, v, self._at)

    def vjp(self, x, u, /) -> np.ndarray:
        return self.kernel._vjp(x, u, self._at)

    def normal(self, x, /, jscale=None, rscale=None) -> tuple[np.ndarray, np.ndarray, float]:
        return self.kernel._normal(x, jscale, rscale, self._at)

    def rows(self, x, lo: int, hi: int, /) -> tuple[np.ndarray, np.ndarray]:
        return self.kernel._rows(x, lo, hi, self._at)


def bound(kernel, at) -> Bound:
    """The bound kernel of ``kernel`` for the validated data side ``at``."""
    return BoundResiduals(kernel, at) if kernel.kind == "residual" else Bound(kernel, at)
