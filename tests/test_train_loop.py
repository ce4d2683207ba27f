"""The training loop (issue 12): the compiled loop and the Python loop give the same numbers for
every optimizer, full batch and mini-batch, with a schedule; a custom rule compiles; a custom
(init, update) pair runs in Python; the compiled loop is loaded from the on-disk cache by a second
process."""

from __future__ import annotations

import json
import subprocess
import textwrap
import threading
import time

import numpy as np
import pytest

import symgrad as sg
from symgrad import optim, schedules

ALL = ["sgd", "momentum", "nesterov", "adam", "rmsprop", "adagrad"]
LR = {"sgd": 0.05, "momentum": 0.02, "nesterov": 0.02, "adam": 0.05, "rmsprop": 0.01,
      "adagrad": 0.2}


@pytest.fixture(scope="module")
def quad():
    """mean((a t^2 + b t + c - y)^2) with 203 samples (a partial last batch of 8 at size 15)."""
    a, b, c = sg.params("a b c")
    t, y = sg.data("t y")
    rng = np.random.default_rng(12)
    tt = np.linspace(-2.0, 2.0, 203)
    data = {"t": tt, "y": 0.5 * tt**2 - tt + 2.0 + 0.1 * rng.normal(size=tt.size)}
    return sg.compile(sg.mean((a * t**2 + b * t + c - y) ** 2)), data


