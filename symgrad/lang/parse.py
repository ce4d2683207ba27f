"""Safe parsing of loss expressions given as strings (the CLI's ``symgrad generate "..."``).

The text is parsed with :mod:`ast` and never executed: only numbers, names, ``+ - * / **``,
unary minus and calls of whitelisted functions are accepted, and the SymPy expression is built
here from the checked tree (no ``eval``, no ``sympify`` of the raw text). Attribute access,
subscripts, dunder names, keywords, lambdas, comprehensions, strings and anything else are
rejected with a message naming what was found and where.

Every name that is not a function or a constant is a parameter, or a data column when listed
in ``data``. Data columns must appear inside a reduction: ``mean(...)`` or ``sum(...)``.

>>> e = parse_loss("mean((a*t**2 + b*t + c - y)**2)", data=["t", "y"])
>>> type(e).__name__, sorted(str(s) for s in e.free_symbols)
('Mean', ['a', 'b', 'c', 't', 'y'])
>>> parse_loss("x.__class__")
Traceback (most recent call last):
...
symgrad.lang.parse.ExprError: attribute access is not allowed (column 1): x.__class__
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Sequence

import sympy as sp

from ..ir import functions as F
from .limits import (
    MAX_DEPTH,
    MAX_DIGITS,
    MAX_EXPONENT,
    MAX_LENGTH,
    MAX_NODES,
    _power_digits,
    _short,
    _too_big,
    natural_key,
)
from .symbols import data as _data
from .symbols import mean as _mean
from .symbols import normalize_name
from .symbols import params as _params
from .symbols import sum as _sum

__all__ = [
    "FUNCTIONS", "MAX_DEPTH", "MAX_DIGITS", "MAX_LENGTH", "ExprError", "names_in", "natural_key",
    "param_names", "parse_loss", "parse_number",
]

class ExprError(ValueError):
    """An expression string that is not a valid loss, with what and where."""


def _lattice(cls: type) -> Callable:
    def build(*a):
        # SymPy's evaluation of an n-ary Max/Min compares every pair of arguments (minutes at
        # 100 arguments); symgrad differentiates it as a chain either way.
        return cls(*a, evaluate=False) if len(a) > 2 else cls(*a)
    return build


# name -> (builder, minimum number of arguments, maximum number (None: any))
FUNCTIONS: dict[str, tuple[Callable, int, int | None]] = {
    "exp": (sp.exp, 1, 1),
    "log": (sp.log, 1, 1),
    "sqrt": (sp.sqrt, 1, 1),
    "sin": (sp.sin, 1, 1),
    "cos": (sp.cos, 1, 1),
    "tan": (sp.tan, 1, 1),
    "sinh": (sp.sinh, 1, 1),
    "cosh": (sp.cosh, 1, 1),
    "tanh": (sp.tanh, 1, 1),
    "asin": (sp.asin, 1, 1),
    "acos": (sp.acos, 1, 1),
    "atan": (sp.atan, 1, 1),
    "atan2": (sp.atan2, 2, 2),
    "erf": (sp.erf, 1, 1),
    "abs": (sp.Abs, 1, 1),
    "Abs": (sp.Abs, 1, 1),
    "sign": (sp.sign, 1, 1),
    "max": (_lattice(sp.Max), 2, None),
    "Max": (_lattice(sp.Max), 2, None),
    "min": (_lattice(sp.Min), 2, None),
    "Min": (_lattice(sp.Min), 2, None),
    "floor": (sp.floor, 1, 1),
    "ceiling": (sp.ceiling, 1, 1),
    "ceil": (sp.ceiling, 1, 1),
    "relu": (F.relu, 1, 1),
    "sigmoid": (F.sigmoid, 1, 1),
    "softplus": (F.softplus, 1, 1),
    "logsumexp": (F.logsumexp, 1, None),
    "log1p": (F.log1p, 1, 1),
    "expm1": (F.expm1, 1, 1),
    "mean": (_mean, 1, 1),
    "sum": (_sum, 1, 1),
}

CONSTANTS: dict[str, sp.Expr] = {"pi": sp.pi}

_BINOPS: dict[type, Callable] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.Pow: None,  # checked separately
}

_DESCRIBE: dict[type, str] = {
    ast.Attribute: "attribute access",
    ast.Subscript: "indexing",
    ast.Lambda: "lambda",
    ast.IfExp: "a conditional expression",
    ast.Compare: "a comparison",
    ast.BoolOp: "and/or",
    ast.ListComp: "a comprehension",
    ast.GeneratorExp: "a generator expression",
    ast.NamedExpr: "assignment (:=)",
    ast.JoinedStr: "an f-string",
    ast.Starred: "*arguments",
    ast.Await: "await",
}


def _where(node: ast.AST, text: str) -> str:
    col = getattr(node, "col_offset", None)
    seg = ast.get_source_segment(text, node) if hasattr(node, "lineno") else None
    pos = f" (column {col + 1})" if col is not None else ""
    if seg and len(seg) > 60:
        seg = seg[:57] + "..."
    return f"{pos}: {seg}" if seg else pos


def _tree(text: str) -> ast.Expression:
    if not isinstance(text, str):
        raise ExprError(f"the expression must be a string, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ExprError(f"the expression is {len(text)} characters long (at most {MAX_LENGTH})")
    src = " ".join(text.strip().splitlines())
    if not src:
        raise ExprError("the expression is empty")
    long_number = re.search(f"[0-9_]{{{MAX_DIGITS + 1},}}", src)
    if long_number and sum(c.isdigit() for c in long_number.group()) > MAX_DIGITS:
        raise ExprError(f"a number has {sum(c.isdigit() for c in long_number.group())} digits "
                        f"(at most {MAX_DIGITS}; write it as a float such as 1.5e300) "
                        f"(column {long_number.start() + 1})")
    try:
        tree = ast.parse(src, mode="eval")
    except SyntaxError as exc:
        shown = src if len(src) <= 60 else src[:57] + "..."
        raise ExprError(f"not a valid expression: {exc.msg} (column {exc.offset}): {shown}") \
            from None
    except (RecursionError, MemoryError, ValueError):
        raise ExprError("the expression is nested too deeply") from None
    n = sum(1 for _ in ast.walk(tree))
    if n > MAX_NODES:
        raise ExprError(f"the expression has {n} parts (at most {MAX_NODES})")
    depth = _depth(tree.body)
    if depth > MAX_DEPTH:
        raise ExprError(f"the expression is nested {depth} levels deep (at most {MAX_DEPTH})")
    return tree


def _family(node: ast.AST) -> type | None:
    """Chains of ``+``/``-`` (or of ``*``/``/``) are built flat: one family, one level."""
    if isinstance(node, ast.BinOp):
        if isinstance(node.op, ast.Add | ast.Sub):
            return ast.Add
        if isinstance(node.op, ast.Mult | ast.Div):
            return ast.Mult
    return None


def _depth(root: ast.AST) -> int:
    """Nesting depth, counted without recursion (the point is to refuse deep trees)."""
    deepest, stack = 0, [(root, 1)]
    while stack:
        node, d = stack.pop()
        deepest = max(deepest, d)
        fam = _family(node)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.operator | ast.unaryop | ast.expr_context):
                continue
            same = fam is not None and child is node.left and _family(child) is fam
            stack.append((child, d if same else d + 1))
    return deepest


def _check_name(name: str, node: ast.AST, text: str) -> None:
    if name.startswith("_"):
        raise ExprError(f"names starting with '_' are not allowed{_where(node, text)}")


def names_in(text: str) -> list[str]:
    """The symbol names of an expression (not functions or constants), in order of appearance.

    >>> names_in("(x2 - x1**2)**2 + (1 - x1)**2")
    ['x2', 'x1']
    """
    tree = _tree(text)
    # function names are Name nodes too: drop those used as callees
    callees = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    out: list[str] = []
    for node in sorted((n for n in ast.walk(tree) if isinstance(n, ast.Name)
                        and id(n) not in callees and n.id not in CONSTANTS),
                       key=lambda n: (n.lineno, n.col_offset)):
        if node.id not in out:
            out.append(node.id)
    return out


def param_names(text: str, params: Sequence[str] | str | None = None,
                data: Sequence[str] | str | None = None) -> list[str]:
    """The parameter names of ``text`` in packing order (as :func:`parse_loss` declares them).

    >>> param_names("(x2 - x1**2)**2 + (1 - x1)**2")
    ['x1', 'x2']
    """
    given = _split(params)
    if given is not None:
        return given
    dnames = _split(data) or []
    return sorted((n for n in names_in(text) if n not in dnames), key=natural_key)


def parse_loss(text: str, params: Sequence[str] | str | None = None,
               data: Sequence[str] | str | None = None) -> sp.Expr:
    """Parse ``text`` into a SymPy loss with symgrad parameter and data symbols.

    ``params`` fixes the parameter names and their order (every other non-data name is then an
    error); by default every name that is not in ``data`` is a parameter, sorted by name with
    numbers compared as numbers (``a, b, x2, x10``). Names may be given as a list or as a
    space/comma separated string.

    >>> parse_loss("(x2 - x1**2)**2 + (1 - x1)**2", params="x1 x2").free_symbols == \
