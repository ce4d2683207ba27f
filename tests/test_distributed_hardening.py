"""Issue 24 on the Dask path, without a cluster: the worker-side functions called directly, and
Dask's synchronous scheduler (the cluster round trips are in test_distributed.py).

- item 2: a worker loads only the text whose digest names the module; a spec's name is never a
  path and never stands for another text.
- item 3: columns with unknown chunk sizes (boolean masks) must agree chunk by chunk.
- item 4: losses that can hide a NaN (Max, Piecewise) are scanned per chunk; a NaN row is named
  by its global row, as in memory.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

da = pytest.importorskip("dask.array")

import dask  # noqa: E402

import symgrad as sg  # noqa: E402
from symgrad.distributed import worker  # noqa: E402
from symgrad.distributed.worker import ModuleSpec, chunk_acc  # noqa: E402

ONE = np.array([1.0])


@pytest.fixture(scope="module")
def sums():
    """``sum(a*t)`` and ``sum(10*a*t)``: the same structure, answers 1.0 and 10.0 at a = t = 1."""
    a = sg.params("a")
    t = sg.data("t")
    return sg.compile(sg.sum(a * t)), sg.compile(sg.sum(10 * a * t))


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """A worker process's state: nothing loaded yet, an empty cache directory of its own."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("SYMGRAD_CACHE_DIR", str(cache))
    monkeypatch.setattr(worker, "LOADED", {})
    return cache


def _sum(spec: ModuleSpec) -> float:
    return float(chunk_acc(spec, "e", 1, ONE, None, (0, 0), ONE)[0])


def test_a_spec_naming_another_kernels_module_is_refused(sums, fresh):
    """Regression (issue 24 item 2): a spec with kernel 1's name and kernel 10's text (its own,
    correct digest) left kernel 1's module in sys.modules under kernel 10's digest, so the
    genuine kernel 10 then answered 1.0 instead of 10.0 (and kernel 1's file was overwritten)."""
    one, ten = (ModuleSpec.of(f) for f in sums)
    worker.LOADED.clear()  # a worker process: loads the texts from its cache directory
    assert _sum(one) == 1.0
    forged = ModuleSpec(one.name, ten.text, ten.digest)
    with pytest.raises(ValueError, match="not the name of its text"):
        _sum(forged)
    assert _sum(ten) == 10.0 and _sum(one) == 1.0
    with pytest.raises(ValueError, match="digest mismatch"):  # the text does not match its digest
        _sum(ModuleSpec(ten.name, one.text, ten.digest))
    assert _sum(ten) == 10.0
    for spec in (one, ten):  # each text in the file named by its own digest, and nowhere else
        assert (fresh / f"{spec.name}.py").read_text() == spec.text
    assert sorted(p.name for p in fresh.glob("*.py")) == sorted(f"{s.name}.py" for s in (one, ten))


def test_a_spec_name_is_never_a_path(sums, fresh):
    """Regression (issue 24 item 2): the name "../x" wrote the text outside the cache."""
    one = ModuleSpec.of(sums[0])
    worker.LOADED.clear()
    for name in ("../x", "/tmp/x", f"{one.name}/../x", f"../{one.name}"):
        with pytest.raises(ValueError, match="not the name of its text"):
            _sum(ModuleSpec(name, one.text, one.digest))
    assert not list(fresh.parent.glob("*.py")) and not list(fresh.glob("*.py"))
    assert one.name == f"sg_{one.digest}" and _sum(one) == 1.0


def test_the_client_process_reuses_its_own_module(sums, monkeypatch):
    """On Dask's local threads the 'worker' is the client process: it uses the kernel's own
    module (no second import or compile), the one whose text the spec carries."""
    monkeypatch.setattr(worker, "LOADED", {})
    spec = ModuleSpec.of(sums[1])
    assert worker.load(spec) is sums[1].module and _sum(spec) == 10.0


# -- item 3: unknown chunk sizes -------------------------------------------------------------

@pytest.fixture(scope="module")
def quad():
    a, b = sg.params("a b")
    t, y = sg.data("t y")
    return sg.compile(sg.mean((a * t + b - y) ** 2))


def _masked(n: int, chunks: int, keep):
    """A column 0..n-1 in ``chunks`` whose rows ``keep`` are kept (unknown chunk sizes)."""
    x = da.arange(float(n), chunks=chunks)
    return x[keep(x)]


