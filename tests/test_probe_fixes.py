"""Regression tests for user-facing defects found by probing the newest paths as a user."""

from __future__ import annotations

import numpy as np
import pytest

import symgrad as sg


@pytest.fixture(scope="module")
def model32():
    """A float32 array model whose Jacobian is non-finite when a datum reads as inf."""
    w, X = sg.params("w", shape=(2,)), sg.data("X", shape=(2,))
    return sg.compile(sg.exp(-(X @ w)), dtype="float32")


def test_float32_model_names_a_datum_beyond_float32_not_inf(model32):
    # 1e39 is finite as passed; the float32 cast reads it as inf. The error used to call it
    # "a non-finite value (inf)" and advise cleaning it, instead of naming the value and
    # saying to rescale or compile float64 (as every float32 loss kernel does).
    X = np.abs(np.random.default_rng(0).normal(size=(10, 2))) + 0.1
    X[3, 1] = 1e39
    with pytest.raises(ValueError, match=r"'X' has 1e\+39 at row 3, entry 1, beyond the range"):
        model32.jacobian(np.ones(2), X=X)
    with pytest.raises(ValueError, match=r"'X' has 1e\+39 at row 3, entry 1, beyond the range"):
        model32.jacobian(np.ones(2), X=X, batch_size=4)
    X[3, 1] = np.nan  # a real NaN is still named as such
    with pytest.raises(ValueError, match=r"non-finite value \(nan\) at row 3, entry 1"):
        model32.jacobian(np.ones(2), X=X)


def test_float32_model_names_a_datum_beyond_float32_on_every_path(model32):
    da = pytest.importorskip("dask.array")
    X = np.abs(np.random.default_rng(1).normal(size=(12, 2))) + 0.1
    X[7, 0] = -2e39
    with pytest.raises(ValueError, match=r"'X' has -2e\+39 at row 7, entry 0, beyond the range"):
        model32.jacobian(np.ones(2), X=da.from_array(X, chunks=(5, 2)))
    # a model with a branch scans its data on every call: the same name, before the run
    w, Z = sg.params("w", shape=(2,)), sg.data("Z", shape=(2,))
    kinked = sg.compile(sg.relu(Z @ w) + sg.max(Z, axis=0), dtype="float32")
    with pytest.raises(ValueError, match=r"'Z' has -2e\+39 at row 7, entry 0, beyond the range"):
        kinked(np.ones(2), Z=X)


@pytest.fixture(scope="module")
def line_fits():
    a, b = sg.params("a b")
    t, y = sg.data("t y")
    loss = sg.mean((a * t + b - y) ** 2)
    rng = np.random.default_rng(2)
    data = {"t": rng.normal(size=30), "y": rng.normal(size=30)}
    return sg.compile(loss), sg.compile(loss, dtype="float32"), data


def test_check_grad_complex_on_float32_says_float32_not_non_analytic(line_fits):
    # The loss is analytic; the float32 kernel has no complex evaluation. The refusal used to
    # say the loss had Abs/Max/relu and to use richardson (which a float32 value fails).
    _, f32, data = line_fits
    with pytest.raises(ValueError, match="float32") as err:
        sg.check_grad(f32, [1.0, 2.0], data=data, method="complex")
    assert "Abs" not in str(err.value) and "richardson" not in str(err.value)
    assert "method='exact'" in str(err.value)


@pytest.mark.parametrize("bad", [{"rtol": -1.0}, {"atol": -1e-9}, {"rtol": float("nan")},
                                 {"atol": float("inf")}, {"rtol": "tight"}])
@pytest.mark.parametrize("check", [sg.check_grad, sg.check_hessian])
def test_checker_refuses_a_bad_tolerance(line_fits, check, bad):
    # A negative (or NaN) tolerance used to make every component fail: a check that could
    # never pass, reported as a failed gradient rather than a bad argument.
    f, _, data = line_fits
    name = next(iter(bad))
    with pytest.raises((ValueError, TypeError), match=name):
        check(f, [1.0, 2.0], data=data, **bad)


def test_value_complex_on_float32_says_float32(line_fits):
    _, f32, data = line_fits
    with pytest.raises(TypeError, match="float32") as err:
        f32.value_complex(np.array([1.0, 2.0], dtype=complex), **data)
    assert "abs/max" not in str(err.value)


@pytest.mark.parametrize("seed", [-1, "abc", 1.5])
@pytest.mark.parametrize("compiled", [None, False])
def test_minimize_names_a_bad_seed(line_fits, seed, compiled):
    # NumPy's "expected non-negative integer" used to surface from the first shuffle, naming
    # neither the argument nor what it takes.
    f, _, data = line_fits
    with pytest.raises(ValueError, match=r"seed must be"):
        sg.minimize(f, [0.0, 0.0], data=data, optimizer=sg.optim.sgd(lr=0.1), batch_size=8,
                    epochs=1, seed=seed, compiled=compiled)


