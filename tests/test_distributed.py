"""Kernel calls on Dask columns (symgrad.distributed) on a LocalCluster of 2 worker processes.

Every reference is the in-memory kernel on the same numbers. Columns are generated lazily on the
workers (dask.array.random), so only what a test computes on purpose reaches the client.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest
import sympy as sp

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.slow  # LocalClusters of worker processes (test_distributed_hardening
#                                covers the worker functions without a cluster, in the quick run)

import dask  # noqa: E402

import symgrad as sg  # noqa: E402
from symgrad.distributed import DaskKernel, worker  # noqa: E402

N = 2_000_000
CHUNKS = N // 16
X = np.array([1.7, 1.2, 0.4])


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, worker_dashboard_address=None)
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


@pytest.fixture(scope="module")
def f():
    a, b, c = sg.params("a b c")
    t, y = sg.data("t y")
    r = a * sg.exp(-b * t) + c - y
    # two reductions under nonlinear outer functions, plus a parameter-only penalty
    return sg.compile(sg.sqrt(sg.mean(r**2)) + 0.1 * sg.log(sg.mean((y - a * t)**2))
                      + 1e-3 * (a**2 + b**2 + c**2))


def columns(n: int = N, chunks: int = CHUNKS, seed: int = 7):
    rs = da.random.RandomState(seed)
    t = rs.uniform(0.0, 2.0, size=n, chunks=chunks)
    y = 2.0 * da.exp(-1.5 * t) + 0.5 + 0.05 * rs.standard_normal(size=n, chunks=chunks)
    return t, y


@pytest.fixture(scope="module")
def data(client):
    t, y = dask.persist(*columns())
    return t, y, t.compute(), y.compute()


def rel(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


def test_value_grad_hvp_hessian_match_in_memory(f, data):
    t, y, tn, yn = data
    v = np.array([0.3, -1.1, 0.7])
    assert rel(f.value(X, t=t, y=y), f.value(X, t=tn, y=yn)) < 1e-12
    val, g = f.value_and_grad(X, t=t, y=y)
    val0, g0 = f.value_and_grad(X, t=tn, y=yn)
    assert rel(val, val0) < 1e-12 and rel(g, g0) < 1e-12
    assert rel(f.grad(X, t=t, y=y), g0) < 1e-12
    assert rel(f.hvp(X, v, t=t, y=y), f.hvp(X, v, t=tn, y=yn)) < 1e-12
    assert rel(f.hessian(X, t=t, y=y), f.hessian(X, t=tn, y=yn)) < 1e-12


def test_bind_gives_a_dask_kernel_with_the_same_methods(f, data):
    t, y, tn, yn = data
    fb, f0 = f.bind(t=t, y=y), f.bind(t=tn, y=yn)
    assert isinstance(fb, DaskKernel) and fb.n_chunks == 16
    val, g = fb(X)
    assert rel(val, f0.value(X)) < 1e-12 and rel(g, f0.grad(X)) < 1e-12
    out = np.empty(3)
    assert fb.grad(X, out) is out


def test_workers_load_the_module_text_once(client, f, data):
    """Each worker that reduces chunks imports the shipped module text once, from its symgrad
    cache (the persisted chunks' holders: every worker that keeps chunks runs them)."""
    t, y, *_ = data
    fb = f.bind(t=t, y=y).persist()
    fb.value(X)

    def loaded(digest=fb.spec.digest):
        from symgrad.distributed import worker as w
        got = w.LOADED.get(digest)
        return None if got is None else (got[1].__file__, id(got[1]))

    first = client.run(loaded, workers=list(fb.chunks.resident.workers))
    name = f"sg_{fb.spec.digest}.py"  # named by the text's digest, whatever the client calls it
    assert first and all(v is not None and v[0].endswith(name) for v in first.values())
    fb.value(X + 1.0)
    assert client.run(loaded, workers=list(fb.chunks.resident.workers)) == first


def test_workers_refuse_forged_specs_and_scan_what_can_hide_a_nan(client):
    """Issue 24 items 2-4 through the cluster (the worker functions themselves are tested in
    test_distributed_hardening.py): a spec naming another kernel's module is refused on every
    worker, which still answers the genuine kernels; a NaN that max(0, .) hides is named by its
    global row, by tasks and by holders, with chunk sizes unknown (a mask); per-chunk lengths
    that differ are refused when the persisted columns are sized."""
    a = sg.params("a")
    t, y = sg.data("t y")
    s1, s10 = (worker.ModuleSpec.of(sg.compile(sg.sum(k * a * t))) for k in (1, 10))
    args = ("e", 1, np.ones(1), None, (0, 0), np.ones(1))
    assert [r[0] for r in client.run(worker.chunk_acc, s1, *args).values()] == [1.0, 1.0]
    with pytest.raises(ValueError, match="not the name of its text"):
        client.run(worker.chunk_acc, worker.ModuleSpec(s1.name, s10.text, s10.digest), *args)
    assert [r[0] for r in client.run(worker.chunk_acc, s10, *args).values()] == [10.0, 10.0]
    hinge = sg.compile(sg.mean(sp.Max(0, 1 - a * t * y)), params=[a])

    def masked(start, drop=-1):  # NaN at row 25001; unknown chunk sizes (distinct Dask keys)
        i = da.arange(start, start + 40_000.0, chunks=10_000)
        tt = (i - start) / 40_000
        return tt[i >= 0], da.where(i == start + 25_001, np.nan, tt)[i != start + drop]

    for fb in (hinge.bind(**dict(zip("ty", masked(0.0), strict=True))),
               hinge.bind(**dict(zip("ty", masked(1.0), strict=True))).persist()):
        with pytest.raises(ValueError, match=r"'y' has a non-finite value \(nan\) at row 25001"):
            fb.value(np.array([2.0]))
    assert fb.chunks.resident is not None  # the holders named it
    with pytest.raises(ValueError, match="'y' has 9999 samples but 't' has 10000 in chunk 1"):
        hinge.bind(**dict(zip("ty", masked(2.0, drop=12_345), strict=True))).persist()


def test_minimize_full_batch_and_lbfgs_give_the_in_memory_answer(f, data):
    t, y, tn, yn = data
    fb = f.bind(t=t, y=y).persist()
    x0 = np.array([1.0, 1.0, 0.0])
    lb = sg.minimize(fb, x0, optimizer=sg.optim.lbfgs(), steps=12)
    lb0 = sg.minimize(f, x0, optimizer=sg.optim.lbfgs(), steps=12, data={"t": tn, "y": yn})
    assert lb.status == lb0.status and lb.nit == lb0.nit
    np.testing.assert_allclose(lb.x, lb0.x, rtol=1e-8)
    ad = sg.minimize(fb, x0, optimizer=sg.optim.adam(lr=0.05), steps=5)
    ad0 = sg.minimize(f, x0, optimizer=sg.optim.adam(lr=0.05), steps=5,
                      data={"t": tn, "y": yn}, compiled=False)
    np.testing.assert_allclose(ad.x, ad0.x, rtol=1e-10)
    assert ad.fun < ad.history.loss[0]


def test_minimize_with_dask_data_binds_and_persists(f, data):
    """data= with Dask columns trains on the cluster (the kernel bound once), as in memory."""
    t, y, tn, yn = data
    x0 = np.array([1.0, 1.0, 0.0])
    got = sg.minimize(f, x0, optimizer=sg.optim.lbfgs(), steps=6, data={"t": t, "y": y})
    want = sg.minimize(f, x0, optimizer=sg.optim.lbfgs(), steps=6, data={"t": tn, "y": yn})
    assert got.nit == want.nit
    np.testing.assert_allclose(got.x, want.x, rtol=1e-8)
    got = sg.minimize(f, x0, optimizer=sg.optim.newton(), steps=4, data={"t": t, "y": y})
    want = sg.minimize(f, x0, optimizer=sg.optim.newton(), steps=4, data={"t": tn, "y": yn})
    assert got.nit == want.nit  # Newton gets the HVP reduced on the cluster
    np.testing.assert_allclose(got.x, want.x, rtol=1e-8)
    with pytest.raises(ValueError, match=r"sg\.distributed\.sgd"):
        sg.minimize(f, x0, steps=2, data={"t": t, "y": y}, batch_size=64)


def test_least_squares_on_dask_data_gives_the_in_memory_fit(data):
    """The fused J^T J, J^T r, r^T r pass runs per chunk on the workers: the same LM fit."""
    t, y, tn, yn = data
    a, b, c = sg.params("a b c")
    tt, yy = sg.data("t y")
    rk = sg.compile_residuals(a * sg.exp(-b * tt) + c - yy)
    x0 = [1.0, 1.0, 0.0]
    got = sg.least_squares(rk, x0, data={"t": t, "y": y})
    want = sg.least_squares(rk, x0, data={"t": tn, "y": yn})
    assert got.success and got.nfev == want.nfev
    np.testing.assert_allclose(got.x, want.x, rtol=1e-10)
    np.testing.assert_allclose(got.stderr, want.stderr, rtol=1e-8)
    A, g, rtr = rk.bind(t=t, y=y).normal(x0)
    A0, g0, rtr0 = rk.normal(x0, t=tn, y=yn)
    np.testing.assert_allclose(A, A0, rtol=1e-12)
    np.testing.assert_allclose(g, g0, rtol=1e-12)
    assert rtr == pytest.approx(rtr0, rel=1e-12)
    held = rk.bind(t=t, y=y).persist()  # the holders slice u at each chunk's first sample
    u, v = np.cos(tn), np.array([0.3, -0.2, 1.0])
    np.testing.assert_allclose(held.vjp(x0, u), rk.vjp(x0, u, t=tn, y=yn), rtol=1e-9)
    np.testing.assert_allclose(held.jvp(x0, v), rk.jvp(x0, v, t=tn, y=yn), rtol=1e-12,
                               atol=1e-14)
    lazy_t, lazy_y = columns(200_000, 25_000, seed=3)  # generated on the workers, then kept
    lazy = sg.least_squares(rk, x0, data={"t": lazy_t, "y": lazy_y})
    assert lazy.success and lazy._objective.k.chunks.groups is not None
    precise = sg.least_squares(rk, x0, data={"t": t, "y": y}, method="precise")
    np.testing.assert_allclose(precise.x, sg.least_squares(rk, x0, data={"t": tn, "y": yn},
                                                           method="precise").x, rtol=1e-9)
    with pytest.raises(NotImplementedError, match="loss='linear'"):
        sg.least_squares(rk, x0, data={"t": t, "y": y}, loss="huber")


def test_persisted_chunks_are_reduced_by_one_holder_per_worker(f, data):
    """persist() groups the chunks by the worker holding them and leaves one actor per worker
    holding its chunks: a call is one direct request per worker (a task costs a scheduler
    round trip of milliseconds), with the same numbers; bad data are still named."""
    t, y, tn, yn = data
    fb = f.bind(t=t, y=y).persist()
    groups = fb.chunks.groups
    assert groups is not None and len(groups) <= 2
    assert sorted(i for g in groups for i in g) == list(range(fb.n_chunks))
    assert fb.chunks.resident is not None and not fb.chunks.resident.lost
    ref = f.value_and_grad(X, t=tn, y=yn)
    val, g = fb.value_and_grad(X)
    assert rel(val, ref[0]) < 1e-12 and rel(g, ref[1]) < 1e-12
    v = np.array([0.3, -1.1, 0.7])
    assert rel(fb.hvp(X, v), f.hvp(X, v, t=tn, y=yn)) < 1e-12
    sub = fb.on_chunks([3, 0])  # a mini-batch of chunks: the same holders, only its chunks
    assert sub.chunks.resident is fb.chunks.resident and sub.chunks.numbers == (3, 0)
    rows = np.r_[3 * CHUNKS:4 * CHUNKS, 0:CHUNKS]
    ref = f.value_and_grad(X, t=tn[rows], y=yn[rows])
    val, g = sub.value_and_grad(X)
    assert rel(val, ref[0]) < 1e-12 and rel(g, ref[1]) < 1e-12
    val, g = sub.on_chunks([1]).value_and_grad(X)  # chunk 0, through the subset's numbering
    ref = f.value_and_grad(X, t=tn[:CHUNKS], y=yn[:CHUNKS])
    assert rel(val, ref[0]) < 1e-12 and rel(g, ref[1]) < 1e-12
    bad = f.bind(t=t, y=da.where(da.arange(N, chunks=CHUNKS) == 1_500_001, np.inf, y)).persist()
    assert bad.chunks.resident is not None
    with pytest.raises(ValueError, match=r"'y' has a non-finite value \(inf\) at row 1500001"):
        bad.value(X)


def _holder_pid(client, fb) -> int:
    """The process id of the worker holding the first group of ``fb``'s chunks."""
    addr = fb.chunks.resident.workers[0]
    return client.run(os.getpid, workers=[addr])[addr]


def test_a_holder_lost_mid_call_or_between_calls_does_not_change_the_result(client, f, data):
    """A worker killed during a call: the call falls back to tasks (Dask recomputes the lost
    chunks) and returns the right numbers; the next call regroups the chunks with new holders.
    Killed between calls: the next call notices and still returns the right numbers."""
    t, y, tn, yn = data
    size = 2 * (1 + 3)  # two reductions, value and gradient

    def slow(spec, *args, **kwargs):  # a nested function: cloudpickle sends it by value
        time.sleep(0.1)
        return worker.chunk_acc(spec, *args, **kwargs)

    fb = f.bind(t=t, y=y).persist()
    want = worker.chunk_acc(fb.spec, "g", size, X, None, (0, 0), tn, yn)  # all in memory
    first, result, done = fb.chunks.resident, {}, threading.Event()

    def call():
        result["row"] = fb.reduce(slow, "g", size, X, None, names=fb.chunks.names)
        done.set()

    pid = _holder_pid(client, fb)
    th = threading.Thread(target=call)
    th.start()
    time.sleep(0.4)  # 8 chunks of 0.1 s on each worker
    assert not done.is_set(), "the call ended before the kill: make it slower"
    os.kill(pid, signal.SIGKILL)
    th.join(timeout=120)
    assert first.lost and rel(result["row"], want) < 1e-12
    assert rel(fb.reduce(worker.chunk_acc, "g", size, X, None, names=fb.chunks.names),
               want) < 1e-12
    second = fb.chunks.resident
    assert second is not first and not second.lost  # regrouped, direct again
    os.kill(_holder_pid(client, fb), signal.SIGKILL)  # between calls: the call finds out
    assert rel(fb.reduce(worker.chunk_acc, "g", size, X, None, names=fb.chunks.names),
               want) < 1e-12
    assert second.lost
    fb.reduce(worker.chunk_acc, "g", size, X, None, names=fb.chunks.names)  # regroups
    third = fb.chunks.resident
    assert third is not second and not third.lost
    os.kill(_holder_pid(client, fb), signal.SIGKILL)  # between calls, the client knows it
    for _ in range(300):
        if third.lost:
            break
        time.sleep(0.1)
    assert third.lost
    part = fb.on_chunks([0]).reduce(worker.chunk_acc, "g", size, X, None, names=fb.chunks.names)
    assert rel(part, worker.chunk_acc(fb.spec, "g", size, X, None, (0, 0), tn[:CHUNKS],
                                      yn[:CHUNKS])) < 1e-12  # a subset falls back to tasks
    assert rel(fb.reduce(worker.chunk_acc, "g", size, X, None, names=fb.chunks.names),
               want) < 1e-12


def test_sgd_over_chunks_is_seeded(f, data):
    t, y, *_ = data
    fb = f.bind(t=t, y=y)
    runs = [sg.distributed.sgd(fb, [1.0, 1.0, 0.0], optimizer=sg.optim.adam(lr=0.05), steps=8,
                               chunks_per_step=2, seed=3) for _ in range(2)]
    np.testing.assert_array_equal(runs[0].x, runs[1].x)
    assert runs[0].fun < runs[0].history.loss[0]
    kept = sg.distributed.sgd(fb.persist(), [1.0, 1.0, 0.0], optimizer=sg.optim.adam(lr=0.05),
                              steps=8, chunks_per_step=2, seed=3)  # steps ask the holders
    np.testing.assert_allclose(kept.x, runs[0].x, rtol=1e-12)


@pytest.mark.filterwarnings("ignore:Sending large graph")  # the NumPy column travels once
def test_dataframe_columns_and_mixed_chunks(f, data):
    dd = pytest.importorskip("dask.dataframe")
    t, y, tn, yn = data
    ref = f.value_and_grad(X, t=tn, y=yn)
    df = dd.from_dask_array(da.stack([t, y], axis=1), columns=["t", "y"])
    val, g = f.value_and_grad(X, t=df["t"], y=df["y"])
    assert rel(val, ref[0]) < 1e-12 and rel(g, ref[1]) < 1e-12
    # different chunks are rechunked to the first column's; a NumPy column is sent along
    val, g = f.value_and_grad(X, t=t.rechunk(300_000), y=yn)
    assert rel(val, ref[0]) < 1e-12 and rel(g, ref[1]) < 1e-12


def test_default_local_scheduler_without_a_client(f):
    t, y = columns(40_000, 7_000)
    ref = f.value_and_grad(X, t=t.compute(), y=y.compute())
    with dask.config.set(scheduler="threads"):
        val, g = f.value_and_grad(X, t=t, y=y)
    assert rel(val, ref[0]) < 1e-12 and rel(g, ref[1]) < 1e-12


def test_least_squares_on_batches_read_one_at_a_time(tmp_path):
    """Data in batch files (too large for memory, say): each batch is one chunk of a Dask array,
    read when its task runs; the fused pass then sums batch by batch (here on Dask's local
    threads, no cluster) and the fit equals the in-memory one."""
    rng = np.random.default_rng(5)
    sizes = [3000, 2500, 4000, 1500]
    for k, n in enumerate(sizes):
        tb = rng.uniform(0.0, 4.0, n)
        np.save(tmp_path / f"batch{k}.npy", np.stack([tb, 3 * np.exp(-0.7 * tb) + 0.2 * tb
                                                      + 0.01 * rng.standard_normal(n)]))
    load = dask.delayed(np.load)
    cols = [da.concatenate([da.from_delayed(load(tmp_path / f"batch{k}.npy")[j], (n,), float)
                            for k, n in enumerate(sizes)]) for j in (0, 1)]
    a, b, c = sg.params("a b c")
    t, y = sg.data("t y")
    rk = sg.compile_residuals(a * sg.exp(-b * t) + c * t - y)
    with dask.config.set(scheduler="threads"):
        got = sg.least_squares(rk, [1.0, 1.0, 0.0], data={"t": cols[0], "y": cols[1]})
    want = sg.least_squares(rk, [1.0, 1.0, 0.0], data={"t": cols[0].compute(scheduler="sync"),
                                                     "y": cols[1].compute(scheduler="sync")})
    assert got.success and got.nfev == want.nfev
    np.testing.assert_allclose(got.x, want.x, rtol=1e-10)
    np.testing.assert_allclose(got.cov, want.cov, rtol=1e-8)


def test_bad_input_is_named(f, data):
    t, y, *_ = data
    bad = da.where(da.arange(N, chunks=CHUNKS) == 1_234_567, np.nan, y)
    with pytest.raises(ValueError, match=r"data column 'y' has a non-finite value \(nan\) at "
                                         r"row 1234567: clean or drop"):
        f.value(X, t=t, y=bad)
    with pytest.raises(ValueError, match="'y' has 10 samples but 't' has 2000000"):
        f.value(X, t=t, y=da.ones(10))
    with pytest.raises(TypeError, match="batch= is not available with Dask columns"):
        f.value(X, t=t, y=y, batch=slice(0, 10))
    with pytest.raises(TypeError, match="missing data column 'y'"):
        f.value(X, t=t)


def test_unsupported_kernels_say_what_is_supported():
    w, i = sg.params("w"), sg.index("i")
    t = sg.data("t")
    W = sg.params("W", shape=(2,))
    Xa = sg.data("Xa", shape=(2,))
    loss = sg.sqrt(sg.mean((W @ Xa) ** 2))  # not affine in its mean: the array code refuses
    arr = sg.compile(loss, fuse=False)
    with pytest.raises(NotImplementedError, match=r"array loss|not affine"):
        arr.bind(Xa=da.ones((10, 2)))
    fused = sg.compile(loss)  # one sample loop: the outer sqrt runs on the client
    x = np.array([0.5, -2.0])
    assert fused.bind(Xa=da.ones((10, 2), chunks=4)).value(x) == pytest.approx(1.5, rel=1e-14)
    u = sg.params("u", indexed=True)  # an index sum in a data term
    vec = sg.compile(sg.mean((w - t) ** 2) * sg.sum(u[i] ** 2, (i, 0, u.length)))
    with pytest.raises(NotImplementedError, match="reads data and sums over an index"):
        vec.bind(t=da.ones(10))


def test_client_memory_stays_flat_over_30_million_samples(client, f):
    t, y = columns(30_000_000, 1_000_000, seed=11)  # lazily generated on the workers
    f.value_and_grad(X, t=t[:2_000_000], y=y[:2_000_000])  # warm: graphs, modules, comms
    growth, (val, g) = _peak_rss_growth(lambda: f.value_and_grad(X, t=t, y=y))
    assert np.isfinite(val) and np.isfinite(g).all()
    assert growth < 100e6, f"client peak RSS grew by {growth / 1e6:.0f} MB"


def _peak_rss_growth(fn):
    """(peak RSS of this process during fn minus RSS before, fn's result), sampled every 2 ms
    (the 480 MB of columns would show as one jump)."""
    import psutil

    proc = psutil.Process()
    base = proc.memory_info().rss
    peak = [base]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.002)

    th = threading.Thread(target=sample)
    th.start()
    try:
        out = fn()
    finally:
        done.set()
        th.join()
    return max(peak[0], proc.memory_info().rss) - base, out


