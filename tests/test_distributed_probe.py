"""Defects of the Dask paths found by a probe (probe G), without a cluster unless marked slow:
Dask's synchronous scheduler, and the persisted holders (:class:`~symgrad.distributed.worker.
Holder`) run in this process behind a stand-in of their actor handles.

- A2: ``on_chunks`` with a repeated chunk number counts the chunk twice on every path.
- A3: float and bool index columns are refused on Dask as in memory (not truncated).
- A4/A5: no samples (all rows filtered, or only empty chunks chosen) is an error, not NaN; SGD
  over chunks skips empty chunks.
- A6: ``out=`` of Dask residuals is checked as in memory.
- A7: a float32 scalar kernel reads float64 Dask chunks as float32, as in memory.
- A8: array residuals' ``persist()`` does nothing without a distributed client.
- C4: an index out of range on Dask names the value and its global row.
- C7: ``sg.distributed.sgd`` takes ``x0`` as a dict by name.
"""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest

da = pytest.importorskip("dask.array")

import dask  # noqa: E402

import symgrad as sg  # noqa: E402
from symgrad.distributed.resident import Resident  # noqa: E402
from symgrad.distributed.worker import Holder  # noqa: E402

EMPTY = r"the data columns are empty: a reduction needs at least one sample"


@pytest.fixture(autouse=True)
def sync():
    with dask.config.set(scheduler="sync"):
        yield


@pytest.fixture(scope="module")
def quad():
    a, b = sg.params("a b")
    t, y = sg.data("t y")
    return sg.compile(sg.mean((a * t + b - y) ** 2))


@pytest.fixture(scope="module")
def gather():
    """An array loss that picks rows of U by an index column."""
    U = sg.params("U", shape=(5, 2))
    i = sg.data("i", dtype=int)
    r = sg.data("r")
    return sg.compile(sg.mean((sg.sum(U[i], axis=0) - r) ** 2))


@pytest.fixture(scope="module")
def gather_resid():
    U = sg.params("U", shape=(4, 2))
    g = sg.data("g", dtype=int)
    X = sg.data("Xg", shape=(2,))
    y = sg.data("yg")
    return sg.compile_residuals(sg.sum(U[g] * X, axis=0) - y)


# -- A2 ------------------------------------------------------------------------------------------
class _Done:  # a finished actor future / call, as distributed returns them
    status = "finished"

    def __init__(self, value=None) -> None:
        self.value = value

    def result(self):
        return self.value


class _Actor:  # an actor handle whose calls run here
    def __init__(self, holder: Holder) -> None:
        self.holder = holder

    def run(self, *args):
        return _Done(self.holder.run(*args))


def _held(fb, groups):
    """``fb`` with its chunks held as if persisted on workers holding the chunks ``groups``."""
    c = fb.chunks
    blocks = [dask.compute(*c.blocks[i]) for i in range(c.n_chunks)]
    actors = [_Actor(Holder(tuple((i, c.offsets[i], len(blocks[i])) for i in g), 1,
                            *(b for i in g for b in blocks[i]))) for g in groups]
    res = Resident([_Done() for _ in groups], actors, groups, [f"w{k}" for k in range(len(groups))])
    fb.chunks = dataclasses.replace(c, groups=tuple(map(tuple, groups)), resident=res)
    return fb


