"""Small array losses run as one pass over the samples (FusedKernel): the same numbers as the
array code, the array loss's face, every consumer (batches, threads, Dask, the compiled loop,
the exact checker), and the choice between the two lowerings."""

from __future__ import annotations

import numpy as np
import pytest

import symgrad as sg
from symgrad.passes.fuse import MAX_PARAMS, unroll
from symgrad.runtime.array import ArrayKernel
from symgrad.runtime.fused import FusedKernel

N = 300
RNG = np.random.default_rng(7)
XD = RNG.standard_normal((N, 2))
YD = RNG.standard_normal(N)
Y3 = RNG.standard_normal((N, 3))
ONEHOT = np.eye(3)[RNG.integers(0, 3, N)]


def _losses() -> dict:
    W = sg.params("W", shape=(3, 2))
    b = sg.params("b", shape=(3,))
    w = sg.params("w", shape=(2,))
    X = sg.data("X", shape=(2,))
    y = sg.data("y")
    Y = sg.data("Y", shape=(3,))
    C = sg.data("C", shape=(3,))
    z = W @ X + b
    return {
        "ridge": (sg.mean((X @ w - y) ** 2) + 0.1 * sg.sum(w**2), dict(X=XD, y=YD)),
        "logistic": (sg.mean(sg.log(1 + sg.exp(-y * (X @ w)))), dict(X=XD, y=np.sign(YD))),
        "softmax": (sg.mean(sg.logsumexp(z) - sg.sum(C * z, axis=0)) + 0.01 * sg.sum(W**2),
                    dict(X=XD, C=ONEHOT)),
        "tanh layer": (sg.mean((sg.tanh(z) - Y) ** 2), dict(X=XD, Y=Y3)),
        "relu, windows, sqrt": (sg.sqrt(sg.mean(sg.relu(W[0] @ X + b[1:].sum() - y) ** 2)) +
                                sg.sum(b) * sg.sum(y**2), dict(X=XD, y=YD)),
    }


LOSSES = _losses()


class _Pairs(dict):
    """Each loss's fused and array kernels, compiled when a test first asks for them."""

    def __missing__(self, name):
        loss, data = LOSSES[name]
        self[name] = (sg.compile(loss), sg.compile(loss, fuse=False), data)
        return self[name]


@pytest.fixture(scope="module")
def pairs() -> dict:
    return _Pairs()


# Each pair compiles two kernels (softmax's 12 s, cold): the slow set runs them; ridge's fused
# kernel stays quick against NumPy in test_fused_ridge_equals_numpy
LOSS_CASES = [pytest.param(n, marks=pytest.mark.slow) for n in LOSSES]


@pytest.mark.parametrize("name", LOSS_CASES)
def test_fused_equals_the_array_code(pairs, name):
    ff, fa, data = pairs[name]
    assert isinstance(ff, FusedKernel) and isinstance(fa, ArrayKernel)
    assert ff.params == fa.params and ff.shapes == fa.shapes and ff.labels == fa.labels
    x = ff.init(1) + 0.3 * np.random.default_rng(3).standard_normal(ff.n_params)
    v = np.random.default_rng(4).standard_normal(ff.n_params)
    va, ga = fa.value_and_grad(x, **data)
    vf, gf = ff.value_and_grad(x, **data)
    assert vf == pytest.approx(va, rel=1e-12)
    np.testing.assert_allclose(gf, ga, rtol=1e-11, atol=1e-12 * np.abs(ga).max())
    hv = fa.hvp(x, v, **data)
    np.testing.assert_allclose(ff.hvp(x, v, **data), hv, rtol=1e-10, atol=1e-12 * np.abs(hv).max())
    np.testing.assert_allclose(ff.hessian(x, **data), fa.hessian(x, **data), rtol=1e-10,
                               atol=1e-12)


def test_fused_ridge_equals_numpy(pairs):
    ff, _, data = pairs["ridge"]
    w = np.array([0.4, -1.3])
    r = XD @ w - YD
    v, g = ff.value_and_grad(w, **data)
    assert v == pytest.approx(np.mean(r**2) + 0.1 * w @ w, rel=1e-13)
    np.testing.assert_allclose(g, 2 * XD.T @ r / N + 0.2 * w, rtol=1e-12)
    np.testing.assert_allclose(ff.hessian(w, **data), 2 * XD.T @ XD / N + 0.2 * np.eye(2),
                               rtol=1e-12)


@pytest.mark.slow  # -m slow (the softmax pair: 12 s of compile, cold; ridge stays quick)
def test_batches_and_threads_give_the_array_code_s_numbers(pairs):
    ff, fa, data = pairs["softmax"]
    x = ff.init(2) + 0.1
    for batch in (slice(10, 90), np.array([5, 1, 5, 200, 299])):
        np.testing.assert_allclose(ff.grad(x, batch=batch, **data),
                                   fa.grad(x, batch=batch, **data), rtol=1e-12, atol=1e-14)
    loss, _ = LOSSES["softmax"]
    fp = sg.compile(loss, parallel=True)
    np.testing.assert_allclose(fp.grad(x, **data), ff.grad(x, **data), rtol=1e-12, atol=1e-14)