def test_distributed_sgd_names_a_bad_seed(line_fits):
    da = pytest.importorskip("dask.array")
    f, _, data = line_fits
    fb = f.bind(**{k: da.from_array(v, chunks=10) for k, v in data.items()})
    with pytest.raises(ValueError, match=r"seed must be"):
        sg.distributed.sgd(fb, [0.0, 0.0], optimizer=sg.optim.sgd(lr=0.1), steps=2, seed=-1)


@pytest.mark.parametrize("kw", [{"full_output": True}, {"check_finite": False},
                                {"weights": np.ones(20)}, {"data": {}}])
def test_curve_fit_names_itself_for_a_keyword_it_does_not_take(kw):
    # Unknown keywords went on to least_squares, whose TypeError named least_squares() (or
    # said it got 'weights' twice) although the user called curve_fit.
    k = sg.params("k")
    x = sg.data("x")
    xs = np.linspace(0.0, 1.0, 20)
    with pytest.raises(TypeError, match=rf"curve_fit\(\).*'{next(iter(kw))}'"):
        sg.curve_fit(k * x, xs, 2 * xs, [1.0], **kw)
    popt, _ = sg.curve_fit(k * x, xs, 2 * xs, [1.0], method="precise", xtol=1e-10)
    assert abs(popt[0] - 2.0) < 1e-10


def test_data_file_with_a_utf8_bom_reads_its_first_column(tmp_path):
    # Spreadsheets save CSV with a byte-order mark: the first name used to read '\ufefft',
    # and `symgrad fit` then said "'t' is not a column ... did you mean '\ufefft'?".
    from symgrad.datafile import read_data_file

    p = tmp_path / "excel.csv"
    p.write_text("t,y\n1,2\n2,3.5\n", encoding="utf-8-sig")
    cols = read_data_file(p)
    assert list(cols) == ["t", "y"]
    np.testing.assert_array_equal(cols["t"], [1.0, 2.0])