def _same(c, p):
    assert c.compiled and not p.compiled
    assert (c.status, c.nit, c.nfev, c.message) == (p.status, p.nit, p.nfev, p.message)
    np.testing.assert_allclose(c.x, p.x, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(c.jac, p.jac, rtol=1e-12, atol=1e-300)
    assert c.fun == pytest.approx(p.fun, rel=1e-12, abs=1e-300)
    for name in ("step", "x", "loss", "lr", "grad_norm", "epoch_loss"):
        np.testing.assert_allclose(getattr(c.history, name), getattr(p.history, name),
                                   rtol=1e-12, atol=1e-300, err_msg=name)
    # one definition of the norm (symgrad.train.norm): the same bits, not only close
    if np.array_equal(c.jac, p.jac):
        np.testing.assert_array_equal(c.history.grad_norm, p.history.grad_norm)


# sgd, momentum (full batch) and adam (mini-batch) stay quick; every other optimizer and batch
# (a compiled loop each, 1-2 s of compile, cold) runs in the slow set.
QUICK_LOOPS = (("sgd", None), ("momentum", None), ("adam", 15))


@pytest.mark.parametrize("name, batch_size", [
    (n, b) if (n, b) in QUICK_LOOPS else pytest.param(n, b, marks=pytest.mark.slow)
    for n in ALL for b in (None, 15)])
def test_compiled_equals_python_every_optimizer_full_and_minibatch(quad, name, batch_size):
    f, data = quad
    opt = getattr(optim, name)(lr=schedules.time_decay(LR[name], decay=0.01))
    kw = dict(optimizer=opt, data=data, record_every=3, seed=5)
    kw.update(steps=120) if batch_size is None else kw.update(batch_size=batch_size, epochs=4)
    c = sg.minimize(f, [0.0, 0.0, 0.0], compiled=True, **kw)
    p = sg.minimize(f, [0.0, 0.0, 0.0], compiled=False, **kw)
    _same(c, p)
    if batch_size is not None:
        assert len(c.history.epoch_loss) == 4 and c.nit == 4 * 14


def test_minibatch_stopping_rules_agree(quad):
    f, data = quad
    kw = dict(data=data, batch_size=15, epochs=200, seed=1)
    tol = dict(optimizer=optim.momentum(0.01), tol=1e-3, **kw)
    c, p = (sg.minimize(f, [0.0] * 3, compiled=m, **tol) for m in (True, False))
    _same(c, p)
    assert c.status == "converged" and "epoch" in c.message
    div = dict(optimizer=optim.sgd(5.0), **kw)
    c, p = (sg.minimize(f, [0.0] * 3, compiled=m, **div) for m in (True, False))
    _same(c, p)
    assert c.status == "diverged" and np.isfinite(c.x).all()


def sign_rule(x, g, lr, k):
    """A custom rule at module level: importable, so its compiled loop is cached."""
    return (x - lr * np.sign(g),)


def clipped_momentum_rule(x, g, v, lr, k, beta, clip):
    v = beta * v - lr * np.minimum(np.maximum(g, -clip), clip)
    return x + v, v


@pytest.mark.parametrize("record_every", [0, 1])
def test_a_non_finite_gradient_stops_both_loops_alike(record_every):
    """Without gtol or a history record the compiled loop skips the gradient-norm pass and
    catches a non-finite gradient in the update: same status, step, message and x."""
    a, b = sg.params("a b")
    f = sg.compile(sg.sqrt(a) + (b - 1)**2)  # finite at a = 0, its derivative is not
    runs = [sg.minimize(f, [0.0, 3.0], optimizer=optim.momentum(0.1), steps=5, compiled=c,
                        record_every=record_every) for c in (True, False)]
    for r in runs:
        assert r.status == "diverged" and r.nit == 0 and "gradient is not finite" in r.message
        np.testing.assert_array_equal(r.x, [0.0, 3.0])
    assert runs[0].message == runs[1].message


# Each rule compiles its own loops: sign_sgd (a rule with a schedule, as every optimizer above
# has) runs in the slow set; the rule with state and the lambda stay quick.
@pytest.mark.parametrize("make", [
    pytest.param(lambda: optim.from_rule("sign_sgd", sign_rule,
                                         lr=schedules.time_decay(0.05, 0.01)),
                 marks=pytest.mark.slow),
    lambda: optim.from_rule("clipped", clipped_momentum_rule, lr=0.01, state=1, beta=0.9,
                            clip=1.0),
    lambda: optim.from_rule("lambda", lambda x, g, lr, k: (x - lr * g,), lr=0.05),
])
def test_a_custom_rule_runs_in_both_loops(quad, make):
    f, data = quad
    opt = make()
    for kw in ({"steps": 200}, {"batch_size": 20, "epochs": 3, "seed": 0}):
        c = sg.minimize(f, [0.0] * 3, optimizer=opt, data=data, compiled=True, **kw)
        p = sg.minimize(f, [0.0] * 3, optimizer=opt, data=data, compiled=False, **kw)
        _same(c, p)
        assert c.fun < p.history.loss[0]


def test_a_rules_hyperparameters_bind_by_name():
    """``clip=..., beta=...`` for ``rule(..., beta, clip)`` was passed positionally: swapped."""
    a = optim.from_rule("c", clipped_momentum_rule, lr=0.01, state=1, clip=1.0, beta=0.9)
    b = optim.from_rule("c", clipped_momentum_rule, lr=0.01, state=1, beta=0.9, clip=1.0)
    assert list(a.hyper.items()) == list(b.hyper.items()) == [("beta", 0.9), ("clip", 1.0)]
    x, g = np.array([1.0, -2.0]), np.array([3.0, 0.5])
    np.testing.assert_array_equal(a.update(g, a.init(x), x, 0)[0], [0.99, -2.005])
    # names that are not the rule's parameters: the order given (as documented)
    c = optim.from_rule("c", clipped_momentum_rule, lr=0.01, state=1, m=0.9, c=1.0)
    np.testing.assert_array_equal(c.update(g, c.init(x), x, 0)[0], [0.99, -2.005])


def test_a_hand_written_pair_runs_in_python_and_compiled_true_says_why(quad):
    f, data = quad
    opt = optim.Optimizer("mine", lambda x: (), lambda g, s, x, k: (x - 0.05 * g, s),
                          schedules.constant(0.05))
    res = sg.minimize(f, [0.0] * 3, optimizer=opt, data=data, steps=3000)
    assert not res.compiled and res.status == "completed"
    with pytest.raises(ValueError, match=r"hand-written \(init, update\) pair.*from_rule"):
        sg.minimize(f, [0.0] * 3, optimizer=opt, data=data, steps=5, compiled=True)


def test_from_rule_checks_its_arguments():
    with pytest.raises(TypeError, match="rule must be a function"):
        optim.from_rule("x", 3, lr=0.1)
    with pytest.raises(ValueError, match="state"):
        optim.from_rule("x", sign_rule, lr=0.1, state=-1)


# -m slow (an array kernel and its loops: 10 s of compile, cold; test_arrays_api keeps both loops
# quick)
@pytest.mark.slow
def test_array_kernels_run_in_the_compiled_loop_full_batch_and_minibatch():
    """The compiled loop passes an array kernel each batch's rows (gathered, as the kernel's
    own batch= does): the same numbers as the Python loop, index columns included."""
    w = sg.params("w", shape=(3,))
    X = sg.data("X", shape=(3,))
    y = sg.data("y")
    f = sg.compile(sg.mean((X @ w - y) ** 2))
    rng = np.random.default_rng(0)
    data = {"X": rng.normal(size=(50, 3)), "y": rng.normal(size=50)}
    for kw in (dict(optimizer=optim.adam(0.05), data=data, steps=100, record_every=5),
               dict(optimizer=optim.momentum(0.05), data=data, batch_size=8, epochs=3, seed=2)):
        c = sg.minimize(f, np.zeros(3), compiled=True, **kw)
        _same(c, sg.minimize(f, np.zeros(3), compiled=False, **kw))
        assert c.compiled
    U, V = sg.params("U", shape=(6, 2)), sg.params("V", shape=(5, 2))
    i, j, r = sg.data("i", dtype=int), sg.data("j", dtype=int), sg.data("r")
    mf = sg.compile(sg.mean((U[i] @ V[j] - r) ** 2))
    obs = {"i": rng.integers(0, 6, 40), "j": rng.integers(0, 5, 40), "r": rng.normal(size=40)}
    kw = dict(optimizer=optim.sgd(0.1), data=obs, batch_size=7, epochs=4, seed=1)
    _same(sg.minimize(mf, mf.init(0), compiled=True, **kw),
          sg.minimize(mf, mf.init(0), compiled=False, **kw))


CHILD = textwrap.dedent("""
    import json, time
    import numpy as np
    import symgrad as sg
    from symgrad.train import compiled as C
    t0 = time.perf_counter()
    a, b, c = sg.params("a b c"); t, y = sg.data("t y")
    f = sg.compile(sg.mean((a*t**2 + b*t + c - y)**2))
    tt = np.linspace(-1, 1, 100)
    res = sg.minimize(f, [0.0, 0.0, 0.0], optimizer=sg.optim.adam(0.05), steps=50,
                      data={"t": tt, "y": 2*tt}, batch_size=16, seed=0)
    (loop, cached), = C._LOOPS.values()
    print(json.dumps({"compiled": res.compiled, "cached": cached, "x": res.x.tolist(),
                      "hits": sum(loop.stats.cache_hits.values()),
                      "seconds": time.perf_counter() - t0}))
""")


def test_the_compiled_loop_is_loaded_from_disk_by_a_second_process(tmp_path, python,
                                                                   subprocess_env):
    env = subprocess_env(SYMGRAD_CACHE_DIR=str(tmp_path / "cache"))

    def child():
        out = subprocess.run([python, "-c", CHILD], env=env, cwd=tmp_path, capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])

    first, second = child(), child()
    # issue 25: the default compiles the loop in the first process (even for a short run) and
    # a second process loads it from Numba's cache
    assert first["compiled"] and first["cached"]
    assert second["compiled"] and second["cached"] and second["hits"] >= 1
    np.testing.assert_array_equal(second["x"], first["x"])


