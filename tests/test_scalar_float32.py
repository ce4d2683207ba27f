"""float32 scalar data losses (issue 22 item 4): ``sg.compile(loss, dtype="float32")`` computes
each sample's terms in float32 and sums them in float64; x, the gradient and every result stay
float64, and the float64 module is unchanged (tests/test_snapshots.py pins its text)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp
from float32_types import promoted

import symgrad as sg
from symgrad import optim

a, b, c = sg.params("a b c")
t, y = sg.data("t y")
ABC = [a, b, c]
QUAD = sg.mean((a * t**2 + b * t + c - y) ** 2)
# a loss through every kind of per-sample code: functions, kink helpers, rational and
# irrational constants, a symbolic power, Max, Heaviside
ZOO = sg.mean((sg.sigmoid(a * t) + sg.relu(b * t - c) + sp.exp(-a * t**2) / 3
               + sp.sqrt(1 + t**2) * sp.log(1 + c**2) + abs(b - t) + sg.softplus(y * a)
               + sp.Heaviside(t) * b + sp.Max(a, t) * sp.tanh(b) + (a * t) ** sp.Rational(3, 2)
               + sp.pi * y - y) ** 2) + sg.log(sg.mean(sp.exp(-b * t) * y**2))
X0 = np.array([0.5, -0.25, 1.5], np.float32).astype(np.float64)  # representable in float32
V = np.array([1.0, 2.0, -1.0])
EPS32 = float(np.finfo(np.float32).eps)


@pytest.fixture(scope="module")
def quad():
    # params= fixes x's order: the default follows the last declaration of a name anywhere in
    # the process, and other test modules declare "a", "b" and "c" again
    return sg.compile(QUAD, ABC, dtype="float32"), sg.compile(QUAD, ABC)


@pytest.fixture(scope="module")
def zoo():
    return sg.compile(ZOO, ABC, dtype="float32"), sg.compile(ZOO, ABC)


def _data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    T = rng.uniform(0.1, 2.0, n).astype(np.float32)
    Y = (1.0 + T + 0.5 * rng.standard_normal(n)).astype(np.float32)
    return T, Y


def _rel(got, want) -> float:
    got, want = np.asarray(got, float), np.asarray(want, float)
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


def _pair(f32, f64, n: int = 5000, seed: int = 0):
    T, Y = _data(n, seed)
    return f32, f64, {"t": T, "y": Y}, {"t": T.astype(np.float64), "y": Y.astype(np.float64)}


def test_float32_kernel_equals_float64_kernel_on_float32_data(quad):
    f32, f64, d32, d64 = _pair(*quad)
    v32, g32 = f32.value_and_grad(X0, **d32)
    v64, g64 = f64.value_and_grad(X0, **d64)
    assert isinstance(v32, float) and g32.dtype == np.float64 and v32 != v64
    assert _rel(v32, v64) < 1e-6 and _rel(g32, g64) < 1e-6
    h32, h64 = f32.hvp(X0, V, **d32), f64.hvp(X0, V, **d64)
    assert h32.dtype == np.float64 and _rel(h32, h64) < 1e-6


@pytest.mark.slow
@pytest.mark.parametrize("which", ["quad", "zoo"])
def test_every_call_of_a_float32_kernel_equals_float64(which, request):
    f32, f64, d32, d64 = _pair(*request.getfixturevalue(which))
    v32, g32 = f32.value_and_grad(X0, **d32)
    assert _rel(v32, f64.value(X0, **d64)) < 1e-6 and _rel(g32, f64.grad(X0, **d64)) < 1e-6
    # the value pass and the gradient pass print the terms apart: equal to float32 rounding
    assert _rel(f32.value(X0, **d32), v32) < 4 * EPS32
    assert _rel(f32.hvp(X0, V, **d32), f64.hvp(X0, V, **d64)) < 1e-6
    assert _rel(f32.hessian(X0, **d32), f64.hessian(X0, **d64)) < 1e-6
    # batches (an index array, a slice) read the same rows as the float64 kernel's
    for batch in (np.arange(0, 5000, 7), slice(100, 900)):
        assert _rel(f32.grad(X0, batch=batch, **d32), f64.grad(X0, batch=batch, **d64)) < 1e-6


def test_float64_columns_are_converted_to_float32_like_an_array_kernels(quad):
    f32, _ = quad
    T, Y = _data(3000, seed=1)
    T64 = T.astype(np.float64) + 1e-9  # rounds to T in float32
    args = f32.data_args({"t": T64, "y": Y})
    assert [c.dtype for c in args[:2]] == [np.float32, np.float32] and args[1] is Y
    assert f32.value_and_grad(X0, t=T64, y=Y)[1].tolist() == \
        f32.value_and_grad(X0, t=T, y=Y)[1].tolist()
    ints = np.arange(3000) % 7  # integer columns are accepted as before
    assert f32.value(X0, t=ints, y=Y) == f32.value(X0, t=ints.astype(np.float32), y=Y)


@pytest.mark.slow
def test_parallel_variant_gives_the_serial_sums(quad):
    f32, _ = quad
    T, Y = _data(200_000, seed=2)
    fp = sg.compile(QUAD, ABC, dtype="float32", parallel=True)
    fs = sg.compile(QUAD, ABC, dtype="float32", parallel=False)
    assert fp.path == fs.path == f32.path  # one module, both variants
    vs, gs = fs.value_and_grad(X0, t=T, y=Y)
    vp, gp = fp.value_and_grad(X0, t=T, y=Y)
    # the chunks cut the float32 blocks elsewhere: equal to float32 rounding (the float64
    # kernel's serial and parallel sums differ in the last bits the same way)
    assert _rel(vp, vs) < EPS32 and _rel(gp, gs) < EPS32
    assert _rel(fp.hvp(X0, V, t=T, y=Y), fs.hvp(X0, V, t=T, y=Y)) < EPS32
    assert fp.value_and_grad(X0, t=T, y=Y)[0] == vp  # the same chunks every call


@pytest.mark.slow
def test_the_sums_over_samples_are_float64_totals():
    """1e6 integer terms in 0..3600: each exact in float32, the total ~1.2e9 is not (past 2**24
    float32 rounds to multiples of 128 and more), so float32 totals would lose digits. The
    kernel sums blocks of 1024 terms in float32 (below 2**24 here: exact) and the blocks in
    float64: exact, and so are the gradient and Hessian-vector sums."""
    n = 1_000_000
    rng = np.random.default_rng(3)
    T = rng.integers(0, 61, n).astype(np.float32)
    Y = rng.integers(0, 61, n).astype(np.float32)
    f = sg.compile(sg.sum((a * t - y) ** 2), [a], dtype="float32")
    r = T.astype(np.float64) - Y
    want_v, want_g, want_h = (r**2).sum(), (2 * r * T).sum(), (2 * T.astype(np.float64)**2).sum()
    # what a float32 running total of the same terms gives: digits lost
    assert np.add.accumulate((r**2).astype(np.float32), dtype=np.float32)[-1] != want_v
    for par in (False, True):
        fk = sg.compile(sg.sum((a * t - y) ** 2), [a], dtype="float32", parallel=par)
        v, g = fk.value_and_grad([1.0], t=T, y=Y)
        assert v == want_v and g[0] == want_g
        assert fk.hvp([1.0], [1.0], t=T, y=Y)[0] == want_h
    assert f.value([1.0], t=T, y=Y) == want_v
    # real-valued terms of one sign: within float32 rounding of the exact sum of the kernel's
    # own float32 terms ((t - y)**2 rounded once, a = 1), where a float32 total is 1e-3 off
    T = rng.uniform(0.0, 1.0, n).astype(np.float32)
    Y = rng.uniform(0.0, 1.0, n).astype(np.float32)
    terms = (T - Y) ** 2
    exact = math.fsum(terms.astype(np.float64))
    assert abs(np.add.accumulate(terms, dtype=np.float32)[-1] - exact) > 1e-4 * exact
    for batch in (None, rng.permutation(n)):  # contiguous blocks, and gathered ones
        assert abs(f.value([1.0], t=T, y=Y, batch=batch) - exact) <= EPS32 * exact


def test_no_per_sample_value_is_promoted_to_float64(zoo):
    f32, _ = zoo
    T, Y = _data(64)
    m, k, n = f32.module, len(f32.problem.reductions), len(f32.params)
    assert promoted(m._acc_e, X0, T, Y, None, 0, 64, np.zeros(k)) == []
    assert promoted(m._acc_g, X0, T, Y, None, 0, 64, np.zeros(k + k * n)) == []
    assert promoted(m._acc_h, X0, V, T, Y, None, 0, 64, np.zeros(k + 2 * k * n)) == []


def test_module_says_it_computes_in_float32(quad, tmp_path):
    f32, f64 = quad
    assert "DTYPE = 'float32'" in f32.source and "DTYPE" not in f64.source
    assert f32.data_dtype == np.float32 and f64.data_dtype == np.float64
    assert f32.dtype == np.float64  # x and g: what an optimizer passes
    assert not f32.analytic and "value_complex" not in f32.source
    assert "regenerate with: symgrad.compile(loss, dtype='float32')" in f32.source
    path = sg.generate(QUAD, tmp_path / "q32.py", ABC, dtype="float32")
    text = path.read_text()
    assert "DTYPE = 'float32'" in text
    assert f"# regenerate with: symgrad.generate(loss, '{path.as_posix()}', dtype='float32')" \
        in text


REFUSED = [
    ((a - 1) ** 2 + b**2, r"dtype='float32' is not available.*no sum over data samples"),
    (sg.sum((sg.params("W", indexed=True)[sg.index("i")]) ** 2,  # index sums, no samples
            (sg.index("i"), 0, sg.params("W", indexed=True).length - 1)),
     r"dtype='float32' is not available.*no sum over data samples"),
]


@pytest.mark.parametrize("loss, match", REFUSED, ids=["param-only", "index-sum"])
def test_losses_without_a_float32_sample_loop_refuse_it_with_why(loss, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        sg.compile(loss, dtype="float32")
    with pytest.raises(ValueError, match=match):
        sg.generate(loss, tmp_path / "m.py", dtype="float32")
    assert not (tmp_path / "m.py").exists()


def test_a_datum_beyond_float32_is_named_not_read_as_inf(quad):
    f32, _ = quad
    T, Y = _data(50)
    Yb = Y.astype(np.float64)
    Yb[17] = -5e39
    for call in (lambda: f32.value(X0, t=T, y=Yb), lambda: f32.value_and_grad(X0, t=T, y=Yb),
                 lambda: f32.data_args({"t": T, "y": Yb})):
        with pytest.raises(ValueError, match=r"data column 'y' has -5e\+39 at row 17.*float32"):
            call()
    assert np.isfinite(f32.value(X0, t=T, y=Yb, batch=np.arange(10)))  # row 17 not read
    with pytest.raises(ValueError, match="row 17"):
        f32.value(X0, t=T, y=Yb, batch=[3, 17])
    with pytest.raises(TypeError, match="data column 't' has dtype complex128"):
        f32.value(X0, t=T.astype(complex), y=Y)


def _fit_data():
    rng = np.random.default_rng(4)
    T = rng.uniform(-1, 1, 20_000).astype(np.float32)
    Y = (0.5 * T**2 - T + 2 + 0.01 * rng.standard_normal(20_000)).astype(np.float32)
    return {"t": T, "y": Y}


def test_trains_in_the_compiled_loop(quad):
    """The compiled loop runs the float32 kernel (x and the state float64): the same steps as
    the Python loop, to the known coefficients."""
    f32, _ = quad
    kw = dict(data=_fit_data(), optimizer=optim.adam(lr=0.05), steps=1500, batch_size=256,
              seed=1)
    r = sg.minimize(f32, np.zeros(3), compiled=True, **kw)
    py = sg.minimize(f32, np.zeros(3), compiled=False, **kw)
    assert r.compiled and not py.compiled and r.x.dtype == np.float64
    np.testing.assert_allclose(r.x, [0.5, -1.0, 2.0], atol=5e-3)
    np.testing.assert_allclose(r.x, py.x, rtol=1e-12, atol=1e-14)


@pytest.mark.slow
@pytest.mark.parametrize("bs", [None, 256])
def test_compiled_training_in_float32_follows_float64(quad, bs):
    f32, f64 = quad
    kw = dict(data=_fit_data(), optimizer=optim.adam(lr=0.05), steps=1500, batch_size=bs,
              seed=1)
    r32 = sg.minimize(f32, np.zeros(3), compiled=True, **kw)
    r64 = sg.minimize(f64, np.zeros(3), compiled=True, **kw)
    assert r32.compiled and r64.compiled
    np.testing.assert_allclose(r32.x, r64.x, rtol=1e-5, atol=1e-6)


def test_dask_columns_give_the_in_memory_result(quad):
    da = pytest.importorskip("dask.array")
    f32, _ = quad
    T, Y = _data(10_000, seed=5)
    v, g = f32.value_and_grad(X0, t=T, y=Y)
    for dt in (np.float32, np.float64):  # float64 chunks are read as float32 in the kernel
        td, yd = (da.from_array(z.astype(dt), chunks=2500) for z in (T, Y))
        vd, gd = f32.value_and_grad(X0, t=td, y=yd)
        assert _rel(vd, v) < EPS32 and _rel(gd, g) < EPS32  # Dask's chunks: other blocks
