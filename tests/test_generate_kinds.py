"""``sg.generate`` writes every kind ``sg.compile`` builds (issue 21 item 13): residual modules
(``kind="residual"``), array losses and models, with the same options and overwrite rules as a
scalar loss; a written residual module gives the numbers of ``compile_residuals``'s kernel."""

from __future__ import annotations

import json
import subprocess
import textwrap

import numpy as np
import pytest
import sympy as sp

import symgrad as sg
from symgrad.build.cache import GENERATED_MARK
from symgrad.ir.problem import ProblemError
from symgrad.runtime.scalar import load_module

RESID_SRC = """
import symgrad as sg
a, b, c = sg.params("a b c")
t, y = sg.data("t y")
resid = [a * sg.exp(-b * t) + c - y, sg.relu(a - 2 * t) * c]
"""
RNG = np.random.default_rng(21)
T = np.linspace(0.0, 3.0, 37)
Y = 2.0 * np.exp(-0.7 * T) + 0.3 + 0.01 * RNG.standard_normal(T.size)
X = np.array([1.9, 0.6, 0.25])


def _resid():
    ns: dict = {}
    exec(RESID_SRC, ns)  # the same text the subprocess runs
    return ns["resid"]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """The generated residual module (imported) and the kernel compile_residuals builds."""
    path = tmp_path_factory.mktemp("gen") / "resmod.py"
    assert sg.generate(_resid(), path, kind="residual") == path
    return path, load_module(path), sg.compile_residuals(_resid())


def test_the_residual_module_says_what_it_is(written):
    path, mod, rk = written
    text = path.read_text()
    assert text.startswith(GENERATED_MARK)
    header = text[:text.index('"""')]
    assert "# residuals (2 per sample, sample-major):" in header
    assert "# parameters (order of x): a, b, c" in header
    assert "# data columns: t[N], y[N]" in header
    assert f"# regenerate with: symgrad.generate(resid, {path.as_posix()!r}, kind='residual')" \
        in header
    assert (rk.params, rk.data_names, 2) == (mod.PARAMS, mod.DATA, mod.M_PER_SAMPLE)
    # the same text as the kernel's module but for the command in the header (and its hash):
    # the same numbers by construction (the slow tests below run both)
    assert _same_but_command(text) == _same_but_command(rk.source)


@pytest.mark.slow  # Numba compiles the module's functions (~8 s on a loaded machine)
def test_a_parameter_only_residual_module_gives_the_kernel_numbers(tmp_path):
    """Every function of the module (no data: no prange) against the kernel's."""
    x1, x2, x3 = sg.params("x1 x2 x3")
    resid = [10 * (x2 - x1**2), 1 - x1, sg.abs(x3 - x1 * x2), sg.max(x1, x2, x3)]
    mod = load_module(sg.generate(resid, tmp_path / "rosen.py", kind="residual"))
    rk = sg.compile(resid, kind="residual")
    x, P, M = np.array([-1.2, 1.0, 0.3]), 3, 4
    r, J, r2 = np.empty(M), np.empty((M, P)), np.empty(M)
    mod.residuals(x, r)
    mod.rows(x, 0, 1, J, r2)
    np.testing.assert_array_equal(r, rk.residuals(x))
    np.testing.assert_array_equal(J, rk.jacobian(x))
    np.testing.assert_array_equal(r2, r)
    v, u = RNG.standard_normal(P), RNG.standard_normal(M)
    jv, ju = np.empty(M), np.empty(P)
    mod.jvp(x, v, jv)
    mod.vjp(x, u, ju)
    np.testing.assert_array_equal(jv, rk.jvp(x, v))
    np.testing.assert_array_equal(ju, rk.vjp(x, u))
    np.testing.assert_allclose(jv, J @ v, rtol=1e-14)
    A, bv = np.empty((P, P)), np.empty(P)
    rtr = mod.normal(x, A, bv, None, None)
    JtJ, Jtr, rtr_k = rk.normal(x)
    np.testing.assert_array_equal(A, JtJ)
    np.testing.assert_array_equal(bv, Jtr)
    assert rtr == rtr_k == pytest.approx(r @ r, rel=1e-14)


