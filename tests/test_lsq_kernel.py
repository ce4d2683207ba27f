"""Compiled residual kernels (issue 13): residuals, Jacobian, J v, J^T u and the fused normal
equations against an independent SymPy-lambdify / NumPy oracle, summation accuracy, errors."""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest
import sympy as sp

import symgrad as sg
from symgrad.backend.numba.residual_module import residual_source
from symgrad.ir.residual_problem import residual_problem

TOL = 1e-13
SEED = 20240613


def _model_exp5():
    p = sg.params("a1 k1 a2 k2 a3 k3 a4 k4 a5 k5")
    t, y = sg.data("t y")
    return sum(p[2 * i] * sg.exp(-p[2 * i + 1] * t) for i in range(5)) - y, p, (t, y)


def _model_decay():
    a, b, c, d = sg.params("a b c d")
    t, y = sg.data("t y")
    return a * sg.exp(-b * t) + c * t + d - y, (a, b, c, d), (t, y)


def _model_exp8():  # P = 16, every row dense: J^T J summed by loops over the columns
    p = sg.params(" ".join(f"e{k} f{k}" for k in range(8)))
    t, y = sg.data("t y")
    return sum(p[2 * i] * sg.exp(-p[2 * i + 1] * t) for i in range(8)) - y, p, (t, y)


def _model_mixed():  # P = 14, two residuals per sample, structural zeros in both rows
    p = sg.params(" ".join(f"c{k}" for k in range(12)) + " g h")
    t, u, z = sg.data("t u z")
    poly = sum(p[k] * t**k for k in range(12)) / (1 + t**12)
    return [poly - u, p[12] * sg.exp(-p[13] * t) - z], p, (t, u, z)


def _model_vector():  # two residuals per sample: a circle's x and y coordinates
    r, w, ph = sg.params("r w ph")
    t, u, z = sg.data("t u z")
    return [r * sg.cos(w * t + ph) - u, r * sg.sin(w * t + ph) - z], (r, w, ph), (t, u, z)


class Case:
    """A compiled residual kernel with its lambdify oracle and a seeded data set."""

    def __init__(self, resid, params, data, x, n: int) -> None:
        self.rk = sg.compile_residuals(resid, params=list(params))
        self.resid, self.params = resid, list(params)
        exprs = list(resid) if isinstance(resid, list) else [resid]
        syms = [*params, *data]
        self.f = sp.lambdify(syms, exprs, "numpy")
        self.jf = sp.lambdify(syms, sp.Matrix(exprs).jacobian(list(params)).tolist(), "numpy")
        self.m, self.P = len(exprs), len(params)
        self.x = np.asarray(x, dtype=float)
        rng = np.random.default_rng(SEED)
        self.data = {d.name: rng.uniform(0.0, 3.0, n) for d in data}
        self.n = n if data else 1

    def ref(self, x=None):
        """(r (M,), J (M, P)) sample-major, from lambdify evaluated column-wise."""
        x = self.x if x is None else x
        cols = [self.data[k] for k in self.rk.data_names]
        ones = np.ones(self.n)
        r = np.stack([np.broadcast_to(np.asarray(v, float), (self.n,))
                      for v in self.f(*x, *cols)], axis=1).reshape(-1)
        Jm = self.jf(*x, *cols)  # (m, P) entries each scalar or (n,)
        J = np.empty((self.n, self.m, self.P))
        for k in range(self.m):
            for j in range(self.P):
                J[:, k, j] = np.asarray(Jm[k][j], float) * ones
        return r, J.reshape(-1, self.P)

    def kernel(self, parallel: bool):
        """The kernel of the same module with ``parallel`` forced (the module's dispatchers are
        shared, so what one compiled the other reuses)."""
        return sg.compile_residuals(self.resid, params=self.params, parallel=parallel)


@pytest.fixture(scope="module")
def exp5():
    resid, p, d = _model_exp5()
    return Case(resid, p, d, [2.0, 0.3, 1.0, 1.1, 0.5, 2.3, 0.25, 4.0, 0.1, 0.05], 20_011)


@pytest.fixture(scope="module")
def decay():
    resid, p, d = _model_decay()
    return Case(resid, p, d, [2.0, 0.7, 0.1, 1.0], 1_000)


@pytest.fixture(scope="module")
def exp8():
    resid, p, d = _model_exp8()
    x = np.r_[[1.0, 0.2, 0.7, 0.9, 0.4, 1.7, 0.3, 2.9], [0.2, 4.0, 0.1, 0.05, 0.3, 1.3, 0.6, 2.2]]
    return Case(resid, p, d, x, 5_003)


@pytest.fixture(scope="module")
def mixed():
    resid, p, d = _model_mixed()
    return Case(resid, p, d, np.linspace(-1.0, 1.0, 14), 3_001)


