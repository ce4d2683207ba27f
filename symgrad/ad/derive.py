"""Exact derivatives by accumulation over the common-subexpression DAG.

The expression is first linearised into a straight-line :class:`Program` (one operation per
assignment, shared subexpressions computed once). Reverse accumulation then walks it backwards,
asking SymPy only for the *local* derivative of each small assignment, so the derivative code
grows linearly with the expression instead of once per parameter over the whole tree. Forward
accumulation over the gradient program gives Hessian-vector products. Every new assignment goes
through the same hash-consing table, so value, gradient and Hessian code share subexpressions.

>>> import sympy as sp
>>> x, y = sp.symbols("x y", real=True)
>>> b = Builder()
>>> f = b.node(x*sp.sin(x*y))
>>> gx, gy = b.gradient(f, [x, y])
>>> sp.simplify(b.expand(gx) - sp.diff(x*sp.sin(x*y), x))
0
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import sympy as sp

from ..ir.functions import Max2, Min2, relu
from ..ir.problem import ProblemError, too_deep
from ..ir.symtypes import DataVector
from .policy import KinkPolicy

__all__ = ["Builder", "Derivatives", "KinkPolicy", "Program", "Tmp", "VectorTerm", "derive",
           "local_derivative"]


class Tmp(sp.Symbol):
    """A temporary of a straight-line program (never a user symbol)."""

    def __new__(cls, k: int) -> Tmp:
        obj = super().__new__(cls, f"_t{k}", real=True)
        obj.k = k
        return obj


@functools.lru_cache(maxsize=64)
def _exact(v: float) -> sp.Number:
    """A policy value as an exact number (0.5 -> 1/2); nsimplify is slow, so once per value."""
    return sp.nsimplify(v)


def _free(e: sp.Basic) -> list:
    return sorted((s for s in e.free_symbols if not isinstance(s, sp.Idx)), key=sp.default_sort_key)


def local_derivative(e: sp.Expr, s: sp.Symbol, policy: KinkPolicy) -> sp.Expr:
    """d e / d s for a small expression, with kinks resolved by ``policy``."""
    if isinstance(e, sp.Function) and len(e.args) == 1 and e.args[0] == s:
        (u,) = e.args
        if isinstance(e, relu):
            return sp.Heaviside(u, policy.relu)
        if isinstance(e, sp.Abs):
            return 2 * sp.Heaviside(u, (1 + _exact(policy.abs)) / 2) - 1
        if isinstance(e, sp.sign | sp.Heaviside | sp.floor | sp.ceiling | sp.DiracDelta):
            return sp.S.Zero
    if isinstance(e, sp.Heaviside):  # Heaviside(u, h0): derivative 0 almost everywhere
        return sp.S.Zero
    if isinstance(e, Max2 | Min2):  # [s is the max], with the tie rule at a tie
        u, w = e.args
        sign = 1 if isinstance(e, Max2) else -1
        tie = _exact(policy.tie)
        return sp.Add(*[sp.Heaviside(sign * (a - b), tie) for a, b in ((u, w), (w, u)) if a == s])
    if isinstance(e, sp.Max | sp.Min) and s in e.args:  # the chain Max(Max(a, b), c), as Builder
        sign = 1 if isinstance(e, sp.Max) else -1
        tie = _exact(policy.tie)
        acc, d = e.args[0], sp.S.One if e.args[0] == s else sp.S.Zero
        for a in e.args[1:]:  # d link / d acc, and d link / d a when a is s
            d = sp.Heaviside(sign * (acc - a), tie) * d
            if a == s:
                d += sp.Heaviside(sign * (a - acc), tie)
            acc = (Max2 if sign > 0 else Min2)(acc, a)
        return d
    if isinstance(e, sp.Piecewise) and any(v.has(relu, sp.Abs, sp.Max, sp.Min, Max2, Min2)
                                           for v, _ in e.args):  # branches: kinks by policy
        return sp.Piecewise(*((_branch_derivative(v, s, policy), c) for v, c in e.args))
    if e.is_Pow and e.base == s and not e.exp.is_Number and not e.exp.has(s):
        # a**y with a data or parameter exponent: y*a**(y - 1), not SymPy's y*a**y/a (0/0 =
        # NaN at a = 0, where a**y with y >= 1 has the finite derivative y*0**(y-1))
        return e.exp * sp.Pow(s, e.exp - 1)
    d = sp.diff(e, s)
    return _resolve_kinks(d) if d.has(sp.DiracDelta, sp.Derivative, sp.sign) else d


def _branch_derivative(v: sp.Expr, s: sp.Symbol, policy: KinkPolicy) -> sp.Expr:
    """d v / d s of a Piecewise branch (opaque to Builder.node), its kinks through the policy."""
    b = Builder(policy)
    (g,) = b.gradient(b.node(v), [s])
    return b.expand(g)


def _resolve_kinks(d: sp.Expr) -> sp.Expr:
    rep = {a: sp.S.Zero for a in d.atoms(sp.DiracDelta)}
    rep.update({a: sp.S.Zero for a in d.atoms(sp.Derivative)
                if isinstance(a.expr, sp.floor | sp.ceiling | sp.sign | sp.Heaviside)})
    return d.xreplace(rep) if rep else d


class Builder:
    """Accumulates a straight-line program with hash-consing (one table = CSE everywhere)."""

    def __init__(self, policy: KinkPolicy | None = None) -> None:
        self.policy = policy or KinkPolicy()
        self.assigns: list[tuple[Tmp, sp.Expr]] = []
        self.table: dict[sp.Expr, Tmp] = {}
        self.memo: dict[sp.Expr, sp.Expr] = {}
        self.defs: dict[Tmp, sp.Expr] = {}

    # -- linearisation ------------------------------------------------------------------
    def emit(self, e: sp.Expr) -> sp.Expr:
        if e.is_Atom or isinstance(e, sp.Indexed):
            return e
        t = self.table.get(e)
        if t is None:
            t = Tmp(len(self.assigns))
            self.assigns.append((t, e))
            self.table[e] = t
            self.defs[t] = e
        return t

    def node(self, e: sp.Expr) -> sp.Expr:
        """Linearise ``e``; returns the atom (symbol, number or temporary) holding its value."""
        e = sp.sympify(e, strict=True)
        hit = self.memo.get(e)
        if hit is not None:
            return hit
        out = self._node(e)
        self.memo[e] = out
        return out

    def _node(self, e: sp.Expr) -> sp.Expr:
        if e.is_Atom or isinstance(e, sp.Indexed):
            return e
        if isinstance(e, sp.Piecewise):  # opaque: branches stay lazy, printed inline
            return self.emit(e)
        if e.is_Add:
            return self.emit(sp.Add(*[self.node(a) for a in e.args]))
        if e.is_Mul:
            coeff, rest = e.as_coeff_Mul()
            factors = [self.node(a) for a in sp.Mul.make_args(rest)]
            acc = factors[0]
            for f in factors[1:]:  # binary chain: reverse mode stays linear in the factor count
                acc = self.emit(sp.Mul(acc, f))
            return self.emit(coeff * acc) if coeff != 1 else acc
        if e.is_Pow:
            base = self.node(e.base)
            exp = e.exp if e.exp.is_Number else self.node(e.exp)
            return self.emit(sp.Pow(base, exp))
        if isinstance(e, sp.Max | sp.Min):  # a chain of binary nodes: linear derivative code
            pair = Max2 if isinstance(e, sp.Max) else Min2
            args = [self.node(a) for a in e.args]
            acc = args[0]
            for a in args[1:]:
                acc = self.emit(pair(acc, a))
            return acc
        if isinstance(e, sp.Function):
            return self.emit(e.func(*[self.node(a) for a in e.args]))
        raise TypeError(f"cannot linearise {type(e).__name__}: {e}")

    def add(self, terms: Sequence[sp.Expr]) -> sp.Expr:
        terms = [t for t in terms if t != 0]
        if not terms:
            return sp.S.Zero
        return self.node(sp.Add(*terms))

    # -- accumulation -------------------------------------------------------------------
    def _active(self, wrt: Iterable[sp.Symbol]) -> set:
        active = set(wrt)
        for t, e in self.assigns:
            if any(s in active for s in e.free_symbols):
                active.add(t)
        return active

    def gradient(self, out: sp.Expr, wrt: Sequence[sp.Symbol]) -> list[sp.Expr]:
        """Reverse accumulation: d out / d w for each ``w`` in ``wrt`` (atoms of this program)."""
        active = self._active(wrt)
        if out not in active:
            return [sp.S.Zero] * len(wrt)
        contribs: dict[sp.Expr, list[sp.Expr]] = {out: [sp.S.One]}
        for t, e in reversed(list(self.assigns)):
            if t not in contribs:
                continue
            adj = self.add(contribs.pop(t))
            if adj == 0:
                continue
            for s in _free(e):
                if s not in active:
                    continue
                d = local_derivative(e, s, self.policy)
                if d != 0:
                    contribs.setdefault(s, []).append(self.node(adj * self.node(d)))
        return [self.add(contribs.get(w, [])) if w != out else sp.S.One for w in wrt]

    def tangent(self, outs: Sequence[sp.Expr], seeds: dict[sp.Symbol, sp.Expr]) -> list[sp.Expr]:
        """Forward accumulation: directional derivatives of ``outs`` along ``seeds``."""
        tan: dict[sp.Expr, sp.Expr] = {s: v for s, v in seeds.items() if v != 0}
        need = self._needed(outs)
        for t, e in list(self.assigns):
            if t not in need:
                continue
            terms = []
            for s in _free(e):
                ts = tan.get(s)
                if ts is not None:
                    d = local_derivative(e, s, self.policy)
                    if d != 0:
                        terms.append(self.node(self.node(d) * ts))
            if terms:
                tan[t] = self.add(terms)
        return [tan.get(o, sp.S.Zero) if not o.is_Number else sp.S.Zero for o in outs]

    def _needed(self, outs: Sequence[sp.Expr]) -> set:
        need = {o for o in outs if isinstance(o, Tmp)}
        for t, e in reversed(self.assigns):
            if t in need:
                need.update(s for s in e.free_symbols if isinstance(s, Tmp))
        return need

    def schedule(self, outs: Sequence[sp.Expr]) -> list[tuple[Tmp, sp.Expr]]:
        """The assignments needed for ``outs``, in order (dead code removed)."""
        need = self._needed(outs)
        return [(t, e) for t, e in self.assigns if t in need]

    def expand(self, e: sp.Expr) -> sp.Expr:
        """Substitute temporaries back (for tests and display; exponential in the worst case)."""
        cache: dict = {}

        def go(x):
            if isinstance(x, Tmp):
                if x not in cache:
                    cache[x] = go(self.defs[x])
                return cache[x]
            if x.is_Atom:
                return x
            return x.func(*[go(a) for a in x.args])

        return go(sp.sympify(e, strict=True))


@dataclass(frozen=True)
class Program:
    """A finished straight-line program: assignments in order, named output lists."""

    assigns: tuple[tuple[Tmp, sp.Expr], ...]
    outputs: dict[str, tuple[sp.Expr, ...]]

    def schedule(self, *names: str) -> list[tuple[Tmp, sp.Expr]]:
        """The assignments the named outputs need, in order."""
        return self.schedule_of(*(o for n in names for o in self.outputs[n]))

    def schedule_of(self, *outs: sp.Expr) -> list[tuple[Tmp, sp.Expr]]:
        """The assignments the given output expressions need, in order."""
        need = {s for o in outs for s in sp.sympify(o, strict=True).free_symbols
                if isinstance(s, Tmp)}
        for t, e in reversed(self.assigns):
            if t in need:
                need.update(s for s in e.free_symbols if isinstance(s, Tmp))
        return [(t, e) for t, e in self.assigns if t in need]


@dataclass(frozen=True)
class Derivatives:
    """Everything code generation needs, computed exactly.

    ``sample`` is the per-sample program of the reductions (outputs ``e``: values, ``g``: K x n
    gradients flattened, ``hv``: K x n Hessian-vector products along ``v``). ``outer`` is the loss
    in parameters and reduction values ``R`` (outputs ``F``, ``dx``, ``dR``, and the Hessian-vector
    products ``hx``, ``hR`` along ``(v, u)`` with ``u = J v``).
    """

    problem: object
    policy: KinkPolicy
    v: tuple[sp.Symbol, ...]
    u: tuple[sp.Symbol, ...]
    sample: Program
    outer: Program
    vsums: tuple[VectorTerm, ...] = ()


@dataclass(frozen=True)
class VectorTerm:
    """The term of one indexed sum as a program of local symbols ``y`` (one per ``vec[i+off]``).

    Outputs: ``t`` the term, ``gy``/``gx`` its gradient in the locals / scalar parameters,
    ``dir`` its derivative along ``(v, vy)``, ``hy``/``hx`` the Hessian-vector products.
    """

    locals: tuple[tuple[sp.Symbol, object, int], ...]
    vy: tuple[sp.Symbol, ...]
    program: Program
    #: ``(symbol, column, offset)`` per element-wise data read ``column[i+offset]``: constants.
    elements: tuple[tuple[sp.Symbol, object, int], ...] = ()


def _vector_term(vs, xs, v, policy) -> VectorTerm:
    locs: dict = {}
    elems: dict = {}
    for ind in sorted(vs.term.atoms(sp.Indexed), key=sp.default_sort_key):
        off = int(ind.indices[0] - vs.index)
        tag = f"{ind.base.name}_{'m' if off < 0 else ''}{abs(off)}"
        if isinstance(ind.base, DataVector):
            elems[ind] = (sp.Symbol(f"e_{tag}", real=True), ind.base, off)
        else:
            locs[ind] = (sp.Symbol(f"y_{tag}", real=True), ind.base, off)
    term = vs.term.xreplace({k: s for k, (s, _, _) in (*locs.items(), *elems.items())})
    ys = [s for s, _, _ in locs.values()]
    vy = tuple(sp.Symbol(f"vy_{s.name[2:]}", real=True) for s in ys)
    b = Builder(policy)
    t = b.node(term)
    g = b.gradient(t, ys + xs)
    seeds = {**dict(zip(xs, v, strict=True)), **dict(zip(ys, vy, strict=True))}
    (d,) = b.tangent([t], seeds)
    h = b.tangent(g, seeds)
    ny = len(ys)
    prog = Program(tuple(b.assigns), {"t": (t,), "gy": tuple(g[:ny]), "gx": tuple(g[ny:]),
                                      "dir": (d,), "hy": tuple(h[:ny]), "hx": tuple(h[ny:])})
    return VectorTerm(tuple(locs.values()), vy, prog, tuple(elems.values()))


def derive(prob, policy: KinkPolicy | None = None) -> Derivatives:
    """Exact value, gradient and Hessian-vector-product programs of a validated Problem."""
    try:
        return _derive(prob, policy or KinkPolicy())
    except RecursionError:
        raise ProblemError(too_deep()) from None


def _derive(prob, policy: KinkPolicy) -> Derivatives:
    xs = list(prob.params)
    n = len(xs)
    k = len(prob.reductions) + len(prob.vector_sums)
    v = tuple(sp.Symbol(f"v_{j}", real=True) for j in range(n))
    u = tuple(sp.Symbol(f"u_{j}", real=True) for j in range(k))

    sb = Builder(policy)
    e = [sb.node(r.expr) for r in prob.reductions]
    g = [sb.gradient(ek, xs) for ek in e]
    seeds = dict(zip(xs, v, strict=True))
    hv = [sb.tangent(gk, seeds) for gk in g]
    sample = Program(tuple(sb.assigns), {
        "e": tuple(e), "g": tuple(c for gk in g for c in gk),
        "hv": tuple(c for hk in hv for c in hk)})

    ob = Builder(policy)
    rs = [r.symbol for r in prob.reductions] + [s.symbol for s in prob.vector_sums]
    F = ob.node(prob.outer)
    dz = ob.gradient(F, xs + rs)
    hz = ob.tangent(dz, {**seeds, **dict(zip(rs, u, strict=True))})
    outer = Program(tuple(ob.assigns), {
        "F": (F,), "dx": tuple(dz[:n]), "dR": tuple(dz[n:]),
        "hx": tuple(hz[:n]), "hR": tuple(hz[n:])})
    vsums = tuple(_vector_term(vs, xs, v, policy) for vs in prob.vector_sums)
    return Derivatives(prob, policy, v, u, sample, outer, vsums)
