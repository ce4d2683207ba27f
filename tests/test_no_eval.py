"""No public entry point evaluates user text (issue 24 item 1).

SymPy's ``sympify`` (and ``S``, ``parse_expr``, ``lambdify`` of a string) runs its argument
through ``eval``; so do ``eval``/``exec``. An audit over the syntax tree of every symgrad module
finds every such call: ``sympify(..., strict=True)`` refuses strings and is safe; every other
call must be on the allow-list below, each with the reason it cannot see user text. Then the
three entry points that used to evaluate a string get a payload that would create a file.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import symgrad as sg

ROOT = Path(sg.__file__).resolve().parent
#: Callees that evaluate text given to them.
DANGEROUS = {"sympify", "S", "eval", "exec", "parse_expr", "lambdify", "run_path",
             "exec_module", "__import__"}
#: (module path, enclosing function, callee) -> why it never sees user text.
ALLOWED = {
    ("build/cache.py", "load_module", "exec"): "runs a generated module's text, written by symgrad "
    "and verified against its content hash before it is executed",
    ("build/cache.py", "load_module", "exec_module"): "imports a generated module written by "
    "symgrad (verified as above)",
    ("train/compiled.py", "loop_function", "exec"): "compiles the training-loop text symgrad "
    "writes from its own templates (names are checked identifiers)",
    ("check/exact.py", "_lambdify_mp", "lambdify"): "lambdifies SymPy expressions derived from "
    "an already compiled loss, never a string",
    ("lsq/reference.py", "ReferenceResiduals.__init__", "lambdify"): "the residuals were "
    "converted by residual_exprs (text through the safe parser, the rest sympify(strict=True))",
    ("cli.py", "load_loss", "run_path"): "a LOSS given as a .py file is the user's own program, "
    "run by design (an expression string goes through the safe parser instead)",
    ("demo.py", "load_example", "exec_module"): "runs the example scripts (shipped with "
    "symgrad, or in the directory the user names with --examples), by design",
}


def _calls():
    """(module, enclosing function qualname, callee, line, strict) for every dangerous call."""
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        tree = ast.parse(path.read_text(), str(path))
        stack: list[tuple[ast.AST, str]] = [(tree, "")]
        while stack:
            node, where = stack.pop()
            for child in ast.iter_child_nodes(node):
                name = where
                if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    name = f"{where}.{child.name}" if where else child.name
                if isinstance(child, ast.Call):
                    f = child.func
                    callee = f.attr if isinstance(f, ast.Attribute) else \
                        f.id if isinstance(f, ast.Name) else None
                    if callee in DANGEROUS:
                        strict = any(k.arg == "strict" and isinstance(k.value, ast.Constant)
                                     and k.value.value is True for k in child.keywords)
                        yield rel, where, callee, child.lineno, strict
                stack.append((child, name))


def test_no_unaudited_evaluation_of_text():
    found = list(_calls())
    assert found, "the audit found no calls at all: the walker is broken"
    bad = [f"{m}:{line} in {fn or '<module>'}: {callee}(...)" for m, fn, callee, line, strict
           in found if not (callee == "sympify" and strict) and (m, fn, callee) not in ALLOWED]
    assert not bad, ("calls that may evaluate user text (use the safe parser, "
                     "sympify(..., strict=True), or audit and allow-list them):\n" +
                     "\n".join(bad))
    seen = {(m, fn, callee) for m, fn, callee, _, _ in found}
    stale = [k for k in ALLOWED if k not in seen]
    assert not stale, f"allow-list entries that no longer exist: {stale}"


def _payload(path: Path) -> str:
    return f"k*x + __import__('pathlib').Path({str(path)!r}).touch()"


def test_curve_fit_string_payload_is_not_run(tmp_path):
    target = tmp_path / "pwned"
    with pytest.raises(ValueError, match="not allowed"):
        sg.curve_fit(_payload(target), {"x": np.arange(4.0)}, np.arange(4.0), [1.0])
    with pytest.raises(ValueError, match="not allowed"):
        sg.curve_fit(_payload(target), np.arange(4.0), np.arange(4.0), [1.0], params=["k"])
    with pytest.raises(TypeError, match="as text"):
        sg.curve_fit(_payload(target), np.arange(4.0), np.arange(4.0), [1.0])
    assert not target.exists()


def test_curve_fit_string_is_parsed_safely():
    x = np.arange(1.0, 6.0)
    y = 2.5 * np.exp(-0.3 * x)
    popt, _ = sg.curve_fit("a*exp(-b*x)", {"x": x}, y, [1.0, 0.1])
    np.testing.assert_allclose(popt, [2.5, 0.3], rtol=1e-9)
    popt2, _ = sg.curve_fit("a*exp(-b*x)", x, y, [0.1, 1.0], params="b a")
    np.testing.assert_allclose(popt2, [0.3, 2.5], rtol=1e-9)


def test_reference_residuals_string_payload_is_not_run(tmp_path):
    from symgrad.lsq.reference import ReferenceResiduals

    target = tmp_path / "pwned"
    with pytest.raises(ValueError, match="not allowed"):
        ReferenceResiduals(_payload(target), data=["x"])
    with pytest.raises(ValueError, match="not allowed"):
        ReferenceResiduals([_payload(target)], params=["k"], data=["x"])
    assert not target.exists()
    rk = ReferenceResiduals("k*x - y", data="x y")
    assert rk.params == ("k",) and rk.data_names == ("x", "y")
    np.testing.assert_allclose(rk.residuals([2.0], x=np.arange(3.0), y=np.ones(3)),
                               [-1.0, 1.0, 3.0])


def test_l2_weight_string_payload_is_not_run(tmp_path):
    from symgrad.lang import losses

    target = tmp_path / "pwned"
    W = sg.params("W", shape=(2, 2))
    a = sg.params("a")
    bad = f"__import__('pathlib').Path({str(target)!r}).touch() or 1"
    for args in ((W,), (W, a), (a,)):
        with pytest.raises(TypeError, match="strings are never evaluated"):
            losses.l2(*args, weight=bad)
    with pytest.raises(TypeError, match="strings are never evaluated"):
        losses.l2(W, bad)
    assert not target.exists()


def test_array_map_of_a_string_is_not_run(tmp_path):
    from symgrad.lang import ops

    target = tmp_path / "pwned"
    W = sg.params("W", shape=(2,))
    with pytest.raises(Exception, match=r"Sympify|string"):
        ops.apply(lambda t: f"__import__('pathlib').Path({str(target)!r}).touch() or 1", W)
    assert not target.exists()


FUNCTIONS = ["abs", "cos", "cosh", "erf", "exp", "expm1", "log", "log1p", "logsumexp", "max",
             "relu", "sigmoid", "sin", "sinh", "softplus", "sqrt", "tan", "tanh"]


@pytest.mark.parametrize("name", FUNCTIONS)
def test_math_functions_refuse_text_and_do_not_run_it(name, tmp_path):
    # regression: sg.log, sg.max and sg.logsumexp passed a string to SymPy, which evaluated it
    # as code (a payload ran); others failed with an AttributeError from SymPy's internals
    marker = tmp_path / "ran"
    payload = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    a = sg.params("a")
    for args in ((payload,), (a, payload)):
        if name not in ("max", "logsumexp") and len(args) == 2:
            continue
        with pytest.raises(TypeError, match=rf"sg\.{name} takes expressions or numbers, got "
                                            r"str .*never evaluates text"):
            getattr(sg, name)(*args)
    assert not marker.exists()


def test_softmax_of_one_value_and_logsumexp_of_a_list():
    a, b = sg.params("a b")
    for fn in (sg.softmax, sg.log_softmax):
        with pytest.raises(TypeError, match="takes the scores as a list, tuple or Matrix"):
            fn(1.0)
        with pytest.raises(TypeError, match="never evaluates text"):
            fn([a, "b"])
    assert sg.logsumexp([a, b]) == sg.logsumexp(a, b)
    X = sg.data("X", shape=(3,))  # log1p/expm1 map over arrays as every other function does
    assert sg.log1p(X).shape == sg.expm1(X).shape == sg.exp(X).shape


def test_array_operands_that_are_text_are_refused_in_the_user_s_terms(tmp_path):
    # they were refused by SymPy's strict sympify with a bare SympifyError
    marker = tmp_path / "ran"
    payload = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    X, w = sg.data("X", shape=(3,)), sg.params("w", shape=(3,))
    for call in (lambda: X + payload, lambda: payload * w, lambda: sg.einsum("i,i->", X, payload)):
        with pytest.raises(TypeError, match=r"an array operation takes expressions or numbers, "
                                            r"got str .*never evaluates text"):
            call()
    assert not marker.exists()