@pytest.fixture(scope="module")
def trig():  # parameter-only, 14 dense residuals (MGH 26): the loop form with m = 14, N = 1
    x = sg.params(" ".join(f"w{k}" for k in range(14)))
    cs = sum(sg.cos(v) for v in x)
    resid = [14 - cs + (k + 1) * (1 - sg.cos(v)) - sg.sin(v) for k, v in enumerate(x)]
    return Case(resid, x, (), np.linspace(0.05, 0.2, 14), 0)


@pytest.fixture(scope="module")
def vector():
    resid, p, d = _model_vector()
    return Case(resid, p, d, [1.5, 0.9, 0.2], 500)


@pytest.fixture(scope="module")
def rosen():
    x1, x2 = sg.params("x1 x2")
    return Case([10 * (x2 - x1**2), 1 - x1], (x1, x2), (), [-1.2, 1.0], 0)


def _close(got, want, scale, tol=TOL):
    err = np.max(np.abs(np.asarray(got) - want)) if np.size(want) else 0.0
    assert err <= tol * max(float(np.max(scale)), 1e-300), (err, float(np.max(scale)))


CASES = ["exp5", "decay", "vector", "rosen", "exp8", "mixed", "trig"]
SLOW = pytest.mark.slow
#: The quick set keeps one kernel of each shape: decay (one residual, an unrolled J^T J), vector
#: (two residuals per sample) and exp8 (a looped J^T J, P = 8). The other kernels are further
#: instances of these, and compile for 1-7 s each, cold (trig's 14 dense residuals about 15 s):
#: their products and normal equations run in the slow set, as does exp8's scaled pass.
QUICK = ("decay", "vector", "exp8")
PRODUCTS = [n if n in ("decay", "vector") else pytest.param(n, marks=SLOW) for n in CASES]
NORMAL = [(s, n) if n in QUICK and not (s and n != "decay") else pytest.param(s, n, marks=SLOW)
          for s in (False, True) for n in CASES]


@pytest.mark.parametrize("name", PRODUCTS)
def test_residuals_jacobian_products_match_lambdify(name, request):
    c = request.getfixturevalue(name)
    rk, rng = c.rk, np.random.default_rng(SEED)
    r0, J0 = c.ref()
    M = c.n * c.m
    assert rk.n_params == c.P and rk.m == c.m and rk.n_residuals(**c.data) == M
    r = rk.residuals(c.x, **c.data)
    J = rk.jacobian(c.x, **c.data)
    assert r.shape == (M,) and J.shape == (M, c.P) and J.flags.c_contiguous
    _close(r, r0, np.abs(r0) + 1.0)
    _close(J, J0, np.abs(J0))
    v, u = rng.standard_normal(c.P), rng.standard_normal(M)
    _close(rk.jvp(c.x, v, **c.data), J0 @ v, np.abs(J0) @ np.abs(v))
    _close(rk.vjp(c.x, u, **c.data), J0.T @ u, np.abs(J0).T @ np.abs(u))
    # out= is filled in place
    out = np.empty(M)
    assert rk.residuals(c.x, out, **c.data) is out and np.array_equal(out, r)


@pytest.mark.parametrize("scaled, name", NORMAL)
def test_normal_equations_match_materialised_jacobian(name, scaled, request):
    c = request.getfixturevalue(name)
    rk, M = c.rk, c.n * c.m
    r, J = rk.residuals(c.x, **c.data), rk.jacobian(c.x, **c.data)
    a = b = None
    if scaled:
        rng = np.random.default_rng(SEED + 1)
        a, b = rng.uniform(0.1, 2.0, M), rng.uniform(0.1, 2.0, M)
        Js, rs = J * a[:, None], r * b
    else:
        Js, rs = J, r
    A, g, rtr = rk.normal(c.x, a, b, **c.data)
    assert A.shape == (c.P, c.P) and g.shape == (c.P,) and isinstance(rtr, float)
    assert np.array_equal(A, A.T)
    _close(A, Js.T @ Js, np.abs(Js).T @ np.abs(Js))
    _close(g, Js.T @ rs, np.abs(Js).T @ np.abs(rs))
    assert abs(rtr - rs @ rs) <= TOL * (rs @ rs)


@pytest.mark.parametrize("name", PRODUCTS)
def test_rows_are_the_jacobian_rows(name, request):
    c = request.getfixturevalue(name)
    rk = c.rk
    r, J = rk.residuals(c.x, **c.data), rk.jacobian(c.x, **c.data)
    lo, hi = (min(3, c.n), min(c.n, 3 + 257))
    Jc, rc = rk.rows(c.x, lo, hi, **c.data)
    assert Jc.shape == ((hi - lo) * c.m, c.P)
    np.testing.assert_array_equal(Jc, J[lo * c.m:hi * c.m])
    # the same residuals, computed next to the Jacobian (its CSE may order a sum differently)
    _close(rc, r[lo * c.m:hi * c.m], np.abs(r).max() + 1.0, 1e-15)
    Je, re = rk.rows(c.x, lo, lo, **c.data)
    assert Je.shape == (0, c.P) and re.shape == (0,)


