"""SymPy -> Numba-safe scalar Python.

A strict subclass of SymPy's Python printer: every symbol is printed through a name table (so no
user-chosen name reaches the code), numbers become float literals, ``Piecewise`` becomes lazy
nested conditional expressions, kinks go through small helpers whose value at the kink is explicit,
and a function without an entry is an error naming it, never broken code.

>>> import sympy as sp
>>> x = sp.Symbol("x", real=True)
>>> ScalarPrinter({x: "p_x"}).doprint(sp.exp(-x**2) + sp.Rational(1, 4))
'0.25 + math.exp(-p_x**2)'
"""

from __future__ import annotations

import math

import sympy as sp
from sympy.codegen.cfunctions import expm1, log1p
from sympy.printing.pycode import PythonCodePrinter

from ...ir.functions import relu, sigmoid, softplus

__all__ = ["ComplexPrinter", "ScalarPrinter", "UnsupportedError", "float_literal"]


class UnsupportedError(TypeError):
    """The printer has no code for a construct (named in the message)."""


def float_literal(v) -> str:
    v = float(v)
    if math.isnan(v):
        return "math.nan"
    if math.isinf(v):
        return "math.inf" if v > 0 else "(-math.inf)"
    return repr(v)


#: SymPy function -> scalar code function name (real kernels).
REAL_FUNCS: dict[type, str] = {
    sp.exp: "math.exp", sp.log: "math.log", log1p: "math.log1p", expm1: "math.expm1",
    sp.sin: "math.sin", sp.cos: "math.cos", sp.tan: "math.tan", sp.tanh: "math.tanh",
    sp.sinh: "math.sinh", sp.cosh: "math.cosh", sp.asin: "math.asin", sp.acos: "math.acos",
    sp.atan: "math.atan", sp.atan2: "math.atan2", sp.erf: "math.erf", sp.Abs: "abs",
    sp.sign: "_sign", sp.Heaviside: "_heaviside", sp.floor: "_floor", sp.ceiling: "_ceil",
    relu: "_relu", sigmoid: "_sigmoid", softplus: "_softplus",
}

#: The complex-typed variant used for complex-step checking (analytic functions only).
COMPLEX_FUNCS: dict[type, str] = {
    sp.exp: "cmath.exp", sp.log: "cmath.log", log1p: "_log1p_c", expm1: "_expm1_c",
    sp.sin: "cmath.sin", sp.cos: "cmath.cos", sp.tan: "cmath.tan", sp.tanh: "cmath.tanh",
    sp.sinh: "cmath.sinh", sp.cosh: "cmath.cosh", sp.asin: "cmath.asin", sp.acos: "cmath.acos",
    sp.atan: "cmath.atan", sp.erf: "_erf_c", sigmoid: "_sigmoid_c", softplus: "_softplus_c",
}


