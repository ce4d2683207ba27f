"""float32 fused array losses (issue 22 item 4): a small array loss compiled with
``dtype="float32"`` takes the one-pass lowering with the scalar float32 convention (the data and
each sample's arithmetic in float32, float64 sums over blocks; x, the gradient, the HVP and
every result float64), and ``fuse=False`` keeps the float32 array code (x and g float32).

Tolerances: both kernels read the same float32 data, so they differ only by rounding. A fused
float32 sample term is a few float32 roundings off (relative ``EPS32`` each), its block sums
of 1024 terms add errors of random sign (about ``sqrt(1024) * EPS32 / 2`` relative to the sum
of the terms' sizes), and the array code's float32 nodes round likewise: ``TOL = 32 * EPS32``
(about 4e-6) relative to the size of the result, with the result's scale taken as the mean
absolute per-sample contribution where a sum over samples cancels (a gradient)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from mixed_losses import mixed_loss

import symgrad as sg
from symgrad.check.unroll import ExactTooLarge
from symgrad.runtime.array import ArrayKernel
from symgrad.runtime.fused import FusedKernel

EPS32 = float(np.finfo(np.float32).eps)
TOL = 32 * EPS32
N = 5000


def _losses() -> dict:
    w = sg.params("w", shape=(2,))
    W = sg.params("W", shape=(3, 2))
    b = sg.params("b", shape=(3,))
    X = sg.data("X", shape=(2,))
    y = sg.data("y")
    C = sg.data("C", shape=(3,))
    z = W @ X + b
    return {
        "logistic": sg.mean(sg.log(1 + sg.exp(-y * (X @ w)))) + 0.01 * sg.sum(w**2),
        "softmax": sg.mean(sg.logsumexp(z) - sg.sum(C * z, axis=0)) + 0.01 * sg.sum(W**2),
    }


LOSSES = _losses()


def _data(n: int = N, seed: int = 0) -> dict:
    """float32 data: two features, a label y = +-1 of a noisy linear rule, a one-hot class C."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 2)).astype(np.float32)
    y = np.sign(X @ [1.5, -1.0] + 0.5 * rng.standard_normal(n)).astype(np.float32)
    C = np.eye(3, dtype=np.float32)[rng.integers(0, 3, n)]
    return {"X": X, "y": y, "C": C}


class _Kernels(dict):
    """Each loss's fused float32, fused float64 and float32 array-code kernels, compiled when a
    test first asks for them."""

    def __missing__(self, name):
        loss = LOSSES[name]
        self[name] = (sg.compile(loss, dtype="float32"), sg.compile(loss),
                      sg.compile(loss, dtype="float32", fuse=False))
        return self[name]


@pytest.fixture(scope="module")
def kernels() -> dict:
    return _Kernels()


def _x(f, seed: int = 1) -> np.ndarray:
    """A point representable in float32 (the fused loop rounds x to float32, the array code
    takes float32 x): the kernels then see the same parameters."""
    rng = np.random.default_rng(seed)
    return (0.5 * rng.standard_normal(f.n_params)).astype(np.float32).astype(np.float64)


def _rel(got, want, scale=None) -> float:
    got, want = np.asarray(got, float), np.asarray(want, float)
    return float(np.max(np.abs(got - want)) / (scale or np.max(np.abs(want))))


def _scale(f64, x, data, what) -> float:
    """The mean absolute per-sample contribution to a gradient or HVP (float64 kernel, one
    sample at a time through ``batch=``): the size its float32 rounding is relative to."""
    idx = np.arange(0, N, 50)
    rows = [np.abs(what(f64, x, {k: v[[i]] for k, v in data.items()})) for i in idx]
    return float(np.mean(rows))


def test_float32_fuses_with_the_scalar_float32_face(kernels):
    f32, f64, fa = kernels["logistic"]
    assert isinstance(f32, FusedKernel) and isinstance(f64, FusedKernel)
    assert f32.data_dtype == np.float32 and f64.data_dtype == np.float64
    assert "DTYPE = 'float32'" in f32.source and "DTYPE" not in f64.source
    assert isinstance(fa, ArrayKernel) and fa.dtype == np.float32
    assert f32.params == f64.params == ("w",) and f32.shapes == {"w": (2,)}
    d = _data(100)
    v, g = f32.value_and_grad(_x(f32), X=d["X"], y=d["y"])
    assert isinstance(v, float) and g.dtype == np.float64
    assert f32.hvp(_x(f32), np.ones(2), X=d["X"], y=d["y"]).dtype == np.float64
    assert isinstance(sg.compile(LOSSES["logistic"], dtype="float32", fuse=True), FusedKernel)