def test_data_file_with_no_rows_says_so(tmp_path):
    # A header without rows was reported as "2 names but 1 columns" (and a NumPy warning).
    import warnings

    from symgrad.datafile import read_data_file

    p = tmp_path / "empty.csv"
    p.write_text("t,y\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="no data rows"):
            read_data_file(p)


@pytest.fixture(scope="module")
def decay_residual():
    a, b, c = sg.params("a b c")
    t, y = sg.data("t y")
    return sg.compile_residuals(a * sg.exp(-b * t) + c - y)


@pytest.mark.parametrize("method", ["lm", "precise", "gn"])
@pytest.mark.parametrize("offset", [0.0, 1e-13, 1e-9])
def test_least_squares_from_an_exact_fit_succeeds(decay_residual, method, offset):
    # Noise-free data and a start at (or next to) the truth: the residuals at x0 are rounding
    # noise, so the stall test measured the rounding-noise gradient against that noise and
    # reported status -2 ("the gradient is not small"), success=False, at the exact answer.
    t = np.linspace(0.0, 4.0, 30)
    truth = np.array([3.0, 0.7, 0.5])
    data = {"t": t, "y": truth[0] * np.exp(-truth[1] * t) + truth[2]}
    fit = sg.least_squares(decay_residual, truth * (1 + offset), data=data, method=method)
    assert fit.success and fit.status > 0, fit.message
    np.testing.assert_allclose(fit.x, truth, rtol=1e-12)


def test_params_given_as_one_string_of_names():
    # sg.params("a b") and the command line's --params "a b" take names in one string, and so
    # did least_squares for a compiled kernel; sg.compile(loss, "b a") said 'b a' was "not a
    # symbol of the loss", and an array loss iterated the string: "parameter ' ' does not
    # appear in the loss".
    a, b = sg.params("a b")
    t, y = sg.data("t y")
    assert sg.compile(sg.mean((a * t + b - y) ** 2), "b a").params == ("b", "a")
    assert sg.compile_residuals(a * t + b - y, params="b, a").params == ("b", "a")
    assert sg.compile(a * t + b, "b a").params == ("b", "a")  # a model
    W, c = sg.params("W", shape=(2,)), sg.params("c")
    X = sg.data("X", shape=(2,))
    assert sg.compile(sg.mean((X @ W + c) ** 2), "c W").params == ("c", "W")
    assert sg.compile(sg.mean((X @ W + c) ** 2), "c W", fuse=False).params == ("c", "W")
    with pytest.raises(sg.ProblemError, match="'q'"):
        sg.compile(sg.mean((a * t + b - y) ** 2), "a q")


def test_float32_array_code_on_dask_names_a_datum_beyond_float32():
    # The chunk kernel cast the block to float32 first and then scanned it: 3.6e39 was named
    # "a non-finite value (-inf)" (after a NumPy overflow warning), with the advice to clean it.
    import warnings

    da = pytest.importorskip("dask.array")
    w, X = sg.params("w", shape=(2,)), sg.data("X", shape=(2,))
    f = sg.compile(sg.mean(sg.exp(-(X @ w))), dtype="float32", fuse=False)
    XX = np.abs(np.random.default_rng(3).normal(size=(40, 2))) + 0.1
    XX[27, 1] = 3.6e39
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(ValueError, match=r"'X' has 3.6e\+39 at row 27, entry 1, beyond"):
            f.value_and_grad(np.ones(2), X=da.from_array(XX, chunks=(10, 2)))


@pytest.mark.parametrize("metric", [sg.metrics.accuracy, sg.metrics.confusion_matrix,
                                    sg.metrics.predicted_class])
def test_metrics_refuse_nan_scores(metric):
    # np.argmax takes a NaN for the largest score: a diverged model's NaN outputs were counted
    # as predictions of that column (accuracy 1.0 here) instead of being refused.
    scores = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    scores[0, 1] = np.nan
    args = (scores,) if metric is sg.metrics.predicted_class else (scores, [1, 0, 1])
    with pytest.raises(ValueError, match=r"scores have a NaN at row 0, column 1"):
        metric(*args)
    scores[0, 1] = -np.inf  # log-probabilities of impossible classes are ordered: allowed
    assert metric(*args) is not None


@pytest.mark.parametrize("compiled", [None, False])
@pytest.mark.parametrize("bad", [-0.1, float("nan")])
def test_a_schedule_with_an_invalid_rate_is_refused_by_both_loops(compiled, bad):
    # The compiled loop refused a schedule's negative/NaN learning rate; the Python loop ran
    # gradient ascent to "completed" (negative) or stopped "diverged ... try a smaller learning
    # rate" (NaN): the two loops are documented to give the same results.
    a, b = sg.params("a b")
    f = sg.compile((b - a**2) ** 2 + (1 - a) ** 2)
    opt = sg.optim.momentum(lr=lambda k: 0.01 if k < 3 else bad, beta=0.9)
    with pytest.raises(ValueError, match=r"invalid learning rate .* at step 3"):
        sg.minimize(f, [1.0, 2.0], steps=10, optimizer=opt, compiled=compiled)
    with pytest.raises(ValueError, match=r"invalid learning rate .* at step 3"):
        sg.minimize(lambda x: (float(x @ x), 2 * x), [1.0, 2.0], steps=10, optimizer=opt)


def test_minimize_names_a_callable_whose_value_is_not_a_scalar():
    # float() of the array surfaced as NumPy's "only 0-dimensional arrays can be converted".
    with pytest.raises(ValueError, match=r"returned a value of shape \(2,\)"):
        sg.minimize(lambda x: (x * x, 2 * x), [1.0, 2.0], steps=3)


@pytest.mark.slow  # -m slow (4 s of compile, cold)
@pytest.mark.parametrize("fuse", [None, False])
def test_least_squares_x0_dict_of_arrays_names_the_missing_or_unknown_array(fuse):
    # A dict of arrays that missed 'b' (or had an extra 'c') fell through to the per-entry
    # check: "x0 must give every parameter (W[0, 0], ..., b[2]): missing W[0, 0], ..." (for the
    # extra key too), listing every entry instead of the array.
    W, b = sg.params("W", shape=(2, 2)), sg.params("b", shape=(2,))
    X, Y = sg.data("X", shape=(2,)), sg.data("Y", shape=(2,))
    rk = sg.compile_residuals(W @ X + b - Y, fuse=fuse)
    data = {"X": np.random.default_rng(4).normal(size=(6, 2)), "Y": np.ones((6, 2))}
    with pytest.raises(TypeError, match=r"^x0 by name: .*missing b$"):
        sg.least_squares(rk, {"W": np.zeros((2, 2))}, data=data)
    with pytest.raises(TypeError, match=r"^x0 by name: unknown parameter 'c'"):
        sg.least_squares(rk, {"W": np.zeros((2, 2)), "b": np.zeros(2), "c": 1.0}, data=data)
    fit = sg.least_squares(rk, {"W": np.zeros((2, 2)), "b": np.zeros(2)}, data=data)
    assert fit.success


def test_init_names_a_bad_seed():
    W = sg.params("W", shape=(2, 2))
    X = sg.data("X", shape=(2,))
    for f in (sg.compile(sg.mean(sg.sum((W @ X) ** 2, axis=0))), sg.compile(W @ X)):
        with pytest.raises(ValueError, match="seed must be"):
            f.init(seed=-1)


def test_minimize_takes_x0_as_a_dict_by_name_and_names_bad_x0():
    # least_squares takes x0 as a dict by name; minimize said "float() argument must be a
    # string or a real number, not 'dict'", and "could not convert string to float" for text.
    W, b = sg.params("W", shape=(2, 2)), sg.params("b", shape=(2,))
    X = sg.data("X", shape=(2,))
    f = sg.compile(sg.mean(sg.sum((W @ X + b - 1.0) ** 2, axis=0)))
    data = {"X": np.eye(2).repeat(2, axis=0)}
    start = {"W": np.ones((2, 2)), "b": np.zeros(2)}
    res = sg.minimize(f, start, data=data, steps=2, optimizer=sg.optim.sgd(lr=0.1))
    ref = sg.minimize(f, f.pack(**start), data=data, steps=2, optimizer=sg.optim.sgd(lr=0.1))
    np.testing.assert_array_equal(res.x, ref.x)
    with pytest.raises(TypeError, match="missing b"):
        sg.minimize(f, {"W": np.ones((2, 2))}, data=data, steps=2)
    with pytest.raises(TypeError, match=r"x0 must be .*numbers.*got '1,2'"):
        sg.minimize(lambda x: (float(x @ x), 2 * x), "1,2", steps=2)
    with pytest.raises(TypeError, match=r"x0 as a dict .* needs a compiled kernel"):
        sg.minimize(lambda x: (float(x @ x), 2 * x), {"a": 1.0}, steps=2)


def test_check_hessian_of_a_residual_kernel_checks_gauss_newton(decay_residual):
    # A residual kernel's Hessian is the Gauss-Newton JᵀJ (documented); check_hessian's
    # default differenced the gradient, i.e. the true Hessian of ½‖r‖², and reported a
    # correct kernel as FAILED wherever the residuals are not zero.
    t = np.linspace(0.0, 4.0, 20)
    data = {"t": t, "y": 3 * np.exp(-0.7 * t) + 0.5}
    x = [1.0, 0.5, 0.2]
    assert sg.check_hessian(decay_residual, x, data=data).ok
    with pytest.raises(ValueError, match="Gauss-Newton"):
        sg.check_hessian(decay_residual, x, data=data, method="richardson")
    with pytest.raises(NotImplementedError, match=r"pass the kernel itself and its data=\)$"):
        sg.check_hessian(decay_residual.bind(**data), x)  # was an AttributeError


@pytest.mark.slow  # compiles an array residual per lowering and unrolls it (about 6 s each)
@pytest.mark.parametrize("fuse", [True, False])
def test_check_hessian_of_an_array_residual_checks_gauss_newton(fuse):
    # the same on both lowerings of an array residual (test_lsq_arrays' tanh layer)
    W, b = sg.params("W", shape=(3, 2)), sg.params("b", shape=(3,))
    X, Y = sg.data("X", shape=(2,)), sg.data("Y", shape=(3,))
    rk = sg.compile_residuals(sg.tanh(W @ X + b) - Y, fuse=fuse)
    arrays = {"X": np.random.default_rng(0).normal(size=(6, 2)), "Y": np.zeros((6, 3))}
    assert sg.check_hessian(rk, np.linspace(-1.0, 1.0, 9), data=arrays).ok


def test_complex_step_on_a_residual_kernel_says_why_not(decay_residual):
    # Residual kernels have no complex-step variant; the refusal said the (analytic) residual
    # had abs/max/relu.
    t = np.linspace(0.0, 4.0, 20)
    data = {"t": t, "y": np.exp(-t)}
    for call in (lambda: sg.check_grad(decay_residual, [1.0, 0.5, 0.2], data=data,
                                       method="complex"),
                 lambda: decay_residual.value_complex(np.ones(3, complex), **data)):
        with pytest.raises((TypeError, ValueError), match="residual kernel") as err:
            call()
        assert "abs" not in str(err.value).lower()


@pytest.mark.parametrize("nonzero", [0, 2])
def test_least_squares_refuses_fewer_weighted_residuals_than_parameters(decay_residual,
                                                                         nonzero):
    # All-zero weights returned x0 with success=True and NaN standard errors; two non-zero
    # weights for three parameters "converged" to one of infinitely many exact fits.
    t = np.linspace(0.0, 8.0, 50)
    w = np.zeros(50)
    w[:nonzero] = 1.0
    with pytest.raises(ValueError, match=rf"only {nonzero} residual\(s\) have a non-zero weight"):
        sg.least_squares(decay_residual, [1.0, 0.1, 0.0], weights=w,
                         data={"t": t, "y": 3 * np.exp(-0.7 * t) + 0.5})


@pytest.mark.slow  # -m slow (4 s of compile, cold)
def test_unidentifiable_parameters_have_infinite_stderr_at_a_zero_cost_fit():
    # stderr = sqrt(var) * sqrt(diag((JᵀJ)⁻¹)) was 0 * inf = NaN (and a RuntimeWarning) when
    # the residuals are exactly zero; the documented value for such parameters is inf.
    import warnings

    a, c = sg.params("a c")
    t, y = sg.data("t y")
    tt = np.linspace(0.0, 1.0, 10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sg.lsq.UnidentifiableWarning)
        fit = sg.least_squares((a + c) * t - y, [0.0, 0.0], data={"t": tt, "y": 0 * tt})
        assert fit.cost == 0.0 and fit.unidentifiable == ("a", "c")
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            assert np.all(fit.stderr == np.inf)
            assert np.all(np.isinf(fit.cov))


@pytest.mark.parametrize("fn, hint", [
    (lambda x1, x2: np.exp(x1) + x2**2, "np.exp"),
    (lambda x1, x2: __import__("math").exp(x1) + x2**2, "math"),
    (lambda x1, x2: (x1 if x1 > 0 else -x1) + x2, "if"),
])
def test_a_loss_function_written_with_numpy_or_branches_gets_advice(fn, hint):
    # The function is called with symbolic parameters: np.exp gave NumPy's "loop of ufunc does
    # not support argument 0 of type Param", math.exp "Cannot convert expression to float", an
    # `if` on a parameter SymPy's "cannot determine truth value of Relational".
    with pytest.raises(sg.ProblemError, match=r"symbolic parameters \(x1, x2\)") as err:
        sg.compile(fn)
    assert "sg.exp" in str(err.value) and hint in str(err.value)


@pytest.mark.parametrize("const", [1e39, 1e-50])
@pytest.mark.parametrize("kind", ["loss", "residual", "fused"])
def test_float32_kernel_refuses_a_constant_float32_cannot_hold(const, kind):
    # A literal is printed as np.float32(...): 1e39 became inf (the loss read inf) and 1e-50
    # became 0 (loss and gradient 0, silently) in the float32 sample loop.
    a = sg.params("a")
    t = sg.data("t")
    w, X = sg.params("w", shape=(2,)), sg.data("X", shape=(2,))
    build = {"loss": lambda: sg.compile(sg.mean((a * t - const) ** 2), dtype="float32"),
             "residual": lambda: sg.compile_residuals(a * t * const - 1, dtype="float32"),
             "fused": lambda: sg.compile(sg.mean((X @ w - const) ** 2), dtype="float32")}[kind]
    with pytest.raises(ValueError, match=r"float32.*dtype"):
        build()


def test_float32_constants_outside_the_sample_loop_stay_float64():
    # The outer chain rule is float64: a large factor there is fine.
    a = sg.params("a")
    t = sg.data("t")
    f = sg.compile(1e39 * sg.mean((a * t - 1) ** 2), dtype="float32")
    assert f.value([2.0], t=np.ones(3)) == pytest.approx(1e39)


@pytest.mark.parametrize("const", [float("inf"), float("-inf")])
def test_an_infinite_constant_is_refused_as_nan_is(const):
    # "the loss contains a complex, infinite or NaN constant" refused nan and zoo, but a*inf
    # (SymPy's oo) compiled to a loss that is inf everywhere.
    a = sg.params("a")
    with pytest.raises(sg.ProblemError, match="infinite"):
        sg.compile(a * const + a**2)


def test_complex_step_checks_a_bound_analytic_kernel(line_fits):
    # A bound kernel has value_complex, but the checker read its (missing) 'analytic' flag and
    # refused method='complex' as for a loss with abs/max/relu; one rule, no_complex_step,
    # now answers for kernels and bound kernels alike.
    f, f32, data = line_fits
    chk = sg.check_grad(f.bind(**data), [1.0, 2.0], method="complex")
    assert chk.ok and chk.method == "complex"
    with pytest.raises(ValueError, match="float32"):
        sg.check_grad(f32.bind(**data), [1.0, 2.0], method="complex")