@pytest.mark.slow  # Numba compiles the five per-sample parallel functions (~15 s)
def test_the_residual_module_gives_the_kernel_numbers(written):
    _, mod, rk = written
    n, m, P = T.size, 2, 3
    data = dict(t=T, y=Y)
    r = np.empty(n * m)
    mod.residuals(X, r, T, Y)
    np.testing.assert_array_equal(r, rk.residuals(X, **data))
    J, r2 = np.empty((n * m, P)), np.empty(n * m)
    mod.rows(X, 0, n, J, r2, T, Y)
    np.testing.assert_array_equal(J, rk.jacobian(X, **data))
    np.testing.assert_array_equal(r2, r)
    v, u = RNG.standard_normal(P), RNG.standard_normal(n * m)
    jv, ju = np.empty(n * m), np.empty(P)
    mod.jvp(X, v, jv, T, Y)
    mod.vjp(X, u, ju, T, Y)
    np.testing.assert_array_equal(jv, rk.jvp(X, v, **data))
    np.testing.assert_array_equal(ju, rk.vjp(X, u, **data))
    A, bv = np.empty((P, P)), np.empty(P)
    rtr = mod.normal(X, A, bv, None, None, T, Y)
    JtJ, Jtr, rtr_k = rk.normal(X, **data)
    np.testing.assert_array_equal(A, JtJ)
    np.testing.assert_array_equal(bv, Jtr)
    assert rtr == rtr_k
    # and the numbers are the residuals' own (not only the kernel's): J^T J from J
    np.testing.assert_allclose(A, J.T @ J, rtol=1e-12, atol=1e-12)


def test_regenerating_a_residual_module_is_byte_identical(written):
    path, _, _ = written
    before, ino = path.read_bytes(), path.stat().st_ino
    sg.generate(_resid(), path, kind="residuals")  # the plural spelling is the same kind
    assert path.read_bytes() == before and path.stat().st_ino == ino


def test_data_and_params_options_reach_the_residual_module(tmp_path):
    path = sg.generate("k*u - v", tmp_path / "lin.py", ["k"], kind="residual", data="u v")
    text = path.read_text()
    assert "# parameters (order of x): k" in text and "# data columns: u[N], v[N]" in text
    assert "def residuals(x, out, col_u, col_v):" in text


def test_a_residual_module_does_not_overwrite_a_users_file(tmp_path):
    mine = tmp_path / "fit.py"
    mine.write_text("# my fit\n")
    with pytest.raises(FileExistsError, match=r"not generated by symgrad.*force=True"):
        sg.generate(_resid(), mine, kind="residual")
    assert mine.read_text() == "# my fit\n"


def test_a_refused_residual_problem_leaves_nothing_on_disk(tmp_path):
    a = sg.params("a")
    gen = sg.generate(_resid(), tmp_path / "ok.py", kind="residual")
    before = gen.read_bytes()
    # an array residual is written as its fused sample loop; one with no sample axis is refused
    for bad in (a - sg.data("t") + sp.Symbol("z"), "a - ", sg.sum(a * sg.data("t", shape=(2,)))):
        with pytest.raises(ProblemError):
            sg.generate(bad, gen, kind="residual")
        with pytest.raises(ProblemError):
            sg.generate(bad, tmp_path / "new.py", kind="residual")
    assert gen.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.py"]


def test_array_losses_and_models_are_written_with_their_dtype(tmp_path):
    w = sg.params("w", shape=(3,))
    X_ = sg.data("X", shape=(3,))
    for expr, name in ((sg.mean((X_ @ w) ** 2), "arr"), (X_ @ w, "mdl")):
        for dtype in ("float64", "float32"):
            path = sg.generate(expr, tmp_path / f"{name}{dtype[-2:]}.py", dtype=dtype)
            text = path.read_text()
            fused = name == "arr" and dtype == "float64"  # the one-pass module compile runs
            assert (f"DTYPE = '{dtype}'" in text) != fused, (name, dtype)
            assert (", dtype='float32')" in text) == (dtype == "float32")
            assert _same_but_command(text) == _same_but_command(sg.compile(expr, dtype=dtype)
                                                                .source)
    arrays = sg.generate(sg.mean((X_ @ w) ** 2), tmp_path / "arr_code.py", fuse=False)
    assert "DTYPE = 'float64'" in arrays.read_text() and ", fuse=False)" in arrays.read_text()


