"""Array residuals on Dask arrays: the fused block pass per chunk, summed on the client."""

import numpy as np
import pytest

import symgrad as sg

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

K, D = 3, 2


@pytest.fixture(scope="module")
def problem():
    W, b = sg.params("W", shape=(K, D)), sg.params("b", shape=(K,))
    X, Y = sg.data("X", shape=(D,)), sg.data("Y", shape=(K,))
    rng = np.random.default_rng(10)
    Xv = rng.standard_normal((500, D))
    Yv = np.tanh(Xv @ rng.standard_normal((D, K)) + 0.2) + 0.05 * rng.standard_normal((500, K))
    kernel = sg.compile_residuals(sg.tanh(W @ X + b) - Y)
    dask_data = {"X": da.from_array(Xv, chunks=(120, D)), "Y": da.from_array(Yv, chunks=(90, K))}
    return kernel, {"X": Xv, "Y": Yv}, dask_data


def test_the_fused_pass_per_chunk_equals_the_in_memory_one(problem):
    kernel, data, ddata = problem
    x = np.random.default_rng(11).standard_normal(kernel.n_params) * 0.3
    bound = kernel.bind(**ddata)
    assert type(bound).__name__ == "DaskArrayResiduals" and bound.n_residuals() == 500 * K
    A, g, rtr = bound.normal(x)
    A0, g0, rtr0 = kernel.bind(**data).normal(x)
    np.testing.assert_allclose(A, A0, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(g, g0, rtol=1e-12, atol=1e-12)
    assert rtr == pytest.approx(rtr0, rel=1e-12)
    # Dask arrays run the array lowering's block pass (a fused kernel binds them to it)
    mem = kernel.array() if kernel.fused else kernel
    np.testing.assert_array_equal(bound.residuals(x), mem.residuals(x, **data))
    np.testing.assert_array_equal(bound.jacobian(x), mem.jacobian(x, **data))


def test_fit_on_dask_equals_in_memory_with_robust_loss_and_weights(problem):
    kernel, data, ddata = problem
    w = np.random.default_rng(12).uniform(0.5, 2.0, 500)
    kw = dict(loss="soft_l1", f_scale=0.1, weights=w)
    x0 = np.full(kernel.n_params, 0.1)
    fit = sg.least_squares(kernel, x0, data=ddata, **kw)
    ref = sg.least_squares(kernel, x0, data=data, **kw)
    assert fit.success
    np.testing.assert_allclose(fit.x, ref.x, rtol=1e-9, atol=1e-10)


@pytest.mark.slow
def test_worker_processes_load_the_shipped_module(problem):
    """The processes scheduler pickles every task: the module goes as text (ModuleSpec)."""
    kernel, data, ddata = problem
    x = np.full(kernel.n_params, 0.2)
    with dask.config.set(scheduler="processes", num_workers=2):
        A, g, rtr = kernel.bind(**ddata).normal(x)
    A0, g0, rtr0 = kernel.bind(**data).normal(x)
    np.testing.assert_allclose(A, A0, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(g, g0, rtol=1e-12, atol=1e-12)
    assert rtr == pytest.approx(rtr0, rel=1e-12)


def test_dask_errors_name_the_array_and_row(problem):
    kernel, data, ddata = problem
    Xbad = data["X"].copy()
    Xbad[301, 1] = np.inf
    bad = {"X": da.from_array(Xbad, chunks=(120, D)), "Y": ddata["Y"]}
    with pytest.raises(ValueError, match=r"data array 'X' has a non-finite value \(inf\) at "
                                         r"row 301"):
        kernel.bind(**bad).normal(np.zeros(kernel.n_params))
    with pytest.raises(ValueError, match=r"data array 'X' must have shape \(samples, 2\)"):
        kernel.bind(X=da.zeros((10, 3)), Y=da.zeros((10, K)))
    with pytest.raises(ValueError, match="'Y' has 9 samples but 'X' has 10"):
        kernel.bind(X=da.zeros((10, D)), Y=da.zeros((9, K)))


def test_dask_bound_checks_x_and_out_like_the_in_memory_one(problem):
    kernel, _, ddata = problem
    bound = kernel.bind(**ddata)
    x = np.full(kernel.n_params, 0.1)
    out = np.empty(500 * K)
    assert bound.residuals(x, out) is out
    with pytest.raises(ValueError, match=r"out must be a .*shape \(1500,\)"):
        bound.residuals(x, np.empty(7))  # was silently broadcast (or a NumPy error)
    with pytest.raises(ValueError, match=r"out must be a .*shape \(1500, 9\)"):
        bound.jacobian(x, np.empty((1500, 8)))
    with pytest.raises(ValueError, match=r"\bx\b"):
        bound.normal(np.zeros(3))


def test_precise_with_a_robust_loss_on_dask_equals_memory(problem):
    # precise was refused on Dask (J's rows were streamed to the client); each chunk's QR
    # factor of [J | r], rows scaled by the loss, is now merged on the client
    kernel, data, ddata = problem
    x0 = np.full(kernel.n_params, 0.1)
    mem = sg.least_squares(kernel, x0, data=data, method="precise", loss="huber", f_scale=0.2)
    with dask.config.set(scheduler="synchronous"):
        fit = sg.least_squares(kernel, x0, data=ddata, method="precise", loss="huber",
                               f_scale=0.2)
    assert mem.success and fit.success
    np.testing.assert_allclose(fit.x, mem.x, rtol=1e-9, atol=1e-12)
    assert fit.cost == pytest.approx(mem.cost, rel=1e-12)