# -m slow: 4-9 s of compile each (the quick set keeps float32 fusion and training)
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) for n in LOSSES])
def test_float32_fused_equals_float64_fused_and_float32_array_code(kernels, name):
    f32, f64, fa = kernels[name]
    d32 = _data()
    d64 = {k: v.astype(np.float64) for k, v in d32.items()}
    if name == "logistic":
        d32, d64 = ({k: d[k] for k in ("X", "y")} for d in (d32, d64))
    else:
        d32, d64 = ({k: d[k] for k in ("X", "C")} for d in (d32, d64))
    x = _x(f32)
    v = np.random.default_rng(2).standard_normal(f32.n_params)
    v32, g32 = f32.value_and_grad(x, **d32)
    v64, g64 = f64.value_and_grad(x, **d64)
    va, ga = fa.value_and_grad(x.astype(np.float32), **d32)
    assert v32 != v64  # float32 arithmetic indeed
    assert _rel(v32, v64) < TOL and _rel(v32, va) < 2 * TOL
    gs = _scale(f64, x, d64, lambda f, x, d: f.grad(x, **d))
    assert _rel(g32, g64, gs) < TOL and _rel(g32, ga, gs) < 2 * TOL
    hs = _scale(f64, x, d64, lambda f, x, d: f.hvp(x, v, **d))
    h32, h64 = f32.hvp(x, v, **d32), f64.hvp(x, v, **d64)
    assert _rel(h32, h64, hs) < TOL
    assert _rel(h32, fa.hvp(x.astype(np.float32), v.astype(np.float32), **d32), hs) < 2 * TOL
    # float64 data are read as float32 (converted once per call, as the array code does)
    assert f32.value_and_grad(x, **d64)[0] == v32


def test_float32_fused_trains_to_the_float64_optimum(kernels):
    """Both loops run the float32 kernel with a float64 state and reach the float64 optimum:
    the float32 gradient is off by ~TOL times its per-sample scale (~0.3 here), which moves the
    optimum of this loss (Hessian >= 0.02, its ridge term) by at most ~TOL * 0.3 / 0.02."""
    f32, f64, _ = kernels["logistic"]
    d32 = {k: v for k, v in _data().items() if k in ("X", "y")}
    d64 = {k: v.astype(np.float64) for k, v in d32.items()}
    want = sg.minimize(f64, np.zeros(2), data=d64, optimizer=sg.optim.lbfgs(), steps=100)
    kw = dict(optimizer=sg.optim.sgd(lr=2.0), steps=2000, data=d32)  # lr < 2 / L, L <= 0.3
    got = sg.minimize(f32, np.zeros(2), compiled=True, **kw)
    py = sg.minimize(f32, np.zeros(2), compiled=False, **kw)
    assert got.compiled and not py.compiled and got.x.dtype == np.float64
    np.testing.assert_allclose(got.x, want.x, rtol=0, atol=TOL * 0.3 / 0.02)
    np.testing.assert_allclose(py.x, got.x, rtol=1e-12)  # the same kernel calls in both loops