@pytest.mark.parametrize("kind", ["scalar mean", "scalar sum", "array mean"])
def test_a_repeated_chunk_counts_twice_on_every_path(kind):
    """Regression (probe A2): the holders of persisted chunks took the chunk numbers as a set,
    so on_chunks([1, 1, 2]) summed chunk 1 once while the array part's N counted it twice (a
    wrong mean), and persisted != tasks."""
    rng = np.random.default_rng(0)
    n = 400
    a, b = sg.params("a b")
    t, y = sg.data("t y")
    W = sg.params("W", shape=(3,))
    X = sg.data("X", shape=(3,))
    data = {"t": rng.standard_normal(n), "y": rng.standard_normal(n),
            "X": rng.standard_normal((n, 3))}
    if kind == "array mean":
        f, x, names = sg.compile(sg.mean((X @ W - y) ** 2), fuse=False), [0.3, -0.2, 0.5], "Xy"
    else:
        red = sg.mean if kind == "scalar mean" else sg.sum
        f, x, names = sg.compile(red((a * t + b - y) ** 2)), [0.3, -0.2], "ty"
    data = {k: data[k] for k in names}
    which = [1, 1, 2]
    rows = np.concatenate([np.arange(k * 100, (k + 1) * 100) for k in which])
    want_v, want_g = f.value_and_grad(x, **{k: v[rows] for k, v in data.items()})
    dd = {k: da.from_array(v, chunks=(100, *v.shape[1:])) for k, v in data.items()}
    tasks = f.bind(**dd).on_chunks(which)
    held = _held(f.bind(**dd), [[0, 2], [1, 3]]).on_chunks(which)
    for fb in (tasks, held):
        v, g = fb.value_and_grad(x)
        np.testing.assert_allclose(v, want_v, rtol=1e-13)
        np.testing.assert_allclose(g, want_g, rtol=1e-12)
    assert held.chunks.resident is not None and not held.chunks.resident.lost


@pytest.mark.slow  # -m slow (an in-process cluster)
def test_a_repeated_chunk_counts_twice_on_a_cluster(quad):
    distributed = pytest.importorskip("distributed")
    t = da.arange(40.0, chunks=10)
    tn = np.r_[np.arange(10.0, 20.0), np.arange(10.0, 30.0)]  # chunk 1 twice, then chunk 2
    want = quad.value([1.0, 0.0], t=tn, y=2 * tn + 1.5)
    y = 2 * t + 1.5
    with dask.config.set(scheduler=None), distributed.Client(
            processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None,
            worker_dashboard_address=None):
        fb = quad.bind(t=t, y=y).persist()
        assert fb.chunks.resident is not None
        got = fb.on_chunks([1, 1, 2]).value([1.0, 0.0])
    np.testing.assert_allclose(got, want, rtol=1e-13)


# -- A3 / C4 -------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [np.float64, bool])
def test_float_or_bool_index_columns_are_refused_on_dask(gather, gather_resid, bad):
    """Regression (probe A3): float and bool index columns were truncated to row numbers with
    astype(int64) on Dask (a float 2.7 read as row 2); in memory they are a TypeError."""
    rng = np.random.default_rng(0)
    i = (rng.integers(0, 2, 40) + (0.7 if bad is np.float64 else 0)).astype(bad)
    r = rng.standard_normal(40)
    msg = rf"index column 'i' must hold integers, got dtype {np.dtype(bad)}"
    with pytest.raises(TypeError, match=msg):
        gather.value(np.zeros(10), i=i, r=r)
    with pytest.raises(TypeError, match=msg):
        gather.value(np.zeros(10), i=da.from_array(i, chunks=7), r=da.from_array(r, chunks=7))
    data = {"g": da.from_array(i, chunks=7), "Xg": da.from_array(np.ones((40, 2)), chunks=7),
            "yg": da.from_array(r, chunks=7)}
    with pytest.raises(TypeError, match=msg.replace("'i'", "'g'")):
        sg.least_squares(gather_resid, np.zeros(8), data=data)


def test_an_index_out_of_range_names_its_value_and_row_on_dask(gather, gather_resid):
    """Regression (probe C4): the Dask path said "index column i: a row is out of range for U"
    without the value or the row; the README promises both, mini-batches included."""
    rng = np.random.default_rng(0)
    i, r = rng.integers(0, 5, 40), rng.standard_normal(40)
    i2 = i.copy()
    i[3] = -1  # one bad row per column: the chunks may run in any order
    i2[30] = 5
    id_, id2, rd = (da.from_array(v, chunks=7) for v in (i, i2, r))
    x = np.zeros(10)
    with pytest.raises(ValueError, match=r"index column 'i' has -1 in row 3: U has rows 0\.\.4"):
        gather.value(x, i=i, r=r)  # in memory
    with pytest.raises(ValueError, match=r"index column 'i' has -1 in row 3: U has rows 0\.\.4"):
        gather.value(x, i=id_, r=rd)
    fb = gather.bind(i=id2, r=rd)
    with pytest.raises(ValueError, match=r"index column 'i' has 5 in row 30: U has rows 0\.\.4"):
        fb.value_and_grad(x)
    with pytest.raises(ValueError, match=r"index column 'i' has 5 in row 30: U has rows 0\.\.4"):
        fb.on_chunks([4]).value(x)  # chunk 4 holds rows 28..34: the row is global
    fb.on_chunks([0, 1]).value(x)  # chunks without the bad row run
    g = i2 % 4
    g[33] = 4
    data = {"g": da.from_array(g, chunks=7), "Xg": da.from_array(np.ones((40, 2)), chunks=7),
            "yg": rd}
    with pytest.raises(ValueError, match=r"index column 'g' has 4 in row 33: U has rows 0\.\.3"):
        sg.least_squares(gather_resid, np.zeros(8), data=data)