@pytest.mark.slow
def test_face_formulas_and_unused_entries(pairs):
    ff, _, _ = pairs["relu, windows, sqrt"]  # reads W[0] only and b[1:] only: no warning
    assert ff.kind == "scalar" and ff.graph is LOSSES["relu, windows, sqrt"][0]
    assert "FusedKernel" in repr(ff) and "W[2, 3]" not in repr(ff)
    assert ff.formulas().startswith("loss = ")
    parts = ff.unpack(ff.pack(W=np.arange(6.0).reshape(3, 2), b=[1.0, 2.0, 3.0]))
    assert parts["W"].shape == (3, 2) and parts["b"].tolist() == [1.0, 2.0, 3.0]


def test_the_number_of_samples_outside_a_mean():
    w = sg.params("w", shape=(2,))
    X = sg.data("X", shape=(2,))
    e = sg.exp(X @ w)
    loss = sg.sum(e) * sg.mean(e)  # sum(e)**2 / N: N alone, as the sum of ones
    assert "sum(1)" in str(unroll(loss).expr)
    f = sg.compile(loss, fuse=True)
    x = np.array([0.5, -0.2])
    s, ds = np.exp(XD @ x).sum(), XD.T @ np.exp(XD @ x)
    assert f.value(x, X=XD) == pytest.approx(s**2 / N, rel=1e-12)
    np.testing.assert_allclose(f.grad(x, X=XD), 2 * s * ds / N, rtol=1e-12)


def test_the_choice_of_lowering():
    H, D = 6, 4  # 6*4 + 6 + 6 + 1 = 37 parameters: above the fused loop's limit
    W1 = sg.params("W1", shape=(H, D))
    b1 = sg.params("b1", shape=(H,))
    w2 = sg.params("w2", shape=(H,))
    c = sg.params("c")
    X = sg.data("X", shape=(D,))
    y = sg.data("y")
    mlp = sg.mean((w2 @ sg.tanh(W1 @ X + b1) + c - y) ** 2)
    assert H * D + 2 * H + 1 > MAX_PARAMS
    assert isinstance(sg.compile(mlp), ArrayKernel)
    with pytest.raises(ValueError, match=r"fuse=True: .*37 parameters"):
        sg.compile(mlp, fuse=True)
    small, _ = LOSSES["ridge"]
    assert isinstance(sg.compile(small, dtype="float32"), FusedKernel)  # float32 fuses too
    assert isinstance(sg.compile(small, dtype="float32", fuse=False), ArrayKernel)
    v = sg.params("v", shape=(2,))  # no sum over samples: nothing to run in float32 per sample
    assert isinstance(sg.compile(sg.sum((v - 1) ** 2), dtype="float32"), ArrayKernel)
    with pytest.raises(ValueError, match=r"fuse=True: .*float32.*no sum over data samples"):
        sg.compile(sg.sum((v - 1) ** 2), dtype="float32", fuse=True)
    a, t = sg.params("a"), sg.data("t")
    assert isinstance(sg.compile(sg.mean((a * t) ** 2), fuse=True), sg.Kernel)  # one pass already
    with pytest.raises(ValueError, match=r"fuse= chooses how an array loss.*one lowering"):
        sg.compile(sg.mean((a * t) ** 2), fuse=False)
    with pytest.raises(TypeError, match="fuse must be None, True or False"):
        sg.compile(small, fuse="yes")


def test_fused_runs_in_the_compiled_loop_on_dask_and_in_the_exact_checker(pairs):
    ff, fa, data = pairs["ridge"]
    x0 = np.array([0.2, -0.1])
    sgd = sg.optim.sgd(1e-3)
    rf = sg.minimize(ff, x0, data=data, optimizer=sgd, compiled=True, steps=30)
    ra = sg.minimize(fa, x0, data=data, optimizer=sgd, compiled=True, steps=30)
    np.testing.assert_allclose(rf.x, ra.x, rtol=1e-10)
    small = {k: v[:6] for k, v in data.items()}
    assert sg.check_grad(ff, x0, data=small, method="exact").ok
    da = pytest.importorskip("dask.array")
    cols = {k: da.from_array(v, chunks=(64, *v.shape[1:])) for k, v in data.items()}
    fb = ff.bind(**cols)
    assert fb.value(x0) == pytest.approx(ff.value(x0, **data), rel=1e-13)
    np.testing.assert_allclose(fb.grad(x0), ff.grad(x0, **data), rtol=1e-12)