set(parse_loss("(x2 - x1**2)**2 + (1 - x1)**2").free_symbols)
    True
    """
    tree = _tree(text)
    pnames = _split(params)
    dnames = _split(data) or []
    for n in [*(pnames or []), *dnames]:
        if not n.isidentifier() or n.startswith("_"):
            raise ExprError(f"{n!r} is not a valid name (letters, digits and _, not starting "
                            "with _)")
        if n in FUNCTIONS or n in CONSTANTS:
            raise ExprError(f"{n!r} is a function or constant name; pick another name")
    both = set(pnames or []) & set(dnames)
    if both:
        raise ExprError(f"{sorted(both)[0]!r} is declared both as a parameter and as data")
    used = names_in(text)
    for n in used:
        if n in FUNCTIONS:
            raise ExprError(f"{n!r} is a function: call it, e.g. {n}(x)")
    if pnames is None:
        pnames = sorted((n for n in used if n not in dnames), key=natural_key)
    else:
        unknown = [n for n in used if n not in pnames and n not in dnames]
        if unknown:
            raise ExprError(f"unknown name {unknown[0]!r}: declare it as a parameter "
                            "(--params) or a data column (--data)")
    symbols: dict[str, sp.Symbol] = {}
    for names, declare in ((pnames, _params), (dnames, _data)):
        if names:
            made = declare(names)
            symbols.update(zip(names, made if isinstance(made, tuple) else (made,), strict=True))
    return _Builder(text, symbols).build(tree.body)


def _split(names: Sequence[str] | str | None) -> list[str] | None:
    """Names as Python reads them (NFKC), as the names in the parsed text are."""
    if names is None:
        return None
    if isinstance(names, str):
        return [normalize_name(n) for n in names.replace(",", " ").split()]
    return [normalize_name(str(n)) for n in names]


def parse_number(text: str) -> float:
    """A real constant written as text (``"0.5"``, ``"1/2"``, ``"sqrt(2)/2"``), safely parsed.

    >>> parse_number("1/4")
    0.25
    """
    tree = _tree(text)
    names = names_in(text)
    if names:
        raise ExprError(f"expected a number, found the name {names[0]!r}")
    e = _Builder(text, {}).build(tree.body)
    if not (e.is_number and e.is_extended_real) or not e.is_finite:
        raise ExprError(f"expected a finite real number, got {e}")
    return float(e)


class _Builder:
    """Turn a checked syntax tree into a SymPy expression, node by node."""

    def __init__(self, text: str, symbols: dict[str, sp.Symbol]) -> None:
        self.text, self.symbols = text, symbols

    def fail(self, what: str, node: ast.AST) -> ExprError:
        return ExprError(f"{what} is not allowed{_where(node, self.text)}")

    def build(self, node: ast.AST) -> sp.Expr:
        if isinstance(node, ast.Constant):
            v = node.value
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise self.fail(f"the constant {v!r}", node)
            return sp.Integer(v) if isinstance(v, int) else sp.Float(v)
        if isinstance(node, ast.BinOp) and _family(node) is not None:
            return self.chain(node)
        if isinstance(node, ast.Name):
            _check_name(node.id, node, self.text)
            if node.id in CONSTANTS:
                return CONSTANTS[node.id]
            if node.id in FUNCTIONS and node.id not in self.symbols:
                raise ExprError(f"{node.id!r} is a function: call it, e.g. {node.id}(x)"
                                f"{_where(node, self.text)}")
            return self.symbols[node.id]
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.USub):
                return -self.build(node.operand)
            if isinstance(node.op, ast.UAdd):
                return self.build(node.operand)
            raise self.fail(f"the operator {type(node.op).__name__}", node)
        if isinstance(node, ast.BinOp):
            if isinstance(node.op, ast.BitXor):
                raise ExprError(f"'^' is not a power in Python: write ** instead"
                                f"{_where(node, self.text)}")
            if type(node.op) not in _BINOPS:
                raise self.fail(f"the operator {type(node.op).__name__}", node)
            a, b = self.build(node.left), self.build(node.right)
            if isinstance(node.op, ast.Pow):
                if b.is_Number and abs(float(b)) > MAX_EXPONENT:
                    raise ExprError(f"the exponent {float(b):.3g} is too large (at most "
                                    f"{MAX_EXPONENT})"
                                    f"{_where(node, self.text)}")
                if _power_digits(a, b) > MAX_DIGITS:
                    raise ExprError(f"the constant {_short(a)}**{_short(b)} has about "
                                    f"{_power_digits(a, b):.3g} digits (at most {MAX_DIGITS})"
                                    f"{_where(node, self.text)}")
                return self.sized(a**b, node)
            return self.sized(_BINOPS[type(node.op)](a, b), node)
        if isinstance(node, ast.Call):
            return self.call(node)
        raise self.fail(_DESCRIBE.get(type(node), type(node).__name__), node)

    def sized(self, e: sp.Expr, node: ast.AST) -> sp.Expr:
        if any(_too_big(a) for a in (e, *e.args)):
            raise ExprError(f"a constant exceeds {MAX_DIGITS} digits or the float64 range"
                            f"{_where(node, self.text)}")
        return e

    def chain(self, node: ast.BinOp) -> sp.Expr:
        """``a + b - c + ...`` or ``a * b / c * ...``: built flat, without recursing along it."""
        fam = _family(node)
        rights: list[tuple[ast.operator, ast.AST]] = []
        while _family(node) is fam:
            rights.append((node.op, node.right))
            node = node.left
        parts, const = [], sp.S.Zero if fam is ast.Add else sp.S.One
        for op, r in [(None, node), *reversed(rights)]:
            b = self.build(r)
            if isinstance(op, ast.Sub):
                b = -b
            elif isinstance(op, ast.Div):
                b = 1 / b if b.is_Number else sp.Pow(b, -1)
            if b.is_Number:  # fold constants one at a time, so none can grow unchecked
                const = self.sized(const + b if fam is ast.Add else const * b, r)
            else:
                parts.append(b)
        return self.sized((sp.Add if fam is ast.Add else sp.Mul)(const, *parts), node)

    def call(self, node: ast.Call) -> sp.Expr:
        if not isinstance(node.func, ast.Name):
            raise self.fail("calling anything but a plain function name", node)
        name = node.func.id
        _check_name(name, node, self.text)
        if name not in FUNCTIONS:
            raise ExprError(f"unknown function {name!r}{_where(node, self.text)}; available: "
                            f"{', '.join(sorted(FUNCTIONS))}")
        if node.keywords:
            raise self.fail("a keyword argument", node)
        fn, lo, hi = FUNCTIONS[name]
        n = len(node.args)
        if n < lo or (hi is not None and n > hi):
            want = str(lo) if hi == lo else (f"at least {lo}" if hi is None else f"{lo}-{hi}")
            raise ExprError(f"{name}() takes {want} argument(s), got {n}{_where(node, self.text)}")
        args = [self.build(a) for a in node.args]
        try:
            return fn(*args)
        except (TypeError, ValueError) as exc:
            raise ExprError(f"{name}(): {exc}{_where(node, self.text)}") from None