# -- A4 / A5 -------------------------------------------------------------------------------------
def test_a_filter_that_removes_every_row_is_an_error_for_scalar_losses(quad):
    """Regression (probe A4): a scalar loss on Dask columns with no rows left returned NaN (and
    sg.minimize stopped as "diverged"); in memory, and for array losses, it is an error."""
    a, b = sg.params("a b")
    t, y = sg.data("t y")
    g = sg.compile(sg.sqrt(sg.mean((a * t + b - y) ** 2)) + a**2)
    td = da.arange(40.0, chunks=10)
    none = td > 100
    cols = {"t": td[none], "y": (2 * td + 1)[none]}
    with pytest.raises(ValueError, match=EMPTY):
        quad.value([1.0, 0.0], t=np.arange(40.0)[:0], y=np.arange(40.0)[:0])
    for call in (lambda: quad.value([1.0, 0.0], **cols),
                 lambda: g.value_and_grad([1.0, 0.0], **cols),
                 lambda: quad.hvp([1.0, 0.0], [1.0, 0.0], **cols),
                 lambda: sg.minimize(quad, [1.0, 0.0], data=cols, steps=3)):
        with pytest.raises(ValueError, match=EMPTY):
            call()


def _gapped():
    """t = 0..39 in 4 chunks whose chunk 1 (rows 10..19) was emptied by a filter."""
    td = da.arange(40.0, chunks=10)
    keep = (td < 10) | (td >= 20)
    return td[keep], (2 * td + 1)[keep]


def test_only_empty_chunks_chosen_is_an_error_naming_them(quad):
    """Regression (probe A5): on_chunks of an empty chunk gave NaN (0/0)."""
    t, y = _gapped()
    fb = quad.bind(t=t, y=y)
    with pytest.raises(ValueError, match=r"the chunks selected with on_chunks \(1\) hold no "
                                         r"samples"):
        fb.on_chunks([1]).value_and_grad([1.0, 0.0])
    v = fb.on_chunks([1, 2]).value([1.0, 0.0])  # an empty chunk among others: ignored
    np.testing.assert_allclose(v, fb.on_chunks([2]).value([1.0, 0.0]), rtol=1e-15)
    assert fb.chunk_sizes() == (10, 0, 10, 10)
    W = sg.params("W", shape=(1,))
    X = sg.data("X", shape=(1,))
    h = sg.compile(sg.mean((X @ W - sg.data("y")) ** 2), fuse=False)
    hb = h.bind(X=t[:, None], y=y)
    with pytest.raises(ValueError, match=r"on_chunks \(1\) hold no samples"):
        hb.on_chunks([1]).value([1.0])


def test_chunk_sgd_skips_empty_chunks(quad):
    """Regression (probe A5): sg.distributed.sgd drew the emptied chunk, got a NaN batch and
    stopped as "diverged"."""
    t, y = _gapped()
    fb = quad.bind(t=t, y=y)
    for seed in range(4):
        res = sg.distributed.sgd(fb, [1.0, 0.0], optimizer=sg.optim.sgd(lr=1e-3), steps=20,
                                 seed=seed)
        assert res.status == "completed" and np.isfinite(res.history.loss).all()
    with pytest.raises(ValueError, match=r"1\.\.3 \(the number of chunks that hold samples"):
        sg.distributed.sgd(fb, [1.0, 0.0], optimizer=sg.optim.sgd(lr=1e-3), steps=2,
                           chunks_per_step=4)