class ScalarPrinter(PythonCodePrinter):
    """Prints one scalar expression; ``names`` maps every allowed symbol to its identifier."""

    funcs = REAL_FUNCS
    sqrt = "math.sqrt"
    printmethod = "_symgrad_print"

    def __init__(self, names: dict, settings: dict | None = None) -> None:
        super().__init__({"strict": True, "fully_qualified_modules": True, **(settings or {})})
        self.names = names
        self.lse_arities: set[int] = set()

    def doprint(self, expr, assign_to=None):
        try:
            return super().doprint(expr, assign_to)
        except RecursionError:
            raise UnsupportedError(
                "the expression is nested too deeply to print (Python's recursion limit): "
                "flatten the loss, e.g. build long sums with sp.Add(*terms)") from None

    # atoms
    def _print_Symbol(self, s):
        try:
            return self.names[s]
        except KeyError:
            raise UnsupportedError(f"symbol '{s}' has no value in this kernel") from None

    _print_Dummy = _print_Symbol

    def _print_Indexed(self, e):
        try:
            return self.names[e]
        except KeyError:
            raise UnsupportedError(f"{e} has no value in this kernel") from None

    def _print_Integer(self, e):
        return float_literal(e)

    def _print_Rational(self, e):
        return float_literal(e)

    def _print_Float(self, e):
        return float_literal(e)

    def _print_Zero(self, e):
        return "0.0"

    def _print_One(self, e):
        return "1.0"

    def _print_NegativeOne(self, e):
        return "-1.0"

    def _print_Half(self, e):
        return "0.5"

    def _print_Pi(self, e):
        return float_literal(math.pi)

    def _print_Exp1(self, e):
        return float_literal(math.e)

    def _print_Infinity(self, e):
        return "math.inf"

    def _print_NegativeInfinity(self, e):
        return "(-math.inf)"

    def _print_BooleanTrue(self, e):
        return "True"

    def _print_BooleanFalse(self, e):
        return "False"

    # arithmetic
    def _print_Pow(self, e, rational=False):
        base = self.parenthesize(e.base, sp.printing.precedence.PRECEDENCE["Pow"])
        x = e.exp
        # Results are atoms or parenthesised: this Pow may sit in a denominator (a/b**2).
        if x == -1:
            return f"(1.0/{base})"
        if x == sp.S.Half:
            return f"{self.sqrt}({self._print(e.base)})"
        if x == -sp.S.Half:
            return f"(1.0/{self.sqrt}({self._print(e.base)}))"
        if x.is_Integer:
            return f"{base}**{int(x)}"
        exp = self.parenthesize(x, sp.printing.precedence.PRECEDENCE["Pow"])
        return f"{base}**{exp}"

    # functions
    def _print_Function(self, e):
        name = self.funcs.get(type(e))
        if name is None:
            raise UnsupportedError(f"no code for the function '{type(e).__name__}' ({e})")
        if type(e) is sp.Heaviside and len(e.args) == 1:
            return f"{name}({self._print(e.args[0])}, 0.5)"
        return f"{name}({', '.join(self._print(a) for a in e.args)})"

    # SymPy's Python printer maps some math functions by itself (gamma, erfc, asinh...): route
    # them through the table too, so a function without an entry is an error, never printed.
    for _name in PythonCodePrinter._kf:
        if _name not in ("Max", "Min", "Sqrt"):
            locals()[f"_print_{_name}"] = _print_Function
    del _name

    for _cls in list(REAL_FUNCS) + list(COMPLEX_FUNCS):
        locals()[f"_print_{_cls.__name__}"] = _print_Function
    del _cls

    def _print_DiracDelta(self, e):
        return "0.0"

    def _print_Max(self, e):
        return self._minmax("max", e.args)

    def _print_Min(self, e):
        return self._minmax("min", e.args)

    def _print_Max2(self, e):
        return self._chain("max", e)

    def _print_Min2(self, e):
        return self._chain("min", e)

    def _chain(self, f, e):
        """``Max2(Max2(a, b), c)`` (derive's chains, inlined) as ``max(a, b, c)``: the same left
        fold, without nesting as deep as the chain is long."""
        args, cls = [], type(e)
        while type(e) is cls:
            args.append(e.args[1])
            e = e.args[0]
        args.append(e)
        return f"{f}({', '.join(self._print(a) for a in reversed(args))})"

    def _minmax(self, f, args):
        out = self._print(args[0])
        for a in args[1:]:
            out = f"{f}({out}, {self._print(a)})"
        return out

    def _print_logsumexp(self, e):
        self.lse_arities.add(len(e.args))
        return f"_logsumexp{len(e.args)}({', '.join(self._print(a) for a in e.args)})"

    def _print_Piecewise(self, e):
        out = None
        for expr, cond in reversed(e.args):
            if cond == sp.true:
                out = self._print(expr)
            elif out is None:
                out = f"({self._print(expr)} if {self._print(cond)} else math.nan)"
            else:
                out = f"({self._print(expr)} if {self._print(cond)} else {out})"
        return out if out is not None else "math.nan"

    def _print_Relational(self, e):
        op = {"==": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}[e.rel_op]
        return f"({self._print(e.lhs)} {op} {self._print(e.rhs)})"

    def _print_And(self, e):
        return "(" + " and ".join(self._print(a) for a in e.args) + ")"

    def _print_Or(self, e):
        return "(" + " or ".join(self._print(a) for a in e.args) + ")"

    def _print_Not(self, e):
        return f"(not {self._print(e.args[0])})"

    def emptyPrinter(self, e):
        raise UnsupportedError(f"no code for {type(e).__name__}: {e}")

    def _print_not_supported(self, e):
        raise UnsupportedError(f"no code for {type(e).__name__}: {e}")


class ComplexPrinter(ScalarPrinter):
    """Complex-typed variant (``cmath``) for complex-step differentiation."""

    funcs = COMPLEX_FUNCS
    sqrt = "cmath.sqrt"

    def _print_logsumexp(self, e):
        self.lse_arities.add(len(e.args))
        return f"_logsumexp{len(e.args)}_c({', '.join(self._print(a) for a in e.args)})"

    def _print_Function(self, e):
        if not e.free_symbols:  # a constant: numba's cmath.tanh & co. reject float arguments
            return float_literal(sp.N(e, 17))
        return super()._print_Function(e)

    for _cls in COMPLEX_FUNCS:
        locals()[f"_print_{_cls.__name__}"] = _print_Function
    del _cls

    def _print_Pow(self, e, rational=False):
        x = e.exp
        if x.is_Integer or (x.is_Float and x == int(x)):
            # numba's complex ** is polar: a negative real base gets a ~1e-16 imaginary part,
            # which the complex step divides by 1e-20. Repeated products stay exact.
            return f"_ipow_c({self._print(e.base)}, {int(x)})"
        return super()._print_Pow(e, rational)

    def _print_Piecewise(self, e):
        raise UnsupportedError("Piecewise is not analytic: no complex-step variant")

    _print_Max = _print_Min = _print_Max2 = _print_Min2 = _print_Piecewise