# --------------------------------------------------------------------------- Ctrl-C

INTERRUPTED = textwrap.dedent("""
    import json, signal, sys, threading, time
    # Python's default handler even when the process was started with SIGINT ignored (a
    # background job of a shell without job control, as a CI runner may start it)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    import numpy as np
    import symgrad as sg
    a, b, c = sg.params("a b c")   # the quad fixture's loss: its loops are cached already
    t, y = sg.data("t y")
    f = sg.compile(sg.mean((a * t**2 + b * t + c - y) ** 2))
    tt = np.linspace(-2.0, 2.0, 203)
    kw = dict(optimizer=sg.optim.momentum(1e-6), data={"t": tt, "y": 1 + tt}, record_every=0,
              compiled=sys.argv[1] == "1")
    sg.minimize(f, [0.0, 0.0, 0.0], steps=2, **kw)  # compile / load

    def ready():  # the run has started once its SIGINT handler is in place
        while signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            time.sleep(0.001)
        print("ready", flush=True)

    threading.Thread(target=ready, daemon=True).start()
    res = sg.minimize(f, [0.0, 0.0, 0.0], steps=10**11, **kw)
    t1 = time.perf_counter()
    ref = sg.minimize(f, [0.0, 0.0, 0.0], steps=res.nit, **kw)
    print(json.dumps({"status": res.status, "success": res.success, "nit": res.nit,
                      "compiled": res.compiled, "message": res.message, "t_end": t1,
                      "same": bool(np.array_equal(res.x, ref.x) and res.fun == ref.fun)}))
""")


