"""Array losses on Dask columns (symgrad.distributed.arrays, symgrad.passes.split).

Every reference is the in-memory kernel on the same numbers. The quick tests run on Dask's local
threads; the ``slow`` ones on a LocalCluster of 2 worker processes (persist, holders, a worker
killed mid-call, training).
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time

import numpy as np
import pytest

da = pytest.importorskip("dask.array")

import symgrad as sg  # noqa: E402
from symgrad import losses  # noqa: E402
from symgrad.distributed import DaskArrayKernel, bind  # noqa: E402
from symgrad.passes.split import SplitError, split  # noqa: E402

H, K, D = 16, 3, 4  # hidden units, classes, features


def rel(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


def rel_max(a, b) -> float:
    """The largest difference relative to the largest entry: over many samples an entry that is
    a cancelling sum (a bias gradient, mean(p - y)) differs by its rounding, about 1e-16 times
    the sum of |terms|, between any two summation orders (the in-memory loop and the chunks)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def mlp_loss():
    W1, b1 = sg.params("W1", shape=(H, D)), sg.params("b1", shape=(H,))
    W2, b2 = sg.params("W2", shape=(K, H)), sg.params("b2", shape=(K,))
    X, Y = sg.data("X", shape=(D,)), sg.data("Y", shape=(K,))
    return (losses.cross_entropy(W2 @ sg.tanh(W1 @ X + b1) + b2, Y)
            + losses.l2(W1, W2, weight=1e-2))


@pytest.fixture(scope="module")
def mlp():
    return sg.compile(mlp_loss())


def mlp_data(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, D))
    Y = np.eye(K)[rng.integers(0, K, n)]
    return X, Y


