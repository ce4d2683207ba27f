"""An array graph interpreted element by element with SymPy scalars (the exact oracle's input).

:func:`interpret` evaluates every node of an array loss (:mod:`symgrad.ir.graph`) on NumPy
object arrays whose elements are SymPy expressions: parameters are symbols, data are 50-digit
Floats. It shares nothing with the code generator or the array autodiff, so the loss it returns
can be differentiated with ``sympy.diff`` as an independent oracle.

Kinks are resolved at the point ``x`` (:class:`Smoother`): every max, relu, abs, Piecewise...
is replaced by the smooth branch active there, and at a tie by a linear form whose derivative
is the kernel's :class:`~symgrad.ad.derive.KinkPolicy` value (max reductions: ties share the
derivative equally). The result equals the loss at ``x`` and has the kernel's derivative there;
it is not the loss elsewhere.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import sympy as sp

from ..ad.array import topo
from ..ad.derive import KinkPolicy
from .graph import SAMPLES, N, Node, ph

__all__ = ["TIE", "Smoother", "interpret", "work"]

#: Two values closer than this (relative to their size) count as a tie at a kink.
TIE = sp.Float("1e-40")


def _size(s: Any, n: int) -> int:
    return n if s == N else int(s)


def work(loss: Node, n: int) -> int:
    """Roughly how many SymPy operations :func:`interpret` builds for ``n`` samples."""
    total = 0
    for node in topo([loss]):
        size = math.prod(_size(s, n) for s in node.shape)
        if node.kind == "map":
            total += size * (1 + sp.count_ops(node.expr))
        elif node.kind in ("contract", "reduce"):
            arg = node.args[0]
            inner = math.prod(_size(s, n) for s in arg.shape)
            if node.kind == "contract":
                b = node.args[1]
                la, lb, _ = node.labels
                sizes = dict(zip(la, arg.shape, strict=True)) | dict(zip(lb, b.shape,
                                                                          strict=True))
                inner = math.prod(_size(sizes[c], n) for c in set(la + lb))
            total += max(size, inner)
        else:
            total += size
    return total


def _sized(shape: tuple, n: int) -> tuple[int, ...]:
    return tuple(_size(s, n) for s in shape)


def _zeros(shape: tuple) -> np.ndarray:
    out = np.empty(shape, dtype=object)
    out[...] = sp.S.Zero
    return out


def interpret(loss: Node, env: Mapping[str, np.ndarray], n: int,
              smooth: Smoother) -> sp.Expr:
    """The scalar loss from ``env`` (one object array per leaf name, in the leaf's shape with
    ``N`` = ``n`` samples); ``smooth`` resolves the kinks of every element it is given."""
    val: dict[int, np.ndarray] = {}
    for node in topo([loss]):
        shape = _sized(node.shape, n)
        out = _RULES[node.kind](node, [val[id(a)] for a in node.args], shape, env, n, smooth)
        out = np.asarray(out, dtype=object).reshape(shape) if not isinstance(out, np.ndarray) \
            else out
        if out.shape != shape:
            raise AssertionError(f"interpret: {node!r} gave shape {out.shape}, expected {shape}")
        val[id(node)] = out
    return val[id(loss)][()]


def _leaf(node, args, shape, env, n, smooth) -> np.ndarray:
    a = np.asarray(env[node.name], dtype=object)
    if a.shape != shape:
        raise ValueError(f"'{node.name}' has shape {a.shape}; the loss expects {shape}")
    return a


def _map(node, args, shape, env, n, smooth) -> np.ndarray:
    expr = node.expr.xreplace({SAMPLES: sp.Integer(n)})
    out = np.empty(shape, dtype=object)
    for idx in np.ndindex(*shape):
        subs = {ph(k): a[tuple(idx[j] for j in axes)]
                for k, (a, axes) in enumerate(zip(args, node.axes, strict=True))}
        out[idx] = smooth(expr, subs)  # kinks resolved in the Map's expression as written
    return out


def _contract(node, args, shape, env, n, smooth) -> np.ndarray:
    letters = {c: chr(97 + k) for k, c in enumerate(dict.fromkeys("".join(node.labels)))}
    la, lb, lo = ("".join(letters[c] for c in lab) for lab in node.labels)
    out = np.einsum(f"{la},{lb}->{lo}", args[0], args[1], dtype=object)
    return np.asarray(out, dtype=object).reshape(shape)


def _reduce(node, args, shape, env, n, smooth) -> np.ndarray:
    (z,) = args
    rest = tuple(j for j in range(z.ndim) if j not in node.keep)
    flat = np.transpose(z, node.keep + rest).reshape((*shape, -1))
    out = np.empty(shape, dtype=object)
    for idx in np.ndindex(*shape):
        items = list(flat[idx])
        if node.op == "sum":
            out[idx] = sp.Add(*items)
        elif node.op == "lse":
            out[idx] = sp.log(sp.Add(*[sp.exp(e) for e in items]))
        else:  # max: the tied maxima share the derivative equally (arrays/autodiff.py)
            out[idx] = smooth(_MaxOf(*[ph(k) for k in range(len(items))]),
                              {ph(k): e for k, e in enumerate(items)})
    return out


class _MaxOf(sp.Function):
    """A max reduction's elements, resolved by :class:`Smoother` (ties share equally)."""