# -- A6 / A7 / A8 --------------------------------------------------------------------------------
def test_dask_residuals_check_out_as_in_memory():
    """Regression (probe A6): a float32 out was silently rounded and a (2, M) out broadcast."""
    a, b = sg.params("a b")
    t, y = sg.data("t y")
    rk = sg.compile_residuals(a * t + b - y)
    tn = np.linspace(0, 1, 6)
    bm = rk.bind(t=tn, y=2 * tn + 1)
    bd = rk.bind(t=da.from_array(tn, chunks=4), y=da.from_array(2 * tn + 1, chunks=4))
    x = np.array([1.0, 0.0])
    for out in (np.zeros(6, np.float32), np.zeros((2, 6)), np.zeros(6, int), x):
        for bound in (bm, bd):
            with pytest.raises(ValueError, match=r"out must be a C-contiguous float64 array of "
                                                 r"shape \(6,\)"):
                bound.residuals(x, out=out.copy() if out is not x else x)
    for bound in (bm, bd):
        with pytest.raises(ValueError, match=r"shape \(6, 2\)"):
            bound.jacobian(x, out=np.zeros((6, 3)))
    r, J = np.empty(6), np.empty((6, 2))
    assert bd.residuals(x, out=r) is r and bd.jacobian(x, out=J) is J
    np.testing.assert_array_equal(r, bm.residuals(x))
    np.testing.assert_array_equal(J, bm.jacobian(x))


def test_a_float32_kernel_reads_float64_chunks_as_float32():
    """Regression (probe A7): a float32 scalar kernel ran float64 Dask chunks in float64 while
    the in-memory call converts them to float32 (results ~1e-8 apart, not summation order)."""
    a, b = sg.params("a b")
    t, y = sg.data("t y")
    f32 = sg.compile(sg.mean((a * t + b - y) ** 2), dtype="float32")
    rng = np.random.default_rng(2)
    for n in (50, 5000):
        tn = rng.uniform(0, 2, n)
        yn = 3 * tn + 1 + 0.1 * rng.standard_normal(n)
        x = np.array([1.0, 0.5])
        want = f32.value_and_grad(x, t=tn, y=yn)
        got = f32.value_and_grad(x, t=da.from_array(tn, chunks=n), y=da.from_array(yn, chunks=n))
        assert got[0] == want[0]
        np.testing.assert_array_equal(got[1], want[1])


def test_array_residuals_persist_without_a_client_does_nothing():
    """Regression (probe A8): persist() ran dask.persist on the local scheduler, loading every
    chunk into this process; scalar residuals' persist() does nothing there."""
    calls, lock = [], threading.Lock()

    def load(i):
        with lock:
            calls.append(i)
        return np.random.default_rng(i).standard_normal((50, 2))

    X = da.concatenate([da.from_delayed(dask.delayed(load)(i), (50, 2), float)
                        for i in range(4)])
    w = sg.params("w", shape=(2,))
    Xs, ys = sg.data("X", shape=(2,)), sg.data("y")
    rk = sg.compile_residuals(sg.tanh(Xs @ w) - ys)
    bound = rk.bind(X=X, y=da.zeros(200, chunks=50))
    before = dict(bound.data)
    assert bound.persist() is bound and calls == []
    assert all(bound.data[k] is v for k, v in before.items())


# -- C7 ------------------------------------------------------------------------------------------
def test_chunk_sgd_takes_x0_by_name():
    """Regression (probe C7): sgd(fb, x0={"W": ...}) failed in float(); sg.minimize takes it."""
    W = sg.params("W", shape=(2,))
    X = sg.data("X", shape=(2,))
    y = sg.data("y")
    f = sg.compile(sg.mean((X @ W - y) ** 2) + 0.1 * sg.sum(W**2), fuse=False)
    Xn = np.random.default_rng(0).standard_normal((40, 2))
    fb = f.bind(X=da.from_array(Xn, chunks=(10, 2)), y=da.from_array(Xn @ [1.0, 2.0], chunks=10))
    opt = sg.optim.sgd(lr=0.1)
    by_name = sg.distributed.sgd(fb, {"W": np.array([0.5, 0.0])}, optimizer=opt, steps=3, seed=1)
    flat = sg.distributed.sgd(fb, [0.5, 0.0], optimizer=opt, steps=3, seed=1)
    np.testing.assert_array_equal(by_name.x, flat.x)