def test_bound_kernel_matches_and_rejects_data(decay):
    c = decay
    bk = c.rk.bind(**c.data)
    assert bk.data_names == () and bk.n_samples == c.n
    np.testing.assert_array_equal(bk.residuals(c.x), c.rk.residuals(c.x, **c.data))
    A1, g1, s1 = bk.normal(c.x)
    A2, g2, s2 = c.rk.normal(c.x, **c.data)
    assert np.array_equal(A1, A2) and np.array_equal(g1, g2) and s1 == s2
    with pytest.raises(TypeError):
        bk.residuals(c.x, t=c.data["t"])


# slow (a threaded normal pass compiled per kernel); quick:
# test_residual_threads.py::test_threaded_calls_are_the_serial_bits_without_a_prange_compile
@pytest.mark.slow
@pytest.mark.parametrize("name", ["decay", "exp8", "mixed"])
def test_normal_does_not_depend_on_the_thread_count(name, request):
    """The threaded pass (``parallel=True``: below the default threshold the serial one runs)
    of one unrolled (decay) and two looped normal passes, on 20,011 samples (79
    blocks)."""
    c = request.getfixturevalue(name)
    rng = np.random.default_rng(SEED + 2)
    bk = c.kernel(parallel=True).bind(**{k: rng.uniform(0.0, 3.0, 20_011) for k in c.data})
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = bk.normal(c.x)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = bk.normal(c.x)
    finally:
        numba.set_num_threads(before)
    assert np.array_equal(one[0], two[0]) and np.array_equal(one[1], two[1])
    assert one[2] == two[2]
    assert c.rk.module._normal_run.signatures  # the threaded pass ran


def test_summation_is_accurate_at_two_million_samples(decay):
    """Block sums added with compensation: each sum is within 1e-16 (relative to the sum of
    magnitudes) of math.fsum of the products, also where terms cancel; a plain running sum is
    1e-14..5e-14 off at this N (measured)."""
    rng = np.random.default_rng(SEED)
    n = 2_000_000
    t = rng.uniform(0.0, 4.0, n)
    y = np.where(rng.random(n) < 0.5, 1e4, -1e4) + rng.standard_normal(n)
    # the serial pass: the threaded one sums the same chunks alike (test_residual_threads)
    bk = decay.kernel(parallel=False).bind(t=t, y=y)
    x = decay.x
    A, g, rtr = bk.normal(x)
    J = bk.jacobian(x)
    r = bk.residuals(x)
    for j in range(4):
        for p, got in ((J[:, j] * J[:, j], A[j, j]), (J[:, j] * J[:, 3 - j], A[j, 3 - j]),
                       (J[:, j] * r, g[j])):
            assert abs(got - math.fsum(p)) <= 1e-16 * np.abs(p).sum(), j
    exact = math.fsum(r * r)
    assert abs(rtr - exact) <= 1e-16 * exact
    # the test can fail: a plain running sum of the same terms is much further off
    naive = float(np.add.accumulate(r * r)[-1])  # sequential, unlike np.sum (pairwise)
    assert abs(naive - exact) > 10 * abs(rtr - exact)


def test_kink_policy_reaches_the_jacobian():
    a = sg.params("a_kink")
    t = sg.data("t")
    data = {"t": np.array([1.0, 2.0, 3.0])}
    x = np.array([2.0])
    J0 = sg.compile_residuals(sg.relu(a - t)).jacobian(x, **data)
    J1 = sg.compile_residuals(sg.relu(a - t), policy=sg.KinkPolicy(relu=1.0)).jacobian(x, **data)
    assert J0[:, 0].tolist() == [1.0, 0.0, 0.0] and J1[:, 0].tolist() == [1.0, 1.0, 0.0]


def test_strings_and_plain_symbols_as_data(decay):
    rk = sg.compile_residuals("a*exp(-b*t) + c*t + d - y", data="t y")
    assert rk.params == ("a", "b", "c", "d") and rk.data_names == ("t", "y")
    np.testing.assert_allclose(rk.residuals(decay.x, **decay.data),
                               decay.rk.residuals(decay.x, **decay.data), rtol=1e-15)
    q, s = sp.symbols("q s", real=True)
    rk2 = sg.compile_residuals(q * s - 1, params=[q], data=[s])
    assert rk2.residuals([2.0], s=np.array([1.0, 0.5])).tolist() == [1.0, 0.0]