def test_unknown_chunk_sizes_that_differ_per_chunk_are_refused(quad):
    """Regression (issue 24 item 3): a masked column shorter than the other in a chunk was read
    past its end (NaN in one run, a finite wrong value in another)."""
    t = _masked(40, 10, lambda x: x >= 0)
    y = _masked(40, 10, lambda x: x != 13)  # chunk 1 has 9 rows, t has 10
    assert np.isnan(t.shape[0]) and np.isnan(y.shape[0])
    with dask.config.set(scheduler="sync"):
        for call in (lambda: quad.value([1.0, 0.0], t=t, y=y),
                     lambda: quad.value_and_grad([1.0, 0.0], t=t, y=y),
                     lambda: quad.bind(t=t, y=y).persist().hvp([1.0, 0.0], [1.0, 0.0])):
            with pytest.raises(ValueError, match=r"data column 'y' has 9 samples but 't' has 10"
                               r" in chunk 1: columns must have the same length"):
                call()
        a, b = sg.params("a b")
        ts, ys = sg.data("t y")
        rk = sg.compile_residuals(a * ts + b - ys)
        with pytest.raises(ValueError, match=r"data column 'y' has 9 samples but 't' has 10 "
                                             r"in chunk 1"):
            sg.least_squares(rk, [1.0, 0.0], data={"t": t, "y": y})


@pytest.mark.slow  # -m slow (5 s, cold)
def test_least_squares_on_unknown_chunk_sizes_equals_the_in_memory_fit():
    """Issue 24 item 12 (its distributed cause): the residual count was int(NaN) for columns of
    unknown chunk sizes; now the sizes are computed (and checked) when they are needed."""
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(12)
    tn = rng.uniform(0.0, 3.0, 500)
    yn = 2.0 * np.exp(-0.8 * tn) + 0.3 + 0.01 * rng.standard_normal(500)
    df = dd.from_pandas(pd.DataFrame({"t": tn, "y": yn}), npartitions=4)
    df = df[df["t"] > 0.5]  # a boolean mask: unknown partition lengths
    keep = tn > 0.5
    a, b, c = sg.params("a b c")
    t, y = sg.data("t y")
    rk = sg.compile_residuals(a * sg.exp(-b * t) + c - y)
    with dask.config.set(scheduler="sync"):
        got = sg.least_squares(rk, [1.0, 1.0, 0.0], data={"t": df["t"], "y": df["y"]})
    want = sg.least_squares(rk, [1.0, 1.0, 0.0], data={"t": tn[keep], "y": yn[keep]})
    assert got.success and got.n_residuals == int(keep.sum()) and got.nfev == want.nfev
    np.testing.assert_allclose(got.x, want.x, rtol=1e-10)


# -- item 4: losses that can hide a NaN --------------------------------------------------------

@pytest.fixture(scope="module")
def hinge():
    a = sg.params("a")
    t, y = sg.data("t y")
    return sg.compile(sg.mean(sp.Max(0, 1 - a * t * y)), params=[a])


@pytest.fixture(scope="module")
def clipped():
    a, b = sg.params("a b")
    t, y = sg.data("t y")
    return sg.compile_residuals(sp.Min(a * t + b - y, 10.0))


def _column(n: int, chunks: int, nan_row: int, masked: bool):
    """``i/n`` for row i, NaN at ``nan_row``; ``masked``: unknown chunk sizes (a mask keeping
    every row), so the global row must be found by the client."""
    i = da.arange(float(n), chunks=chunks)
    col = da.where(i == nan_row, np.nan, i / n)
    return col[i >= 0] if masked else col


@pytest.mark.parametrize("masked", [False, True])
def test_a_loss_that_hides_a_nan_is_scanned_per_chunk(hinge, masked):
    """Regression (issue 24 item 4): max(0, nan) is 0, so the Dask path (scanning only after a
    non-finite result) accepted a NaN row; in memory such losses are scanned on every call."""
    n, chunks, row = 100, 30, 67
    t, y = _column(n, chunks, -1, masked), _column(n, chunks, row, masked)
    msg = rf"data column 'y' has a non-finite value \(nan\) at row {row}: clean or drop"
    with pytest.raises(ValueError, match=msg):
        hinge.value(np.array([2.0]), t=t.compute(), y=y.compute())  # the in-memory message
    with dask.config.set(scheduler="sync"):
        for call in ("value", "value_and_grad", "hessian"):
            with pytest.raises(ValueError, match=msg):
                getattr(hinge, call)(np.array([2.0]), t=t, y=y)
        with pytest.raises(ValueError, match=msg):
            hinge.hvp(np.array([2.0]), np.array([1.0]), t=t, y=y)
        with pytest.raises(ValueError, match=msg):
            hinge.bind(t=t, y=y).on_chunks([2]).value(np.array([2.0]))
        assert np.isfinite(hinge.bind(t=t, y=y).on_chunks([0, 1]).value(np.array([2.0])))


@pytest.mark.parametrize("masked", [False, True])
def test_least_squares_with_a_hidden_nan_is_refused(clipped, masked):
    """Regression (issue 24 item 4): least_squares on Dask columns reported success=True with a
    NaN row that min(r, 10) hides; in memory the columns are scanned."""
    n, chunks, row = 100, 30, 41
    t, y = _column(n, chunks, -1, masked), _column(n, chunks, row, masked)
    msg = rf"data column 'y' has a non-finite value \(nan\) at row {row}: clean or drop"
    with pytest.raises(ValueError, match=msg):
        sg.least_squares(clipped, [1.0, 0.0], data={"t": t.compute(), "y": y.compute()})
    with dask.config.set(scheduler="sync"):
        with pytest.raises(ValueError, match=msg):
            sg.least_squares(clipped, [1.0, 0.0], data={"t": t, "y": y})
        bound = clipped.bind(t=t, y=y)
        for call in (bound.residuals, bound.jacobian):
            with pytest.raises(ValueError, match=msg):
                call(np.array([1.0, 0.0]))