def test_a_worker_killed_mid_call_does_not_change_the_result(client, f, data):
    t, y, tn, yn = data
    slow = t.map_blocks(lambda b: (time.sleep(0.15), b)[1], dtype=t.dtype)  # ~1.2 s per call
    ref = f.value_and_grad(X, t=tn, y=yn)
    pids = list(client.run(os.getpid).values())
    result, done = {}, threading.Event()

    def call():
        result["out"] = f.value_and_grad(X, t=slow, y=y)
        done.set()

    th = threading.Thread(target=call)
    th.start()
    time.sleep(0.5)
    assert not done.is_set(), "the call ended before the kill: make it slower"
    os.kill(pids[0], signal.SIGKILL)
    th.join(timeout=120)
    val, g = result["out"]
    assert rel(val, ref[0]) < 1e-12 and rel(g, ref[1]) < 1e-12
    assert pids[0] not in client.run(os.getpid).values()  # it really died (nanny restarted it)


def test_a_holder_runs_its_chunks_on_the_workers_threads():
    """On a worker with 2 threads the holder computes its chunks side by side (the kernels
    release the GIL) and sums them in chunk order: the in-memory numbers."""
    a, b = sg.params("a b")
    tt, yy = sg.data("t y")
    g = sg.compile(sg.log(sg.mean((a * tt + b - yy) ** 2)))
    rk = sg.compile_residuals(a * tt + b - yy)
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2,
                            dashboard_address=":0"):  # any free port: the fixture has 8787
        t, y = dask.persist(*columns(400_000, 50_000, seed=5))
        tn, yn = t.compute(), y.compute()
        fb = g.bind(t=t, y=y).persist()
        assert fb.chunks.resident is not None
        val, grad = fb.value_and_grad([0.3, 0.2])
        A, gv, rtr = rk.bind(t=t, y=y).persist().normal(np.array([0.3, 0.2]))
    ref = g.value_and_grad([0.3, 0.2], t=tn, y=yn)
    assert rel(val, ref[0]) < 1e-12 and rel(grad, ref[1]) < 1e-12
    A0, g0, rtr0 = rk.normal(np.array([0.3, 0.2]), t=tn, y=yn)
    assert rel(A, A0) < 1e-12 and rel(gv, g0) < 1e-12 and rel(rtr, rtr0) < 1e-12