def _window(node, args, shape, env, n, smooth) -> np.ndarray:
    (a,) = args
    key: list[Any] = [slice(None)] if node.args[0].per_sample else []
    for j, w in enumerate(node.spec, start=len(key)):
        key.append(w if isinstance(w, int) else slice(w[0], a.shape[j] - w[1]))
    return np.asarray(a[tuple(key)], dtype=object).reshape(shape)


def _pad(node, args, shape, env, n, smooth) -> np.ndarray:
    out = _zeros(shape)
    key: list[Any] = [slice(None)] if node.per_sample else []
    for j, w in enumerate(node.spec, start=len(key)):
        key.append(w if isinstance(w, int) else slice(w[0], shape[j] - w[1]))
    out[tuple(key)] = args[0]
    return out


def _rows(idx: np.ndarray, size: int, name: str) -> list[int]:
    rows = [int(v) for v in idx.ravel()]
    bad = [r for r in rows if not 0 <= r < size]
    if bad:
        raise ValueError(f"index data '{name}' holds {bad[0]}, outside 0..{size - 1}")
    return rows


def _gather(node, args, shape, env, n, smooth) -> np.ndarray:
    src, idx = args
    rows = _rows(idx, src.shape[0], node.args[1].name)
    return np.asarray(src[rows], dtype=object).reshape(shape)


def _scatter(node, args, shape, env, n, smooth) -> np.ndarray:
    arg, idx = args
    out = _zeros(shape)
    for s, r in enumerate(_rows(idx, shape[0], node.args[1].name)):
        out[r] = out[r] + arg[s]
    return out


_RULES = {"leaf": _leaf, "map": _map, "contract": _contract, "reduce": _reduce,
          "window": _window, "pad": _pad, "gather": _gather, "scatter": _scatter}


# -- kinks resolved at the point ------------------------------------------------------------------

class Smoother:
    """Replaces every kink of an expression by the branch active at ``point``.

    ``smooth(e, env)`` resolves the kinks of ``e`` as written, with its symbols valued by
    ``env`` (symbol -> expression in the point's symbols), then substitutes ``env``: the kinks
    keep their orientation (SymPy may rewrite ``Abs(1.0 - a)`` as ``Abs(a - 1.0)`` once a
    datum is substituted, which matters for a one-sided abs'(0)).

    relu/Abs/Max/Min/Max2/Min2 pick their active argument; at a tie (within :data:`TIE`) a
    linear form with the policy's one-sided weights (relu'(0), abs'(0), the Max/Min tie share,
    applied link by link along the chain). Heaviside, sign, floor and ceiling become their
    value; Piecewise its first true branch; logsumexp, log1p, expm1, sigmoid and softplus
    their elementary forms.
    """

    def __init__(self, point: Mapping[sp.Symbol, sp.Float], policy: Any = None) -> None:
        self.point = dict(point)
        self.pol = policy or KinkPolicy()
        self.values: dict[sp.Expr, sp.Expr] = {}

    def value(self, e: sp.Expr) -> sp.Expr:
        """``e`` at the point (60 digits)."""
        v = self.values.get(e)
        if v is None:
            v = self.values[e] = sp.N(e.xreplace(self.point), 60)
        return v

    def __call__(self, e: sp.Expr, env: Mapping[sp.Symbol, sp.Expr] | None = None) -> sp.Expr:
        if not e.atoms(sp.Function) and not e.has(sp.Piecewise, sp.Max, sp.Min):  # not Functions
            return e.xreplace(env) if env else e
        local = dict(self.point)
        if env:
            local.update({s: self.value(v) for s, v in env.items() if e.has(s)})
        out = _walker(local, self.pol)(e)
        return out.xreplace(env) if env else out