def test_generate_writes_the_float32_module_compile_runs(kernels, tmp_path):
    f32, _, _ = kernels["logistic"]
    path = sg.generate(LOSSES["logistic"], tmp_path / "logistic32.py", dtype="float32")
    text = path.read_text()
    assert "DTYPE = 'float32'" in text and "dtype='float32'" in text
    spec = importlib.util.spec_from_file_location("logistic32", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    d = {k: v for k, v in _data(300).items() if k in ("X", "y")}
    x, g = _x(f32), np.empty(2)
    v = mod.value_and_grad(x, g, *(d[c] for c in mod.DATA), None)
    want_v, want_g = f32.value_and_grad(x, **d)
    assert v == want_v and np.array_equal(g, want_g)  # the same module, the same numbers


def test_dask_columns_and_bind_give_the_in_memory_result(kernels):
    da = pytest.importorskip("dask.array")
    # logistic: the quick module (its float32 passes compiled above), 2-D and 1-D columns
    f32, _, _ = kernels["logistic"]
    d = {k: v for k, v in _data(4000, seed=3).items() if k in ("X", "y")}
    x = _x(f32)
    v, g = f32.value_and_grad(x, **d)
    cols = {k: da.from_array(a, chunks=(1000, *a.shape[1:])) for k, a in d.items()}
    vd, gd = f32.value_and_grad(x, **cols)
    # Dask sums whole chunks: other float32 blocks than one pass, the same float64 totals
    assert _rel(vd, v) < TOL and _rel(gd, g) < TOL
    fb = f32.bind(**cols)
    assert fb.value(x) == vd and np.array_equal(fb.grad(x), gd)
    fn = f32.bind(**d)  # NumPy columns bound: converted to float32 once
    assert fn.value(x) == v and np.array_equal(fn.grad(x), g)


class _Off:
    """A float32 kernel whose gradient is 1e-3 relatively wrong (the checker must still fail
    it at float32's tolerance)."""

    def __init__(self, f):
        self._f = f

    def __getattr__(self, name):
        return getattr(self._f, name)

    def grad(self, x, **data):
        return self._f.grad(x, **data) * (1 + 1e-3)


# the array code's check is slow: the [fused] case keeps the float32 checker quick
@pytest.mark.parametrize("fused", [True, pytest.param(False, marks=pytest.mark.slow)],
                         ids=["fused", "array code"])
def test_check_grad_checks_a_float32_kernel_at_float32_tolerance(kernels, fused):
    """Differences of a float32 value are rounding noise (richardson failed every correct
    float32 kernel): the default for one is the exact oracle, at float32's tolerance."""
    f32, _, fa = kernels["logistic"]
    f = f32 if fused else fa
    d = {k: v for k, v in _data(40).items() if k in ("X", "y")}
    x = _x(f32)
    chk = sg.check_grad(f, x, data=d)
    assert chk.ok and chk.method == "exact", chk
    assert sg.check_hessian(f, x, data=d).ok
    assert not sg.check_grad(_Off(f), x, data=d).ok
    central = sg.check_grad(f, x, data=d, method="central")
    assert any("computes in float32" in n for n in central.notes)


# ------------------------------------------------ index sums + array terms (kind "sum")


@pytest.fixture(scope="module")
def mixed():
    """float32 and float64 kernels of tests/test_mixed_sums.py's loss (a smoothing penalty over
    a vector plus a small least-squares array term, ``am`` read by both): its float64 fused
    module is the one that file compiles."""
    loss = mixed_loss()
    return sg.compile(loss, dtype="float32"), sg.compile(loss)


@pytest.mark.slow  # -m slow (3-9 s of compile; the quick set keeps fusion and training)
def test_a_float32_sum_of_index_sums_and_array_terms_equals_float64(mixed):
    """The fused module: the sample loop in float32, the index sums in float64."""
    f32, f64 = mixed
    assert isinstance(f32, FusedKernel) and f32.data_dtype == np.float32 and f32.kind == "scalar"
    assert "index sums (over vectors, element-wise data) compute in float64" in f32.source
    rng = np.random.default_rng(5)
    d32 = {"X": rng.standard_normal((N, 3)).astype(np.float32),
           "y": rng.standard_normal(N).astype(np.float32),
           "z": rng.standard_normal(9)}
    d64 = {k: v.astype(np.float64) for k, v in d32.items()}
    x = f64.pack(am=0.75, cm=-0.5, wm=[0.5, -1.0, 0.25], vm=rng.standard_normal(9))
    x = x.astype(np.float32).astype(np.float64)
    v = rng.standard_normal(x.size)
    v32, g32 = f32.value_and_grad(x, **d32)
    v64, g64 = f64.value_and_grad(x, **d64)
    assert v32 != v64 and _rel(v32, v64) < TOL
    assert _rel(g32, g64) < TOL and _rel(f32.hvp(x, v, **d32), f64.hvp(x, v, **d64)) < TOL
    # the index sums alone are float64 code: the array term's gradient is the only float32 part
    part = f32.unpack(g32 - g64)
    assert np.array_equal(part["vm"], np.zeros(9)) and part["cm"] == 0.0


def test_a_float32_sum_that_does_not_fuse_is_refused_with_what_to_do(tmp_path):
    big = mixed_loss(width=40)  # 41 entries of x in the array terms: a SumKernel, float64 only
    for kw in ({}, {"fuse": True}):
        with pytest.raises(ValueError, match=r"dtype='float32': the array terms do not fuse "
                                             r"\(41 parameters.*loss.array with "
                                             r"dtype='float32' on its own"):
            sg.compile(big, dtype="float32", **kw)
    with pytest.raises(ValueError, match=r"fuse=False: float32 needs the one fused module"):
        sg.compile(mixed_loss(), dtype="float32", fuse=False)
    with pytest.raises(ValueError, match=r"the array terms do not fuse"):
        sg.generate(big, tmp_path / "big.py", dtype="float32")
    assert not (tmp_path / "big.py").exists()
    path = sg.generate(mixed_loss(), tmp_path / "mixed32.py", dtype="float32")
    assert "DTYPE = 'float32'" in path.read_text()


@pytest.mark.slow  # -m slow (3-9 s of compile; the quick set keeps fusion and training)
def test_float32_range_of_x_is_checked_in_both_loops():
    """The fused float32 loop rounds x to float32: an entry beyond float32's range is inf there
    (and tanh(inf) = 1 keeps the loss finite: a silently wrong run). x0 there is refused; an
    update that leaves the range stops the run as diverged, both loops, with x the last iterate
    in range (as for the float32 array code)."""
    V = sg.params("r32V", shape=(2, 2))
    X = sg.data("r32X", shape=(2,))
    y = sg.data("r32y")
    f = sg.compile(sg.mean((sg.sum(sg.tanh(V @ X), axis=0) - y) ** 2), dtype="float32")
    assert isinstance(f, FusedKernel)
    rng = np.random.default_rng(6)
    data = {"r32X": rng.standard_normal((64, 2)).astype(np.float32),
            "r32y": rng.standard_normal(64).astype(np.float32)}
    x0 = np.array([0.5, -0.25, 0.75, 0.125])
    x = x0.copy()
    x[0] = 1e39
    with pytest.raises(ValueError, match=r"x0\[0\] = 1e\+39 is beyond the range of this "
                                         r"float32 kernel"):
        sg.minimize(f, x, data=data, steps=3)
    for compiled in (True, False):  # lr * g ~ 1e39: finite in float64, beyond float32
        res = sg.minimize(f, x0, optimizer=sg.optim.sgd(1e40), data=data, steps=3,
                          compiled=compiled)
        assert res.compiled == compiled
        assert res.status == "diverged" and res.nit == 0, res.message
        assert "non-finite parameters" in res.message
        np.testing.assert_array_equal(res.x, x0)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "array code"])