def _same_but_command(text: str) -> list[str]:
    """A module's lines but the command in its header and the hash (which covers it)."""
    return [ln for ln in text.splitlines() if not ln.startswith(("# regenerate", "# content"))]


BLOCKED = textwrap.dedent("""
    import importlib.abc, importlib.util, json, sys

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("sympy", "symgrad"):
                raise ImportError(f"{name} is blocked in this test")
            return None

    sys.meta_path.insert(0, Block())
    import numpy as np
    spec = importlib.util.spec_from_file_location("resmod2", sys.argv[1])
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    t, y, x = (np.array(json.loads(a)) for a in sys.argv[2:5])
    r = np.empty(2 * t.size)
    m.residuals(x, r, t, y)
    A, bv = np.empty((3, 3)), np.empty(3)
    rtr = m.normal(x, A, bv, None, None, t, y)
    assert not [k for k in sys.modules if k.split(".")[0] in ("sympy", "symgrad")]
    print(json.dumps({"r": r.tolist(), "A": A.tolist(), "bv": bv.tolist(), "rtr": rtr}))
""")


@pytest.mark.slow
def test_a_residual_module_runs_without_sympy_or_symgrad(tmp_path, python, subprocess_env):
    path = sg.generate(_resid(), tmp_path / "resmod2.py", kind="residual")
    args = [json.dumps(a.tolist()) for a in (T, Y, X)]
    out = subprocess.run([python, "-c", BLOCKED, str(path), *args], timeout=300,
                         capture_output=True, text=True, env=subprocess_env(), cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    rk = sg.compile_residuals(_resid())
    np.testing.assert_array_equal(got["r"], rk.residuals(X, t=T, y=Y))
    JtJ, Jtr, rtr = rk.normal(X, t=T, y=Y)
    np.testing.assert_allclose(got["A"], JtJ, rtol=1e-13)
    np.testing.assert_allclose(got["bv"], Jtr, rtol=1e-13, atol=1e-15)
    assert got["rtr"] == pytest.approx(rtr, rel=1e-13)


def test_cli_generate_writes_a_residual_module(tmp_path, capsys):
    from symgrad import cli

    out = tmp_path / "decay.py"
    assert cli.main(["generate", "a*exp(-b*t) - y", "--data", "t,y", "-o", str(out),
                     "--residuals"]) == 0
    text = out.read_text()
    assert "# residuals (1 per sample, sample-major):" in text
    assert "# parameters (order of x): a, b" in text and "# data columns: t[N], y[N]" in text
    assert ("# regenerate with: symgrad generate 'a*exp(-b*t) - y' -o "
            f"{out} --data t,y --residuals") in text
    a, b = sg.params("a b")
    t, y = sg.data("t y")
    assert _same_but_command(text) == _same_but_command(
        sg.compile_residuals(a * sg.exp(-b * t) - y).source)
    # without the flag the same text is a model (one output per sample), not residuals
    assert cli.main(["generate", "a*exp(-b*t) - y", "--data", "t,y", "-o",
                     str(tmp_path / "curve.py")]) == 0
    assert "# residuals" not in (tmp_path / "curve.py").read_text()


def test_an_array_module_checks_its_sizes():
    # dims one short read dims[k] past its end; sizes that break a tie (b1 of 2 beside W1 of
    # 4 rows, x sized to match) read past b1 and returned a number
    W1, b1 = sg.params("W1", shape=(4, 3)), sg.params("b1", shape=(4,))
    X_ = sg.data("X", shape=(3,))
    f = sg.compile(sg.mean(sg.sum(sg.tanh(W1 @ X_ + b1), axis=0)), fuse=False)
    x, Xd = np.linspace(-1, 1, 16), np.ones((4, 3))
    assert f.module.value(x, f.dims, Xd, None) == f.value(x, X=Xd)
    with pytest.raises(ValueError, match=r"dims must hold the \d+ sizes"):
        f.module.value(x, f.dims[:-1], Xd, None)
    for k in np.flatnonzero(f.dims == 4):  # W1's rows and b1's length are tied
        bad = f.dims.copy()
        bad[k] = 2
        with pytest.raises(ValueError, match=r"dims: the sizes D\d \(\w+ axis \d\) and D\d"):
            f.module.value(x[:14], bad, Xd, None)
    assert "sizes the loss ties" in f.source