def _walker(point: Mapping[sp.Symbol, sp.Expr], pol: Any) -> Callable[[sp.Expr], sp.Expr]:
    cache: dict[sp.Expr, sp.Expr] = {}

    def num(e: sp.Expr) -> sp.Float:
        v = sp.N(e.xreplace(point), 60)
        if not v.is_number:
            raise NotImplementedError(f"method='exact' cannot evaluate {e} at x")
        return sp.re(v)

    def zero(v: sp.Float) -> bool:
        return abs(v) <= TIE

    def pick(a: sp.Expr, b: sp.Expr, big: bool) -> sp.Expr:
        va, vb = num(a), num(b)
        d = va - vb
        if abs(d) <= TIE * max(1, abs(va), abs(vb)):
            t = sp.nsimplify(pol.tie)
            return va + t * (a - va) + t * (b - vb)
        return a if (d > 0) == big else b

    def walk(e: sp.Expr) -> sp.Expr:
        if e.is_Atom or not e.args:
            return e
        hit = cache.get(e)
        if hit is not None:
            return hit
        name = type(e).__name__
        if isinstance(e, sp.Piecewise):
            for v, c in e.args:
                if bool(c.xreplace(point)) if c not in (sp.true, sp.false) else bool(c):
                    out = walk(v)
                    break
            else:
                raise NotImplementedError(f"no branch of {e} holds at x")
        else:
            args = [walk(a) for a in e.args]
            out = _smooth_node(e, name, args, num, zero, pick, pol)
        cache[e] = out
        return out

    return walk


def _smooth_node(e, name, args, num, zero, pick, pol) -> sp.Expr:
    if name == "relu":
        (z,) = args
        v = num(z)
        return sp.nsimplify(pol.relu) * z if zero(v) else (z if v > 0 else sp.S.Zero)
    if isinstance(e, sp.Abs):
        (z,) = args
        v = num(z)
        return sp.nsimplify(pol.abs) * z if zero(v) else (z if v > 0 else -z)
    if isinstance(e, sp.Max | sp.Min) or name in ("Max2", "Min2", "_MaxOf"):
        if name == "_MaxOf":  # a max reduction: ties share the derivative equally
            vals = [num(a) for a in args]
            top = max(vals)
            tied = [a for a, v in zip(args, vals, strict=True)
                    if abs(v - top) <= TIE * max(1, abs(top))]
            return sp.Add(*tied) / len(tied)
        big = isinstance(e, sp.Max) or name == "Max2"
        acc = args[0]
        for b in args[1:]:
            acc = pick(acc, b, big)
        return acc
    if isinstance(e, sp.Heaviside):
        v = num(args[0])
        if zero(v):
            return args[1] if len(args) > 1 else sp.S.Half
        return sp.S.One if v > 0 else sp.S.Zero
    if isinstance(e, sp.sign | sp.floor | sp.ceiling):
        return type(e)(num(args[0]))
    if hasattr(e, "_closed"):  # symgrad's logsumexp, sigmoid, softplus (relu: above)
        return e._closed(*args)
    if name == "log1p":
        return sp.log(1 + args[0])
    if name == "expm1":
        return sp.exp(args[0]) - 1
    if isinstance(e, sp.DiracDelta):
        return sp.S.Zero
    return e.func(*args)
