"""What the first call of a kernel compiles (the cold build): an array kernel's core with one
product helper per dtype, and no separate function for a kink helper that only compares; a
scalar kernel's Hessian reusing the HVP compiled for the caller's own output."""

from __future__ import annotations

import json
import re
import subprocess
import textwrap

import numpy as np
import pytest

import symgrad as sg
from symgrad.build import cache

H, D, K, N = 5, 3, 4, 7


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    """A relu/softmax network (its gradient multiplies C by transposed, C by C and transposed by
    C operands) built in an empty cache, after one value_and_grad call, with its data and
    results."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SYMGRAD_CACHE_DIR", str(tmp_path_factory.mktemp("cold")))
        mp.setattr(cache, "_USABLE", {})
        return _built()


def _built():
    W1, b1 = sg.params("W1", shape=(H, D)), sg.params("b1", shape=(H,))
    W2, b2 = sg.params("W2", shape=(K, H)), sg.params("b2", shape=(K,))
    X, Y = sg.data("X", shape=(D,)), sg.data("Y", shape=(K,))
    loss = sg.mean(-sg.sum(Y * sg.log_softmax(W2 @ sg.relu(W1 @ X + b1) + b2), axis=0))
    f = sg.compile(loss, [W1, b1, W2, b2], fuse=False)
    rng = np.random.default_rng(1)
    x = f.init(0) + 0.1 * rng.standard_normal(f.n_params)
    data = {"X": rng.standard_normal((N, D)), "Y": np.eye(K)[rng.integers(0, K, N)]}
    value, g = f.value_and_grad(x, **data)
    return f, x, data, value, g


def _module(f) -> dict:
    return f.jit.value_and_grad.py_func.__globals__


@pytest.mark.slow  # -m slow (a second process: 5 s, cold)
def test_products_compile_once_per_dtype(mlp):
    """Three operand layouts, one compiled ``_gemm_any`` (each layout compiled anew cost about
    0.25 s of a 784-512-10 MLP's 3 s cold build)."""
    assert [str(s) for s in _module(mlp[0])["_gemm_any"].signatures] == [
        "(Array(float64, 2, 'A', False, aligned=True), Array(float64, 2, 'A', False, "
        "aligned=True), Array(float64, 2, 'C', False, aligned=True))"]


def test_array_and_model_modules_share_one_compiled_product(mlp):
    """Every array or model module of the cache calls one ``_gemm_any`` (a cached module of its
    own, compiled once per dtype), not its own copy (about 0.4 s of each cold build), and every
    module one ``_overlap``; the module's text still defines the helpers, so it stands alone."""
    from symgrad.build.shared import shared_module

    f = mlp[0]
    w = sg.params("w", shape=(D,))
    X = sg.data("X", shape=(D,))
    with pytest.MonkeyPatch.context() as mp:  # the fixture's cache, where its product lives
        mp.setenv("SYMGRAD_CACHE_DIR", str(f.path.parent))
        other = sg.compile(sg.mean((X @ w) ** 2), [w], fuse=False)
        model = sg.compile(X @ w, [w])
        a, t = sg.params("a"), sg.data("t")
        scalar, residual = sg.compile(sg.mean((a * t) ** 2)), sg.compile_residuals(a * t - 1)
        shared = shared_module()
    assert "def _gemm_any(" in f.source and "def _gemm_any(" in other.source
    assert _module(f)["_gemm_any"] is shared._gemm_any
    assert _module(other)["_gemm_any"] is shared._gemm_any
    assert model.jit.predict.py_func.__globals__["_gemm_any"] is shared._gemm_any
    Xd = np.random.default_rng(2).standard_normal((N, D))
    np.testing.assert_allclose(other.value(np.ones(D), X=Xd), np.mean(Xd.sum(1) ** 2),
                               rtol=1e-13)
    assert len(shared._gemm_any.signatures) == 1  # the MLP's, reused by the second loss
    for m in (_module(f), _module(other), scalar.module.__dict__, residual.module.__dict__):
        assert m["_overlap"] is shared._overlap  # each module's text still defines its own
    assert "def _overlap(" in scalar.source and "def _overlap(" in residual.source


SCALAR_CHILD = textwrap.dedent("""
    import json, warnings
    import numpy as np
    import symgrad as sg
    warnings.simplefilter("error")  # a refused cache file is a CacheWarning: fail on it
    a, b = sg.params("a b")
    t, y = sg.data("t y")
    f = sg.compile(sg.mean((a * sg.exp(-b * t) - y) ** 2))
    rk = sg.compile_residuals(a * sg.exp(-b * t) - y)
    T = np.linspace(0.0, 2.0, 9)
    x, data = np.array([1.5, 0.7]), dict(t=T, y=np.exp(-T))
    value, g = f.value_and_grad(x, **data)
    A, bv, s = rk.normal(x, **data)
    stats = [f.jit.value_and_grad.stats, rk.module._normal_run.stats]
    print(json.dumps({"value": value, "g": g.tolist(), "A": A.tolist(), "s": s,
                      "shared": [m.module._overlap.py_func.__module__.startswith("sg_shared_")
                                 for m in (f, rk)],
                      "hits": [sum(st.cache_hits.values()) for st in stats],
                      "misses": [sum(st.cache_misses.values()) for st in stats]}))
""")


@pytest.mark.slow  # two processes: 10 s, cold (the array modules' second process stays quick)
def test_scalar_and_residual_modules_share_one_compiled_overlap_check(tmp_path, python,
                                                                      subprocess_env):
    """Every cached module calls the shared ``_overlap`` (0.3-0.6 s of each cold build when
    compiled per module); a second process loads the drivers that call it from disk."""
    runs = []
    for _ in range(2):
        out = subprocess.run([python, "-c", SCALAR_CHILD], capture_output=True, text=True,
                             timeout=300, env=subprocess_env(SYMGRAD_CACHE_DIR=str(tmp_path)))
        assert out.returncode == 0, out.stderr
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    first, second = runs
    assert first["shared"] == second["shared"] == [True, True]
    assert first["misses"] == [1, 1] and second == {**first, "hits": [1, 1], "misses": [0, 0]}


CHILD = textwrap.dedent("""
    import json, warnings
    import numpy as np
    import symgrad as sg
    warnings.simplefilter("error")  # a refused cache file is a CacheWarning: fail on it
    H, D, K, N = %d, %d, %d, %d
    W1, b1 = sg.params("W1", shape=(H, D)), sg.params("b1", shape=(H,))
    W2, b2 = sg.params("W2", shape=(K, H)), sg.params("b2", shape=(K,))
    X, Y = sg.data("X", shape=(D,)), sg.data("Y", shape=(K,))
    loss = sg.mean(-sg.sum(Y * sg.log_softmax(W2 @ sg.relu(W1 @ X + b1) + b2), axis=0))
    f = sg.compile(loss, [W1, b1, W2, b2], fuse=False)
    x, data = np.array(%s), {k: np.array(v) for k, v in %s.items()}
    value, g = f.value_and_grad(x, **data)
    vg = f.jit.value_and_grad
    print(json.dumps({"value": value, "g": g.tolist(), "hits": sum(vg.stats.cache_hits.values()),
                      "misses": sum(vg.stats.cache_misses.values())}))
""")


def test_a_second_process_loads_the_cores_that_call_the_shared_product(mlp, python,
                                                                        subprocess_env):
    """Numba's cache of a core names the shared product's module; a new process imports that
    module first, so it loads the core from disk instead of refusing the cache and compiling."""
    f, x, data, value, g = mlp
    child = CHILD % (H, D, K, N, x.tolist(), {k: v.tolist() for k, v in data.items()})
    out = subprocess.run([python, "-c", child], capture_output=True, text=True, timeout=300,
                         env=subprocess_env(SYMGRAD_CACHE_DIR=str(f.path.parent)))
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["hits"] == 1 and got["misses"] == 0
    assert got["value"] == value and got["g"] == g.tolist()


def test_comparing_kink_helpers_are_inlined(mlp):
    """relu and its derivative (Heaviside) go into the cores' own code: never compiled (nor
    cached) as functions of their own, about 0.05 s each of a cold build."""
    mod = _module(mlp[0])
    assert mod["_relu"].signatures == [] and mod["_heaviside"].signatures == []


def test_inlined_helpers_give_the_numpy_numbers(mlp):
    """The value and gradient with the inlined helpers against NumPy's backprop."""
    f, x, data, value, g = mlp
    p = f.unpack(x)
    Xd, Yd = data["X"], data["Y"]
    z = Xd @ p["W1"].T + p["b1"]
    a = np.maximum(z, 0.0)
    lg = a @ p["W2"].T + p["b2"]
    m = lg.max(axis=1, keepdims=True)
    lse = m + np.log(np.exp(lg - m).sum(axis=1, keepdims=True))
    want = -(Yd * (lg - lse)).sum() / N
    d = (np.exp(lg - lse) * Yd.sum(axis=1, keepdims=True) - Yd) / N
    da = (d @ p["W2"]) * (z > 0)
    grads = {"W1": da.T @ Xd, "b1": da.sum(0), "W2": d.T @ a, "b2": d.sum(0)}
    assert value == pytest.approx(want, rel=1e-13)
    for name, gw in grads.items():
        np.testing.assert_allclose(f.unpack(g)[name], gw, rtol=1e-12, atol=1e-15, err_msg=name)


def test_hessian_reuses_the_hvp_of_a_contiguous_out(tmp_path, monkeypatch):
    """The Hessian called the HVP on columns ``H[:, j]`` (strided), which compiled the whole HVP
    a second time (about 0.5 s of a cold ``f.hessian``); rows ``H[j]`` are contiguous and the
    symmetrised Hessian is the same."""
    monkeypatch.setenv("SYMGRAD_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(cache, "_USABLE", {})
    a, b = sg.params("a b")
    t, y = sg.data("t y")
    f = sg.compile(sg.mean((a * sg.exp(-b * t) + a * b * t - y) ** 2))
    rng = np.random.default_rng(3)
    data = {"t": rng.uniform(0, 2, 9), "y": rng.standard_normal(9)}
    x = np.array([0.7, -0.4])
    hv = f.hvp(x, np.array([0.0, 1.0]), **data)
    H = f.hessian(x, **data)
    assert len(f.jit.hvp.signatures) == 1
    assert np.array_equal(H, H.T) and np.array_equal(H[:, 1], hv)


def test_serial_and_threaded_calls_share_one_compiled_sample_loop(tmp_path, monkeypatch):
    """The serial driver called the sample loop with a literal 0, which Numba compiles apart
    from the int64 the prange driver (and Dask workers) pass: the module's largest function
    compiled twice for a loss called below and above the parallel threshold."""
    monkeypatch.setenv("SYMGRAD_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(cache, "_USABLE", {})
    a, b = sg.params("a b")
    t, y = sg.data("t y")
    loss = sg.mean((a * t + b - y) ** 2)
    serial, threaded = sg.compile(loss, parallel=False), sg.compile(loss, parallel=True)
    rng = np.random.default_rng(4)
    data = {"t": rng.standard_normal(50), "y": rng.standard_normal(50)}
    x = np.array([0.3, -0.2])
    v1, g1 = serial.value_and_grad(x, **data)
    v2, g2 = threaded.value_and_grad(x, **data)
    acc_g = serial.jit.value_and_grad.py_func.__globals__["_acc_g"]
    assert threaded.path == serial.path and len(acc_g.signatures) == 1
    assert v1 == pytest.approx(v2, rel=1e-14) and np.allclose(g1, g2, rtol=1e-14, atol=0)


#: A slice assignment from an array (``H[:, j] = col``, ``g[a:b] = t.ravel()``): Numba's CPU
#: target formats its shape-mismatch message with str() of ints, so the first function in a
#: process that holds one compiled Numba's unicode machinery (3-4 s on a 2-core AMD EPYC).
ARRAY_SLICE_STORE = re.compile(r"\w+\[[^\]\n]*:[^\]\n]*\] = (?!0\.0\b|numba\.)")


def test_no_generated_function_stores_an_array_into_a_slice(mlp):
    """The first Hessian of an array loss took 10.5 s instead of 5.8 s (3.5 s for one such
    line); its column and a gradient that is a parameter itself are now written element by
    element, with the same numbers."""
    u, v = sg.params("u", shape=(5,)), sg.params("v", shape=(5,))
    a, b = sg.params("a b")
    t, y = sg.data("t y")
    f = sg.compile(sg.sum(u * v), [u, v], fuse=False)  # each gradient is the other parameter
    sources = {"array": f.source, "mlp": mlp[0].source,
               "scalar": sg.compile(sg.mean((a * t + b - y) ** 2)).source,
               "residual": sg.compile_residuals(a * sg.exp(-b * t) - y).source}
    for kind, src in sources.items():
        code = "\n".join(line.split("#", 1)[0] for line in src.splitlines())  # not comments
        assert not ARRAY_SLICE_STORE.findall(code), kind
    assert "_flat0 = p_v.ravel()" in f.source
    x = np.arange(10.0)
    value, g = f.value_and_grad(x)
    assert value == x[:5] @ x[5:] and np.array_equal(g, np.r_[x[5:], x[:5]])
    np.testing.assert_array_equal(f.hessian(x), np.block([[np.zeros((5, 5)), np.eye(5)],
                                                          [np.eye(5), np.zeros((5, 5))]]))


@pytest.mark.slow  # the network's Hessian and HVP compile: 5-10 s of the quick suite
def test_the_networks_hessian_written_element_by_element_is_its_hvp(mlp):
    net, xn, data = mlp[:3]
    H = net.hessian(xn, **data)
    assert np.array_equal(H, H.T)
    np.testing.assert_allclose(H @ xn, net.hvp(xn, xn, **data), rtol=1e-12, atol=1e-12)