def test_source_is_deterministic_and_free_of_sizes():
    resid, _, _ = _model_decay()
    one = residual_source(residual_problem(resid))
    assert one == residual_source(residual_problem(resid))
    assert one.startswith("# Generated by symgrad, do not edit.\n")
    assert "# kink policy: relu'(0)=0.0" in one and "# data columns: t[N], y[N]" in one
    assert "numba.prange" in one and "def normal(x, A, bv, js, rs, t, y):" in one


def test_normal_pass_is_unrolled_for_small_p_and_loops_above(exp5, exp8, mixed, trig):
    """Issue 24 item 18: unrolled, the J^T J text (and Numba's compile time) grew as P**2 and
    faster; above UNROLL_MAX products per sample it loops over the Jacobian's columns."""
    def chunk(src):
        return src[src.index("def _normal_chunk"):src.index("def normal(")]

    assert "for ka in range" not in chunk(exp5.rk.source)  # P = 10: today's unrolled text
    assert "s54 += u9 * u9" in chunk(exp5.rk.source)
    for c in (exp8, mixed, trig):  # the block's rows stored column by column, sums by loops
        assert "Jb = np.empty(" in chunk(c.rk.source) and "s54 +=" not in chunk(c.rk.source)
        assert "tot += Jb[ka, kr] * Jb[kb, kr]" in chunk(c.rk.source)
    assert "Jb[12, kk + 0] = 0.0" in chunk(mixed.rk.source)  # a structural zero
    # the text grows linearly in P: 80 parameters (3321 sums) in a few hundred lines
    sizes = {}
    for P in (40, 80):
        p = sg.params(" ".join(f"q{k} s{k}" for k in range(P // 2)))
        t, y = sg.data("t y")
        resid = sum(p[2 * i] * sg.exp(-p[2 * i + 1] * t) for i in range(P // 2)) - y
        sizes[P] = chunk(residual_source(residual_problem(resid))).count("\n")
    assert sizes[80] < 2.2 * sizes[40] and sizes[80] < 1000, sizes


def test_column_names_that_clash_with_the_module_are_renamed():
    a = sg.params("a_clash")
    J, normal = sg.data("J normal")
    rk = sg.compile_residuals(a * J - normal)
    res = rk.residuals([2.0], J=np.array([1.0, 2.0]), normal=np.array([0.0, 1.0]))
    assert res.tolist() == [2.0, 3.0] and "col_J" in rk.source


# -- errors ---------------------------------------------------------------------------------

def test_reduction_inside_a_residual_is_refused():
    a = sg.params("a_err")
    t = sg.data("t")
    with pytest.raises(sg.ProblemError, match=r"reduction sg\.mean"):
        sg.compile_residuals(a * t - sg.mean(t))
    with pytest.raises(sg.ProblemError, match=r"residual 1 contains the reduction sg\.sum"):
        sg.compile_residuals([a - t, sg.sum(a * t)])


def test_unknown_symbols_and_bad_names_are_refused():
    a = sg.params("a_err")
    q = sp.Symbol("q_err", real=True)
    with pytest.raises(sg.ProblemError, match="'q_err' is neither a parameter nor data"):
        sg.compile_residuals(a - q)
    with pytest.raises(sg.ProblemError, match="data= names 'zz'"):
        sg.compile_residuals(a - q, data=["zz"])
    with pytest.raises(sg.ProblemError, match="no residuals"):
        sg.compile_residuals([])


def test_call_errors_name_the_argument(decay):
    rk, d, x = decay.rk, decay.data, decay.x
    with pytest.raises(TypeError, match="missing data column 'y'"):
        rk.residuals(x, t=d["t"])
    with pytest.raises(TypeError, match="unexpected data column 'z'"):
        rk.residuals(x, **d, z=d["t"])
    with pytest.raises(ValueError, match=r"x must have 4 entries \(a, b, c, d\), got 3"):
        rk.normal(x[:3], **d)
    with pytest.raises(ValueError, match="data column 'y' has 999 samples but 't' has 1000"):
        rk.residuals(x, t=d["t"], y=d["y"][:-1])
    bad = d["y"].copy()
    bad[7] = np.nan
    with pytest.raises(ValueError, match=r"data column 'y' has a non-finite value .* row 7"):
        rk.residuals(x, t=d["t"], y=bad)
    with pytest.raises(ValueError, match=r"jscale .* must have 1000 entries"):
        rk.normal(x, np.ones(10), **d)
    with pytest.raises(ValueError, match="v must have 4 entries"):
        rk.jvp(x, np.ones(3), **d)
    with pytest.raises(ValueError, match=r"u .* must have 1000 entries"):
        rk.vjp(x, np.ones(3), **d)
    with pytest.raises(ValueError, match=r"need 0 <= lo <= hi <= 1000"):
        rk.rows(x, 5, 1001, **d)
    with pytest.raises(ValueError, match="out must be a C-contiguous float64 array"):
        rk.residuals(x, np.empty(3), **d)