def test_a_call_with_x_beyond_float32_names_the_entry(kernels, fused):
    """Both float32 kernels round x (and v) to float32: 1e39 was read as inf, silently
    (tanh(inf) = 1: a finite loss and a zero gradient)."""
    f32, _, fa = kernels["logistic"]
    f = f32 if fused else fa
    d = {k: v for k, v in _data(20).items() if k in ("X", "y")}
    x = np.array([1e39, 0.0])
    with pytest.raises(ValueError, match=r"x\[0\] = 1e\+39 is beyond the range of this float32 "
                                         r"kernel"):
        f.value_and_grad(x, **d)
    with pytest.raises(ValueError, match=r"v\[1\] = -4e\+38 is beyond the range"):
        f.hvp(np.zeros(2), np.array([0.0, -4e38]), **d)
    f.value(np.array([3e38, 0.0]), **d)  # in float32's range: computed (to inf, overflowing)


def test_too_large_for_the_oracle_advises_the_float64_kernel_not_differences(kernels):
    """The oracle's refusal said 'or use method=richardson', which fails every correct float32
    kernel: for one, it now points at the float64 kernel of the same loss."""
    f32, f64, _ = kernels["logistic"]
    d = {k: v for k, v in _data(20_000).items() if k in ("X", "y")}
    with pytest.raises(ExactTooLarge, match="batch=") as err:
        sg.check_grad(f32, _x(f32), data=d)
    assert "dtype='float64'" in str(err.value), err.value
    with pytest.raises(ExactTooLarge, match=r"or use method='richardson'$"):
        sg.check_grad(f64, _x(f32), data=d, method="exact")
