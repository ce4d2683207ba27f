"""One kernel interface for every kind of loss: :class:`Kernel`.

A scalar loss (:class:`~symgrad.runtime.scalar.ScalarKernel`), an array loss
(:class:`~symgrad.ArrayKernel`) and residuals (:class:`~symgrad.ResidualKernel`) are subclasses
that say how to validate ``x`` and data and how to call their compiled functions (the hooks at
the end of :class:`Kernel`). Everything else is written once, here: the public methods, the
finiteness check that names a NaN in the data, packing, and :meth:`Kernel.bind`, whose
:class:`~symgrad.runtime.bound.Bound` calls the same methods with the data validated once, so a
bound kernel keeps every guarantee of the unbound call.

>>> import numpy as np, symgrad as sg
>>> a, b = sg.params("a b"); t = sg.data("t")
>>> f = sg.compile(sg.mean((a*t + b)**2))
>>> isinstance(f, sg.Kernel), f.kind, f.labels
(True, 'scalar', ('a', 'b'))
>>> f.unpack(f.pack(a=2.0, b=-1.0))["a"].item()
2.0
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .argcheck import BoundOut, data_inputs, no_positional, seeded
from .bound import bound
from .datacheck import result_finite

__all__ = ["At", "Kernel", "entry_names"]

#: The Hessian's ``out`` as the compiled code names it.
H_OUT = "out (the Hessian H)"


def entry_names(layout) -> tuple[str, ...]:
    """One name per entry of ``x`` (``W[0, 1]``, ``lam``) for a layout of ``(name, shape)``."""
    return tuple(f"{n}[{', '.join(map(str, i))}]" if s else n
                 for n, s in layout for i in np.ndindex(*s))


class At:
    """The data side of one call, validated: the compiled functions' argument tail ``args``,
    the data by name (to name a non-finite value), the batch, and the ``out`` check."""

    __slots__ = ("args", "batch", "check", "data", "out")

    def __init__(self, args: tuple, data: Mapping, batch, check: bool, out) -> None:
        self.args, self.data, self.batch, self.check, self.out = args, data, batch, check, out


class Kernel:
    """A compiled loss: ``value``, ``value_and_grad``, ``grad``, ``hvp``, ``hessian`` at ``x``.

    Every kernel has ``kind`` (``"scalar"``, ``"array"`` or ``"residual"``), ``params`` (names in
    the order of ``x``), ``n_params`` (None while it depends on call-time vector lengths),
    ``labels`` (one name per entry of ``x``), ``shapes``, ``pack``/``unpack``, ``formulas``,
    ``data_names`` and ``bind``. Data are keyword arguments by name, with an optional ``batch``
    (a slice or an index array) selecting samples. ``x``, ``v`` and ``out`` are checked by
    :mod:`symgrad.runtime.argcheck`; a non-finite result names the first non-finite datum it read.
    """

    kind: str = "loss"
    params: tuple[str, ...]
    n_params: int | None
    data_names: tuple[str, ...]
    #: The shape of each parameter (``()``: a scalar; ``(None,)``: a vector of call-time length).
    shapes: dict[str, tuple]
    dtype: np.dtype = np.dtype(np.float64)
    analytic: bool = False
    #: Scan the data for NaN/inf on every call (the loss can hide them), not only after a
    #: non-finite result.
    _scan_always: bool = False
    #: What a data entry is called in messages.
    _data_kind: str = "data column"

    # -- the public calls, one definition for every kind --------------------------------------
    def value(self, x, /, *extra, batch=None, **data) -> float:
        """The loss at ``x``."""
        no_positional(extra, self.data_names, "value")
        return self._value(x, self._at(data, batch))

    def value_and_grad(self, x, /, out=None, *extra, batch=None,
                       **data) -> tuple[float, np.ndarray]:
        """The loss at ``x`` and its gradient (written into ``out`` when given)."""
        no_positional(extra, self.data_names, "value_and_grad", out)
        return self._value_and_grad(x, out, self._at(data, batch))

    def grad(self, x, /, out=None, *extra, batch=None, **data) -> np.ndarray:
        """The gradient at ``x`` (written into ``out`` when given)."""
        no_positional(extra, self.data_names, "grad", out)
        return self._value_and_grad(x, out, self._at(data, batch))[1]

    def hvp(self, x, v, /, out=None, *extra, batch=None, **data) -> np.ndarray:
        """The Hessian at ``x`` times the vector ``v``, without forming the Hessian."""
        no_positional(extra, self.data_names, "hvp", out)
        return self._hvp(x, v, out, self._at(data, batch))

    def hessian(self, x, /, out=None, *extra, batch=None, **data) -> np.ndarray:
        """The Hessian at ``x`` as an ``(n, n)`` array (written into ``out`` when given)."""
        no_positional(extra, self.data_names, "hessian", out)
        return self._hessian(x, out, self._at(data, batch))

    def value_complex(self, x, /, *extra, batch=None, **data) -> complex:
        """The loss at a complex ``x`` (complex-step checks; analytic losses only)."""
        no_positional(extra, self.data_names, "value_complex")
        self._analytic_only()
        return self._value_complex(x, self._at(data, batch))

    def bind(self, **data):
        """Validate data once; the result has the same methods without data arguments and
        keeps every check of the unbound call (for hot loops).

        >>> import symgrad as sg, numpy as np
        >>> a = sg.params("a"); t = sg.data("t")
        >>> fb = sg.compile(sg.mean((a - t)**2)).bind(t=np.array([1.0, 3.0]))
        >>> fb.value(np.array([2.0]))
        1.0
        """
        args = self.data_args(data)
        if type(args) is not tuple:  # Dask columns: reduced on the cluster
            return args.bound
        cols = self._columns(args)
        return bound(self, At(args, cols, None, bool(self.data_names),
                              BoundOut(self._out, data_inputs(cols, self._data_kind))))

    # -- packing ------------------------------------------------------------------------------
    def init(self, seed: int = 0, scale: float = 1.0) -> np.ndarray:
        """A random starting point: matrices ~ N(0, scale/fan_in) (He/LeCun), vectors and
        scalars zero. Reproducible from ``seed``."""
        if self.n_params is None:
            raise ValueError("init() needs a fixed length of x; this loss has vectors of "
                             "call-time length: start from np.zeros(...) of the length you want")
        rng = seeded(seed)
        parts = {}
        for n, s in self.shapes.items():
            if len(s) >= 2:
                parts[n] = rng.standard_normal(s) * math.sqrt(scale / math.prod(s[1:]))
            else:
                parts[n] = np.zeros(s)
        return self.pack(**parts)

    @property
    def labels(self) -> tuple[str, ...]:
        """One name per entry of ``x`` (``W[0, 1]``, ``b[3]``, ``lam``), for reports. With
        vectors of call-time length, the pattern names of :attr:`params` (``v[:]``)."""
        if self.n_params is None:
            return self.params
        return entry_names(self._layout(self.n_params))

    def unpack(self, x) -> dict[str, np.ndarray]:
        """Views of ``x`` per parameter, in their shapes (writes go through to ``x``)."""
        x = self._x(x)
        out, o = {}, 0
        for n, s in self._layout(x.shape[0]):
            k = math.prod(s)
            out[n] = x[o:o + k].reshape(s)
            o += k
        return out

    def param_names(self, size: int | None = None) -> tuple[str, ...]:
        """One name per entry of x (``W[0, 1]``, ``v[3]``); ``size``, x's number of entries,
        gives the vectors' length (needed when there are vector parameters)."""
        if size is None and any(None in s for s in self.shapes.values()):
            raise TypeError("param_names(size): the vector parameters' length n comes from x's "
                            "size; pass it (f.param_names(x.size))")
        return entry_names(self._layout(size))

    def pack(self, **arrays) -> np.ndarray:
        """The flat ``x`` from one value or array per parameter (by name)."""
        names = [n for n, _ in self._layout(None)]
        missing = [n for n in names if n not in arrays]
        if missing:
            raise TypeError(f"pack needs every parameter; missing {', '.join(missing)}")
        extra = sorted(set(arrays) - set(names))
        if extra:
            raise TypeError(f"unknown parameter '{extra[0]}' (parameters: {tuple(names)})")
        parts, lengths = [], {}
        for n, s in self._layout(None):
            a = np.asarray(arrays[n], dtype=self.dtype)
            if None in s:
                if a.ndim != 1:
                    raise ValueError(f"parameter {n} must be a vector, got shape {a.shape}")
                lengths[n] = a.shape[0]
            elif a.shape != s:
                raise ValueError(f"parameter {n} must have shape {s}, got {a.shape}")
            parts.append(a.ravel())
        if len(set(lengths.values())) > 1:  # (their total may still split evenly: re-split)
            raise ValueError("the vector parameters share one length n, got "
                             + ", ".join(f"{n} of {k}" for n, k in lengths.items()))
        x = np.concatenate(parts) if parts else np.empty(0, self.dtype)
        self._x(x)  # vectors of one common length
        return x

    def _layout(self, size: int | None) -> list[tuple[str, tuple]]:
        """``(name, shape)`` per parameter for an ``x`` of ``size`` entries (None: as declared)."""
        return [(n, s) for n, s in self.shapes.items()]

    # -- the calls with validated data ---------------------------------------------------------
    def _at(self, data: Mapping, batch) -> At:
        """The data side of one unbound call (no NaN/inf scan unless the loss can hide them)."""
        args = self.data_args(data, batch, scan=self._scan_always)
        inputs = data_inputs(data, self._data_kind) if data else ()
        check = bool(self.data_names) and not self._scan_always

        def out(o, shape, what, *named):
            return self._out(o, shape, what, [*named, *inputs])

        return At(args, data, batch, check, out)

    def _checked(self, at: At, value: float, *outs: np.ndarray) -> float:
        """``value`` when it and ``outs`` are finite or the data are; else the error naming the
        first non-finite data value the call read (its column and row)."""
        if at.check and not result_finite(value, *outs):
            self._name_non_finite(at.data, at.batch)
        return value

    def _value(self, x, at: At) -> float:
        x = self._x(x)
        return self._checked(at, float(self._run("value", x, at.args)))

    def _value_and_grad(self, x, out, at: At) -> tuple[float, np.ndarray]:
        x = self._x(x)
        out = at.out(out, x.shape, "out", ("x", x))
        v = float(self._run("value_and_grad", x, at.args, out))
        return self._checked(at, v, out), out

    def _hvp(self, x, v, out, at: At) -> np.ndarray:
        x = self._x(x)
        v = self._x(v, "v", x.shape[0])
        out = at.out(out, x.shape, "out", ("x", x), ("v", v))
        self._run("hvp", x, at.args, v, out)
        self._checked(at, 0.0, out)
        return out

    def _hessian(self, x, out, at: At) -> np.ndarray:
        x = self._x(x)
        out = at.out(out, (x.shape[0], x.shape[0]), H_OUT, ("x", x))
        self._run("hessian", x, at.args, out)
        self._checked(at, 0.0, out)
        return out

    def no_complex_step(self) -> str | None:
        """Why this kernel has no complex-step evaluation (``value_complex``), or None.

        >>> import symgrad as sg
        >>> a = sg.params("a")
        >>> sg.compile(sg.abs(a)).no_complex_step()[:27]
        'the loss is not analytic (a'
        """
        if self.analytic:
            return None
        if self.kind == "residual":
            return ("a residual kernel has no complex-step evaluation; check it with "
                    "method='exact' or 'richardson'")
        if getattr(getattr(self, "problem", None), "analytic", False):  # float32 kernels
            return ("this kernel computes in float32 and has no complex evaluation; check it "
                    "with method='exact' (the default for float32 kernels), or compile the loss "
                    "without dtype='float32' for complex-step checks")
        return ("the loss is not analytic (abs/max/min/relu/Piecewise/sign); use "
                "method='richardson'")

    def _analytic_only(self) -> None:
        why = self.no_complex_step()
        if why is not None:
            raise TypeError(f"value_complex: {why}")

    def _value_complex(self, x, at: At) -> complex:
        self._analytic_only()
        x = np.ascontiguousarray(x, dtype=np.complex128)
        if x.ndim != 1:
            raise ValueError(f"x must be 1-D, got shape {x.shape}")
        self._x(x.real.copy())  # the length rule of x
        try:
            return complex(self._run_complex(x, at.args))
        except ZeroDivisionError:  # Numba's complex division raises even under IEEE rules
            return complex(math.nan, math.nan)

    # -- what each kind provides ----------------------------------------------------------------
    def _x(self, x, what: str = "x", size: int | None = None) -> np.ndarray:
        raise NotImplementedError

    def _out(self, out, shape: tuple, what: str = "out", inputs=()) -> np.ndarray:
        raise NotImplementedError

    def data_args(self, data: Mapping | None = None, batch=None, *, scan: bool = True) -> tuple:
        """Validate data (and an optional batch) into the positional tail of ``f.jit`` calls."""
        raise NotImplementedError

    def _columns(self, args: tuple) -> dict[str, np.ndarray]:
        """The validated data of ``data_args``'s result, by name."""
        raise NotImplementedError

    def _name_non_finite(self, data: Mapping, batch=None) -> None:
        """Raise the error naming the first non-finite datum a call read, if any."""
        raise NotImplementedError

    def _run(self, name: str, x: np.ndarray, args: tuple, *outs: Any):
        """Call the compiled function ``name`` as ``fn(x, *outs, *args)``."""
        raise NotImplementedError

    def _run_complex(self, x: np.ndarray, args: tuple) -> complex:
        raise TypeError(f"a {self.kind} kernel has no complex-step variant")