def test_chunk_sgd_records_x_only_when_asked():
    """The history's memory rule holds for SGD over Dask chunks too (issue 24 item 16)."""
    import dask.array as da

    a = sg.params("a")
    t = sg.data("t")
    fb = sg.compile(sg.mean((a - t) ** 2)).bind(t=da.arange(100.0, chunks=10))
    opt = sg.optim.sgd(lr=0.3)
    res = sg.distributed.sgd(fb, [0.0], optimizer=opt, steps=5, seed=0)
    assert res.history.x.shape == (0, 1) and len(res.history.loss) == 6
    kept = sg.distributed.sgd(fb, [0.0], optimizer=opt, steps=5, seed=0, record_x=True)
    assert kept.history.x.shape == (6, 1) and kept.history.x[-1, 0] == kept.x[0]
    np.testing.assert_array_equal(kept.history.loss, res.history.loss)


@pytest.fixture(scope="module")
def two_per_sample():
    """Two residuals per sample, so the chunk slices of ``u`` (vjp) are ``m`` rows a sample."""
    a, b = sg.params("a b")
    t, y = sg.data("t y")
    return sg.compile_residuals([a * t + b - y, a * sg.exp(-b * t)])


@pytest.mark.slow  # -m slow (4 s, cold)
@pytest.mark.parametrize("masked", [False, True])
def test_dask_residuals_have_jvp_and_vjp_as_in_memory(two_per_sample, masked):
    """Issue 21 item 7: the Dask residual kernel lacked jvp/vjp; they run chunk by chunk (jvp
    gathered, vjp summed over each chunk's slice of u), also for unknown chunk sizes."""
    rng = np.random.default_rng(7)
    tn, yn = rng.normal(size=23), rng.normal(size=23)
    keep = rng.random(23) < 0.7 if masked else np.ones(23, bool)
    t, y = da.from_array(tn, chunks=6), da.from_array(yn, chunks=6)
    if masked:
        t, y = t[da.from_array(keep, chunks=6)], y[da.from_array(keep, chunks=6)]
    x, v = np.array([0.7, -0.3]), np.array([0.4, 1.1])
    want = two_per_sample.bind(t=tn[keep], y=yn[keep])
    u = rng.normal(size=want.n_residuals())
    with dask.config.set(scheduler="synchronous"):
        got = two_per_sample.bind(t=t, y=y)
        assert np.allclose(got.jvp(x, v), want.jvp(x, v), rtol=1e-13, atol=1e-14)
        assert np.allclose(got.vjp(x, u), want.vjp(x, u), rtol=1e-12, atol=1e-13)
        assert got.n_residuals() == want.n_residuals() == 2 * int(keep.sum())
        assert np.isclose(got.value(x), want.value(x), rtol=1e-13)
        assert np.allclose(got.grad(x), want.grad(x), rtol=1e-12, atol=1e-13)
        assert np.allclose(got.hvp(x, v), want.hvp(x, v), rtol=1e-12, atol=1e-13)
        assert np.allclose(got.hessian(x), want.hessian(x), rtol=1e-12, atol=1e-13)
        with pytest.raises(ValueError, match=r"u \(one weight per residual\) must have shape"):
            got.vjp(x, u[:-1])


def test_every_dask_bound_kernel_has_the_in_memory_bound_attributes(two_per_sample):
    """Issue 21 item 5: one Dask bound class, with the attributes of the in-memory ones."""
    from symgrad.distributed import DaskBound

    a = sg.params("a")
    w = sg.params("w", shape=(2,))
    t = sg.data("t")
    X = sg.data("X", shape=(2,))
    rng = np.random.default_rng(3)
    Xn, tn = rng.normal(size=(9, 2)), rng.normal(size=9)
    cases = [(sg.compile(sg.mean((a - t) ** 2)), {"t": tn}),
             (sg.compile(sg.mean((X @ w - t) ** 2)), {"X": Xn, "t": tn}),
             (two_per_sample, {"t": tn, "y": tn})]
    for k, data in cases:
        mem = k.bind(**data)
        fb = k.bind(**{n: da.from_array(c, chunks=4) for n, c in data.items()})
        assert isinstance(fb, DaskBound) and fb.kernel is k and fb.data_names == ()
        for attr in ("kind", "params", "n_params", "labels", "shapes"):
            assert getattr(fb, attr) == getattr(mem, attr), attr
        assert fb.persist() is fb