def test_minimize_takes_a_residual_kernel_on_dask_columns():
    # "Dask data need a symgrad Kernel" refused a residual kernel (a symgrad kernel); and
    # compiled=True blamed the kernel instead of the Dask columns
    a, b = sg.params("a b")
    t, y = sg.data("t y")
    rk = sg.compile_residuals(a * t + b - y)
    tn = np.linspace(0, 1, 6)
    cols = {"t": da.from_array(tn, chunks=4), "y": da.from_array(2 * tn + 1, chunks=4)}
    got = sg.minimize(rk, [1.0, 0.0], data=cols, steps=20)
    want = sg.minimize(rk, [1.0, 0.0], data={"t": tn, "y": 2 * tn + 1}, steps=20)
    np.testing.assert_allclose(got.x, want.x, rtol=1e-12)
    f = sg.compile(sg.mean((a * t + b - y) ** 2))
    with pytest.raises(ValueError, match="compiled=True is not possible: the loss runs on Dask"):
        sg.minimize(f, [1.0, 0.0], data=cols, optimizer=sg.optim.sgd(0.1), steps=5,
                    compiled=True)


def test_check_grad_takes_dask_columns_with_the_default_method():
    # the default (complex step) crashed inside Numba: Dask columns have no complex pass
    a, b = sg.params("a b")
    t, y = sg.data("t y")
    f = sg.compile(sg.mean((a * t + b - y) ** 2))
    tn = np.linspace(0, 1, 6)
    cols = {"t": da.from_array(tn, chunks=4), "y": da.from_array(2 * tn + 1, chunks=4)}
    assert sg.check_grad(f, [1.0, 0.0], data=cols).ok
    assert sg.check_hessian(f, [1.0, 0.0], data=cols).ok


def test_an_array_loss_that_only_sums_over_samples_runs_on_dask():
    # the chunk kernel always took N (the sample count) as a parameter: a loss without a mean
    # does not read it, and compiling the chunk kernel failed ("'sg_N' does not appear")
    W, X, y = sg.params("W", shape=(3,)), sg.data("X", shape=(3,)), sg.data("y")
    f = sg.compile(sg.sum((X @ W - y) ** 2) + sg.sum(W**2), fuse=False)
    rng = np.random.default_rng(0)
    Xn, yn = rng.standard_normal((50, 3)), np.ones(50)
    cols = {"X": da.from_array(Xn, chunks=(20, 3)), "y": da.from_array(yn, chunks=20)}
    x, v = np.array([0.3, -0.2, 0.5]), np.array([1.0, 2.0, -1.0])
    v0, g0 = f.value_and_grad(x, X=Xn, y=yn)
    v1, g1 = f.value_and_grad(x, **cols)
    assert v1 == pytest.approx(v0, rel=1e-13)
    np.testing.assert_allclose(g1, g0, rtol=1e-12)
    np.testing.assert_allclose(f.hvp(x, v, **cols), f.hvp(x, v, X=Xn, y=yn), rtol=1e-12)
    np.testing.assert_allclose(f.hessian(x, **cols), f.hessian(x, X=Xn, y=yn), rtol=1e-12)


def test_a_column_of_unknown_size_beside_a_known_one_is_named():
    # Dask's own "Chunks must be unchanging along dimensions with missing values" came out
    a, b = sg.params("a b")
    t, y = sg.data("t y")
    f = sg.compile(sg.mean((a * t + b - y) ** 2))
    tn = np.linspace(0, 1, 20)
    y_masked = da.from_array(3 * tn, chunks=5)
    y_masked = y_masked[y_masked >= 0]  # every row kept, but the sizes are unknown
    with pytest.raises(ValueError, match=r"data column 'y' has unknown chunk sizes .* with 't'"):
        f.value([1.0, 0.0], t=da.from_array(tn, chunks=5), y=y_masked)