@pytest.mark.parametrize("compiled", [True, False])
def test_ctrl_c_returns_the_iterate_reached(python, subprocess_env, compiled):
    """Issue 24 #17: SIGINT ends a run within about a second with status 'interrupted' and the
    iterate reached (the same x as a run of that many steps), in both loops."""
    import signal

    proc = subprocess.Popen([python, "-c", INTERRUPTED, "1" if compiled else "0"],
                            env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    watchdog = threading.Timer(120, proc.kill)  # a run that never installs its handler
    watchdog.start()
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        t_sig = time.perf_counter()
        out, err = proc.communicate(timeout=120)
    finally:
        watchdog.cancel()
        proc.kill()
    assert proc.returncode == 0, err
    r = json.loads(out.strip().splitlines()[-1])
    assert r["status"] == "interrupted" and not r["success"] and r["compiled"] == compiled
    assert r["nit"] > 0 and "interrupted (Ctrl-C) at step" in r["message"]
    assert r["same"]
    assert r["t_end"] - t_sig < 2.0  # perf_counter is system-wide on Linux (CLOCK_MONOTONIC)


# --------------------------------------------------------------------------- mixed data


@pytest.fixture(scope="module")
def mixed() -> list:
    """Losses mixing per-sample columns with whole arrays: a samples=False array (array kernel)
    and indexed=True columns (scalar kernel), with data of different lengths."""
    rng = np.random.default_rng(3)
    n = 50
    w = sg.params("w", shape=(3,))
    X, y = sg.data("X", shape=(3,)), sg.data("y")
    P = sg.data("P", shape=(3,), samples=False)
    fa = sg.compile(sg.mean((X @ w - y) ** 2) + sg.sum((w - P) ** 2))
    Xd = rng.normal(size=(n, 3))
    da = {"X": Xd, "y": Xd @ np.array([1.0, 2.0, 3.0]), "P": np.array([0.5, -0.5, 0.25])}
    a, x, i = sg.params("a"), sg.params("x", indexed=True), sg.index("i")
    yi, t, z = sg.data("yi", indexed=True), *sg.data("t z")
    fs = sg.compile(sg.mean((a * t - z) ** 2) + sg.sum((x[i] - yi[i]) ** 2, (i, 0, x.length)))
    td = rng.normal(size=n)
    ds = {"t": td, "z": 2 * td, "yi": np.arange(4.0)}
    return [(fa, da, np.zeros(3)), (fs, ds, np.zeros(5))]


@pytest.mark.parametrize("which", [0, pytest.param(1, marks=pytest.mark.slow)])
def test_minimize_accepts_whole_arrays_beside_per_sample_columns(mixed, which):
    """Issue 24 #20: minimize(data=...) refused these ("data columns must have the same number
    of samples"); only the per-sample columns are batched, in both loops, as a hand loop over
    f.value_and_grad(x, batch=idx, **data) does."""
    f, data, x0 = mixed[which]
    lr, bs, seed = 0.05, 16, 4
    n = len(data["y" if "y" in data else "t"])
    for kw in ({"steps": 20}, {"batch_size": bs, "epochs": 2, "seed": seed}):
        p = sg.minimize(f, x0, optimizer=optim.sgd(lr), data=data, compiled=False, **kw)
        if "batch_size" in kw:  # (the full-batch compiled loop has nothing new to show here)
            c = sg.minimize(f, x0, optimizer=optim.sgd(lr), data=data, **kw)
            _same(c, p)
        x = x0.copy()
        if "batch_size" in kw:
            rng = np.random.default_rng(seed)
            for _ in range(2):
                perm = rng.permutation(n)
                for lo in range(0, n, bs):
                    x = x - lr * f.value_and_grad(x, batch=perm[lo:lo + bs], **data)[1]
        else:
            for _ in range(20):
                x = x - lr * f.value_and_grad(x, **data)[1]
        np.testing.assert_allclose(p.x, x, rtol=1e-12, atol=1e-14)