@pytest.mark.slow  # cold: the MLP's chunk module compiles (about 15 s)
@pytest.mark.parametrize("chunks", [(250, 3), (1000, 1), (97, 7)])
def test_mlp_matches_in_memory_whatever_the_chunks(mlp, chunks):
    n, x_chunks = 1000, chunks[0]
    Xn, Yn = mlp_data(n)
    x = mlp.init(1, scale=4.0)
    v = np.random.default_rng(2).standard_normal(x.size)
    fb = bind(mlp, {"X": da.from_array(Xn, chunks=(x_chunks, D)),
                    "Y": da.from_array(Yn, chunks=(n // chunks[1] + 1, 1))})
    assert isinstance(fb, DaskArrayKernel)
    d = {"X": Xn, "Y": Yn}
    assert rel(fb.value(x), mlp.value(x, **d)) < 1e-12
    val, g = fb.value_and_grad(x)
    val0, g0 = mlp.value_and_grad(x, **d)
    assert rel(val, val0) < 1e-12 and rel(g, g0) < 1e-12
    assert rel(fb(x)[1], g0) < 1e-12 and rel(fb.grad(x), g0) < 1e-12
    assert rel(fb.hvp(x, v), mlp.hvp(x, v, **d)) < 1e-12
    assert rel(fb.hessian(x), mlp.hessian(x, **d)) < 1e-12


@pytest.mark.slow  # -m slow (about 10 s; the quick set keeps an MLP's calls, bind and minimize)
def test_parameter_coefficients_gathers_and_per_sample_max():
    """lam * mean(...) (a data-free factor), rows picked by an integer column (U[i]) and a max
    over a per-sample axis: all sums over samples."""
    U, lam = sg.params("U", shape=(5, 2)), sg.params("lam")
    i, Z, r = sg.data("i", dtype=int), sg.data("Z", shape=(3,)), sg.data("r")
    loss = lam * sg.mean((sg.sum(U[i], axis=0) - r) ** 2) + sg.mean(sg.max(Z * lam, axis=0)) \
        + lam**2 * sg.sum(U**2) + 1.5
    f = sg.compile(loss)
    rng = np.random.default_rng(3)
    n = 301
    d = {"i": rng.integers(0, 5, n), "Z": rng.standard_normal((n, 3)),
         "r": rng.standard_normal(n)}
    fb = bind(f, {k: da.from_array(a, chunks=64) for k, a in d.items()})
    x = rng.standard_normal(f.n_params)
    v = rng.standard_normal(f.n_params)
    val, g = fb.value_and_grad(x)
    val0, g0 = f.value_and_grad(x, **d)
    assert rel(val, val0) < 1e-12 and rel(g, g0) < 1e-12
    assert rel(fb.hvp(x, v), f.hvp(x, v, **d)) < 1e-12
    assert rel(fb.on_chunks([1, 3]).value(x),
               f.value(x, **{k: np.concatenate([a[64:128], a[192:256]]) for k, a in d.items()}),
               ) < 1e-12  # a mean over the chunks' samples, as a batch in memory


W = sg.params("W", shape=(2,))
Xs = sg.data("Xs", shape=(2,))
ys = sg.data("ys")
E = (Xs @ W - ys) ** 2


@pytest.mark.parametrize("loss, match", [
    (sg.max(E), r"sg\.max over the samples"),
    (sg.logsumexp(sg.sum(E, axis=None) * W, axis=0), r"not a sum over samples|affine"),
    (sg.sqrt(sg.mean(E)), r"not affine.*sqrt"),
    (sg.mean(E) * sg.mean(ys), r"multiplies two|not affine"),
    (sg.mean((Xs @ W - sg.mean(ys)) ** 2), r"per-sample term .* reads a reduction"),
    (sg.mean(E) + sg.sum(W * sg.data("Dw", shape=(2,), samples=False)), r"'Dw' has no sample"),
])
def test_unsupported_shapes_say_which_part_and_why(loss, match):
    with pytest.raises(SplitError, match=match):
        split(sg.compile(loss, fuse=False).problem.loss)


def test_unsupported_losses_and_bad_columns_are_refused_when_bound():
    f = sg.compile(sg.sqrt(sg.mean(E)), fuse=False)  # fused, it runs: a scalar loss's outer chain
    with pytest.raises(NotImplementedError, match=r"sqrt"):
        bind(f, {"Xs": da.ones((8, 2), chunks=4), "ys": da.ones(8, chunks=4)})
    g = sg.compile(sg.mean(E), fuse=False)
    with pytest.raises(ValueError, match=r"'Xs' must have shape \(N, 2\)"):
        bind(g, {"Xs": da.ones((8, 3), chunks=4), "ys": da.ones(8, chunks=4)})
    with pytest.raises(TypeError, match="batch="):
        bind(g, {"Xs": da.ones((8, 2), chunks=4), "ys": da.ones(8, chunks=4)}, batch=[0])


# quick: test_float32_fused.py::test_dask_columns_and_bind_give_the_in_memory_result (float64
# totals of float32 chunks), test_probe_fixes.py's float32 array code on Dask
@pytest.mark.slow
def test_float32_kernels_sum_their_chunks_in_float64():
    f = sg.compile(sg.mean(E) + 0.1 * sg.sum(W**2), dtype="float32", fuse=False)
    rng = np.random.default_rng(4)
    d = {"Xs": rng.standard_normal((100, 2)), "ys": rng.standard_normal(100)}
    fb = bind(f, {k: da.from_array(a, chunks=30) for k, a in d.items()})
    x = np.array([0.5, -1.0], dtype=np.float32)
    val, g = fb.value_and_grad(x)
    val0, g0 = f.value_and_grad(x, **d)
    assert g.dtype == np.float32 and rel(val, val0) < 1e-6 and rel(g, g0) < 1e-5
    assert rel(fb.hvp(x, x), f.hvp(x, x, **d)) < 1e-5


# -m slow (12 s, cold; the quick set keeps Dask for fused arrays in test_fused.py)
@pytest.mark.slow
def test_kernel_calls_bind_and_minimize_with_dask_columns():
    """An array kernel's own calls, bind and minimize take Dask columns as NumPy ones."""
    f = sg.compile(sg.mean(E) + 0.1 * sg.sum(W**2), fuse=False)
    rng = np.random.default_rng(5)
    d = {"Xs": rng.standard_normal((100, 2)), "ys": rng.standard_normal(100)}
    dd = {k: da.from_array(a, chunks=30) for k, a in d.items()}
    x, v = np.array([0.5, -1.0]), np.array([1.0, 2.0])
    for m in ("value", "value_and_grad", "hessian"):
        assert rel(getattr(f, m)(x, **dd)[-1] if m == "value_and_grad" else
                   getattr(f, m)(x, **dd), getattr(f, m)(x, **d)[-1] if m == "value_and_grad"
                   else getattr(f, m)(x, **d)) < 1e-12
    assert rel(f.hvp(x, v, **dd), f.hvp(x, v, **d)) < 1e-12
    assert isinstance(f.bind(**dd), DaskArrayKernel)
    got = sg.minimize(f, x, steps=10, optimizer=sg.optim.lbfgs(), data=dd)
    want = sg.minimize(f, x, steps=10, optimizer=sg.optim.lbfgs(), data=d)
    np.testing.assert_allclose(got.x, want.x, rtol=1e-10)


def test_a_non_finite_datum_is_named_by_its_row():
    g = sg.compile(sg.mean(E), fuse=False)
    Xn = np.ones((20, 2))
    Xn[13, 1] = np.nan
    fb = bind(g, {"Xs": da.from_array(Xn, chunks=(6, 2)), "ys": da.ones(20, chunks=6)})
    with pytest.raises(ValueError, match=r"'Xs'.*row 13"):
        fb.value_and_grad(np.ones(2))


# -- on a LocalCluster of 2 worker processes ---------------------------------------------------

N_BIG = 40_000  # in-memory sums are loops over the samples: their rounding grows with N


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, worker_dashboard_address=None)
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


@pytest.fixture(scope="module")
def big(client):
    import dask

    rs = da.random.RandomState(11)
    X = rs.standard_normal((N_BIG, D), chunks=(N_BIG // 8, D))
    labels = rs.randint(0, K, size=N_BIG, chunks=N_BIG // 8)
    Y = (labels[:, None] == da.arange(K)[None, :]).astype(float)
    X, Y = dask.persist(X, Y)
    return X, Y, X.compute(), Y.compute()


@pytest.mark.slow
def test_mlp_on_a_cluster_equals_in_memory_persisted_or_not(mlp, big):
    X, Y, Xn, Yn = big
    x = mlp.init(5, scale=3.0)
    want = mlp.value_and_grad(x, X=Xn, Y=Yn)
    for fb in (bind(mlp, {"X": X, "Y": Y}), bind(mlp, {"X": X, "Y": Y}, persist=True)):
        val, g = fb.value_and_grad(x)
        assert rel(val, want[0]) < 1e-12 and rel_max(g, want[1]) < 1e-12
    assert fb.chunks.resident is not None and not fb.chunks.resident.lost  # holders served it
    # the cancelling entries (dL/db2 = mean(softmax - Y)) are no further from an exactly
    # summed reference than the in-memory ones
    p = mlp.unpack(x)
    z = np.tanh(Xn @ p["W1"].T + p["b1"]) @ p["W2"].T + p["b2"]
    e = np.exp(z - z.max(axis=1, keepdims=True))
    terms = e / e.sum(axis=1, keepdims=True) - Yn
    exact = np.array([math.fsum(terms[:, k]) / N_BIG for k in range(K)])
    at = slice(mlp.n_params - K, mlp.n_params)
    assert np.all(np.abs(g[at] - exact) <= np.abs(want[1][at] - exact) + 1e-15)


@pytest.mark.slow
def test_a_worker_killed_mid_call_does_not_change_the_mlp_result(client, mlp, big):
    X, Y, Xn, Yn = big
    slow = X.map_blocks(lambda b: (time.sleep(0.2), b)[1], dtype=X.dtype)  # ~0.8 s per worker
    x = mlp.init(6)
    ref = mlp.value_and_grad(x, X=Xn, Y=Yn)
    pids = list(client.run(os.getpid).values())
    result, done = {}, threading.Event()

    def call():
        result["out"] = bind(mlp, {"X": slow, "Y": Y}).value_and_grad(x)
        done.set()

    th = threading.Thread(target=call)
    th.start()
    time.sleep(0.5)
    assert not done.is_set(), "the call ended before the kill: make it slower"
    os.kill(pids[0], signal.SIGKILL)
    th.join(timeout=120)
    val, g = result["out"]
    assert rel(val, ref[0]) < 1e-12 and rel_max(g, ref[1]) < 1e-12
    assert pids[0] not in client.run(os.getpid).values()


@pytest.mark.slow
def test_a_holder_killed_between_calls_does_not_change_the_mlp_result(client, mlp, big):
    X, Y, Xn, Yn = big
    fb = bind(mlp, {"X": X, "Y": Y}).persist()
    x = mlp.init(7)
    ref = mlp.value_and_grad(x, X=Xn, Y=Yn)
    first = fb.chunks.resident
    addr = first.workers[0]
    os.kill(client.run(os.getpid, workers=[addr])[addr], signal.SIGKILL)
    for _ in range(2):  # the first call falls back to tasks, the second to new holders
        val, g = fb.value_and_grad(x)
        assert rel(val, ref[0]) < 1e-12 and rel_max(g, ref[1]) < 1e-12
    assert first.lost and fb.chunks.resident is not first


@pytest.mark.slow
def test_minimize_and_sgd_on_the_cluster_follow_the_in_memory_runs(mlp, big):
    X, Y, Xn, Yn = big
    fb = bind(mlp, {"X": X, "Y": Y}, persist=True)
    x0 = mlp.init(8)
    lb = sg.minimize(fb, x0, optimizer=sg.optim.lbfgs(), steps=8)
    lb0 = sg.minimize(mlp, x0, optimizer=sg.optim.lbfgs(), steps=8, data={"X": Xn, "Y": Yn})
    assert lb.nit == lb0.nit
    np.testing.assert_allclose(lb.x, lb0.x, rtol=1e-8, atol=1e-12)
    runs = [sg.distributed.sgd(fb, x0, optimizer=sg.optim.adam(lr=0.05), steps=6,
                               chunks_per_step=2, seed=4) for _ in range(2)]
    np.testing.assert_array_equal(runs[0].x, runs[1].x)
    assert runs[0].fun < runs[0].history.loss[0]
    # step 0's batch loss: the in-memory loss on the same two chunks' rows
    which = np.sort(np.random.default_rng(4).choice(8, size=2, replace=False))
    rows = np.concatenate([np.arange(k * (N_BIG // 8), (k + 1) * (N_BIG // 8)) for k in which])
    assert rel(runs[0].history.loss[0], mlp.value(x0, X=Xn[rows], Y=Yn[rows])) < 1e-12


# -- scalar losses with index sums over parameter vectors ------------------------------------

def vector_loss():
    a, b = sg.params("a b")
    u = sg.params("u", indexed=True)
    i = sg.index("i")
    t, y = sg.data("t y")
    smooth = sg.sum((u[i + 1] - u[i]) ** 2, (i, 0, u.length - 1))
    return sg.sqrt(sg.mean((a * sg.exp(-b * t) - y) ** 2)) + 0.1 * smooth + a**2 * sg.sum(
        u[i] ** 2, (i, 0, u.length))


@pytest.fixture(scope="module")
def vec():
    return sg.compile(vector_loss())


@pytest.mark.slow  # cold: the split kernels compile (about 8 s)
@pytest.mark.parametrize("n", [1, 5])
def test_index_sums_with_dask_columns_match_in_memory(vec, n):
    rng = np.random.default_rng(n)
    tn = rng.uniform(0, 2, 500)
    yn = 2 * np.exp(-1.3 * tn) + 0.01 * rng.standard_normal(500)
    fb = bind(vec, {"t": da.from_array(tn, chunks=70), "y": da.from_array(yn, chunks=70)})
    x = rng.standard_normal(2 + n)
    v = rng.standard_normal(2 + n)
    d = {"t": tn, "y": yn}
    val, g = fb.value_and_grad(x)
    val0, g0 = vec.value_and_grad(x, **d)
    assert rel(val, val0) < 1e-12 and rel(g, g0) < 1e-12
    assert rel(fb.value(x), val0) < 1e-12
    assert rel(fb.hvp(x, v), vec.hvp(x, v, **d)) < 1e-12
    assert rel(fb.hessian(x), vec.hessian(x, **d)) < 1e-12
    res = sg.distributed.sgd(fb, x, optimizer=sg.optim.adam(lr=0.01), steps=3, seed=0)
    assert res.x.shape == x.shape and np.isfinite(res.fun)


def test_index_sums_mixed_with_data_in_one_term_are_refused():
    a = sg.params("a")
    u = sg.params("u", indexed=True)
    i = sg.index("i")
    t = sg.data("t")
    f = sg.compile(sg.mean((a - t) ** 2) * sg.sum(u[i] ** 2, (i, 0, u.length)))
    with pytest.raises(NotImplementedError, match="reads data and sums over an index"):
        bind(f, {"t": da.ones(10, chunks=5)})
    with pytest.raises(NotImplementedError, match="reads data and sums over an index"):
        f.value(np.ones(3), t=da.ones(10, chunks=5))


@pytest.mark.slow  # -m slow (about 10 s; the quick set keeps an MLP's calls, bind and minimize)
def test_kernel_calls_with_index_sums_take_dask_columns_and_keep_the_kink_policy():
    """f.value/f.bind/sg.minimize with Dask columns, as for other scalar losses; the terms
    compiled for the split keep the kernel's kink policy (relu'(0), abs'(0) at u = 0)."""
    from symgrad.ad.derive import KinkPolicy

    w = sg.params("w")
    u = sg.params("u", indexed=True)
    i = sg.index("i")
    t = sg.data("t")
    f = sg.compile(sg.mean((w - t) ** 2) + sg.sum(sg.relu(u[i]) + sg.abs(u[i]), (i, 0, u.length)),
                   policy=KinkPolicy(relu=1.0, abs=0.25))
    x, tn = np.array([1.0, 0.0, 3.0]), np.arange(10.0)
    td = da.from_array(tn, chunks=3)
    val, g = f.value_and_grad(x, t=td)
    val0, g0 = f.value_and_grad(x, t=tn)
    assert rel(val, val0) < 1e-12 and rel(g, g0) < 1e-12 and g[1] == 1.25
    np.testing.assert_allclose(f.hvp(x, x, t=td), f.hvp(x, x, t=tn), rtol=1e-12, atol=0)
    assert rel(f.bind(t=td).persist().value(x), val0) < 1e-12
    got = sg.minimize(f, x, steps=5, data={"t": td})  # the default: L-BFGS, u -> 0
    want = sg.minimize(f, x, steps=5, data={"t": tn})
    np.testing.assert_allclose(got.x, want.x, rtol=1e-12, atol=1e-13)


# -- every array case of test_arrays ----------------------------------------------------------

def _array_cases():
    from test_arrays import CASES

    return CASES


@pytest.mark.slow  # cold: two more array modules to compile per case
@pytest.mark.parametrize("case", _array_cases(), ids=lambda c: c.name)
def test_every_array_case_on_dask_columns_matches_in_memory(case):
    from test_arrays import _sample_data

    P = {k: sg.params(k, shape=s) if s else sg.params(k) for k, s in case.params.items()}
    Dd = {k: sg.data(k, shape=s) if s else sg.data(k) for k, s in case.data.items()}
    f = sg.compile(case.array(P, Dd), list(P.values()))
    rng = np.random.default_rng(9)
    d = _sample_data(case, 203, rng)
    fb = bind(f, {k: da.from_array(a, chunks=(50, *a.shape[1:])) for k, a in d.items()})
    x = 0.5 * rng.standard_normal(f.n_params)
    v = rng.standard_normal(f.n_params)
    val, g = fb.value_and_grad(x)
    val0, g0 = f.value_and_grad(x, **d)
    assert rel(val, val0) < 1e-12 and rel_max(g, g0) < 1e-12
    assert rel_max(fb.hvp(x, v), f.hvp(x, v, **d)) < 1e-12


@pytest.mark.slow
def test_index_sums_on_a_cluster_persisted_equal_in_memory(client, vec):
    rs = da.random.RandomState(3)
    t = rs.uniform(0, 2, size=50_000, chunks=6_250)
    y = 2 * da.exp(-1.3 * t) + 0.01 * rs.standard_normal(size=50_000, chunks=6_250)
    tn, yn = t.compute(), y.compute()
    fb = vec.bind(t=t, y=y).persist()
    x = np.array([1.5, 1.0, 0.3, -0.2, 0.1, 0.4])
    val, g = fb.value_and_grad(x)
    val0, g0 = vec.value_and_grad(x, t=tn, y=yn)
    assert fb.chunks.resident is not None
    assert rel(val, val0) < 1e-12 and rel_max(g, g0) < 1e-12
