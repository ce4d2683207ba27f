"""Run every example's ``main(out_dir)`` and check its key numbers (the seeds' results); the
examples in ``SLOW`` run in the slow set (`python -m pytest -m slow`, which .ci/run runs).

Examples are loaded from examples/ by path (it is not a package). Kernels come from the
on-disk cache after the first run, so this module takes seconds.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from symgrad import cli

pytest.importorskip("matplotlib")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ALL = sorted(p.stem for p in EXAMPLES.glob("*.py") if p.stem != "regenerate")
#: Smaller runs for the suite (the examples' defaults are the documented runs).
FAST = {"digits": {"epochs": 20}, "logistic_regression": {"steps": 150},
        "dask_fit": {"samples": 400_000, "chunk": 50_000},
        "matrix_factorisation": {"steps": 200}}
#: Optional packages some examples need (CI installs them via the `dev` extra).
NEEDS = {"digits": "sklearn", "denoise_image": "scipy", "dask_fit": "distributed"}


def _available(name: str) -> bool:
    """digits needs scikit-learn (the `digits` extra), denoise_image SciPy's L-BFGS-B."""
    return name not in NEEDS or importlib.util.find_spec(NEEDS[name]) is not None


def load(name: str):
    mod_name = f"symgrad_example_{name}"
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    spec = importlib.util.spec_from_file_location(mod_name, EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = mod
    spec.loader.exec_module(mod)
    return mod


#: Examples checked in the slow set only (each compiles kernels of its own, 3.5-8 s CPU cold):
#: the quick set runs the seeds' examples (those `symgrad demo` runs) and covers what the others
#: use elsewhere: digits by two_layer_net (a ReLU network with a logits output trained by mini-batch
#: ``minimize``), matrix_factorisation by test_index_arrays.py::test_gathers_match_numpy_add_at
#: (its ``U[i] * V[j]`` gathers against np.add.at) and test_train_loop.py's Adam runs of array
#: kernels, the fits by test_lsq_*.py, the image by test_index_arrays.py's grid energy, the Dask
#: fit by test_distributed_*.py.
SLOW = {"digits", "matrix_factorisation", "logistic_regression", "denoise_image", "speed_fit",
        "decay_fit", "dask_fit"}


class _Results(dict):
    """Each example's ``main(out_dir)`` result, run on first use (so a quick run skips SLOW)."""

    def __init__(self, out: Path) -> None:
        super().__init__()
        self.out = out

    def __missing__(self, name: str) -> dict:
        self[name] = load(name).main(self.out / name, **FAST.get(name, {}))
        return self[name]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    return _Results(tmp_path_factory.mktemp("examples"))


def _maybe_slow(name: str):
    return pytest.param(name, marks=pytest.mark.slow) if name in SLOW else name


def test_every_example_is_covered():
    assert set(ALL) == {"rosenbrock_learning_rate", "quadratic_fit", "two_layer_net",
                        "momentum_escape", "backprop_graph", "digits", "logistic_regression",
                        "matrix_factorisation", "denoise_image", "speed_fit", "decay_fit",
                        "dask_fit"}


@pytest.mark.parametrize("name", [_maybe_slow(n) for n in ALL])
def test_example_writes_its_figures(results, name):
    if not _available(name):
        pytest.skip(f"{name} needs {NEEDS[name]}")
    for fig in results[name]["figures"]:
        p = Path(fig)
        assert p.is_file() and p.stat().st_size > 10_000, fig
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rosenbrock_learning_rates(results):
    r = results["rosenbrock_learning_rate"]
    # The seed's lr = 0.1 run (and the value the minimize docstring pins).
    np.testing.assert_allclose(r["lr = 0.1"]["x"], (1.0088, 1.0214), atol=5e-5)
    assert r["lr = 0.1"]["fun"] == pytest.approx(9.13e-5, rel=1e-3)
    # lr = 0.2 bounces around and does not converge; the time-decayed run converges best.
    assert r["lr = 0.2"]["dist"] > 0.2
    assert r["lr = 0.2, time decay 0.01"]["dist"] < 0.01
    assert r["lr = 0.2, time decay 0.01"]["fun"] < r["lr = 0.1"]["fun"]


def test_quadratic_fit_seven_steps(results):
    r = results["quadratic_fit"]
    losses = r["losses"]
    assert np.all(np.diff(losses) < 0), "SGD with lr 1e-5 decreases the loss every step"
    assert r["initial_loss"] == pytest.approx(2966.8045, rel=1e-6)
    assert r["final_loss"] == pytest.approx(300.06, abs=0.01)
    assert r["steps"] == 8
    assert r["check_ok"]
    committed = EXAMPLES.parent / "generated" / "quadratic_fit.py"
    assert Path(r["generated"]).read_bytes() == committed.read_bytes()


def test_two_layer_net_accuracy(results):
    r = results["two_layer_net"]
    assert r["n_params"] == 51
    assert r["status"] == "completed"
    assert r["test_accuracy"] > 0.95
    assert r["train_accuracy"] > 0.95


@pytest.mark.slow
def test_digits_accuracy(results):
    pytest.importorskip("sklearn")
    r = results["digits"]
    assert r["n_params"] == 64 * 32 + 32 + 32 * 10 + 10
    assert r["status"] == "completed"
    assert r["test_accuracy"] >= 0.95
    assert r["train_accuracy"] >= 0.97
    # reported through the compiled model: its logits are NumPy's forward pass at the trained x
    _, x_test, _, y_test = load("digits").load()
    W1, b1, W2, b2 = np.split(r["x"], np.cumsum([32 * 64, 32, 10 * 32]))
    ref = np.maximum(x_test @ W1.reshape(32, 64).T + b1, 0) @ W2.reshape(10, 32).T + b2
    np.testing.assert_allclose(r["test_scores"], ref, rtol=1e-12, atol=1e-12)
    assert r["test_accuracy"] == np.mean(np.argmax(ref, axis=1) == y_test)
    assert r["confusion"].sum() == len(y_test) and np.trace(r["confusion"]) == round(
        r["test_accuracy"] * len(y_test))


@pytest.mark.slow
def test_logistic_regression_accuracy(results):
    r = results["logistic_regression"]
    assert r["n_params"] == 501
    assert r["status"] == "completed"
    assert r["train_accuracy"] > 0.93
    # within a few points of the true model's own accuracy on the fresh samples
    assert r["test_accuracy"] > r["true_accuracy"] - 0.05
    assert r["true_accuracy"] > 0.9


def test_momentum_escapes_the_local_minimum(results):
    r = results["momentum_escape"]
    assert r["sgd_w"] == pytest.approx(r["local_min"], abs=1e-4)
    assert r["momentum_w"] == pytest.approx(r["global_min"], abs=1e-3)
    assert r["momentum_fun"] < r["sgd_fun"] - 2


def test_backprop_graph_gradients(results):
    r = results["backprop_graph"]
    assert r["loss"] == 3.0
    assert r["grad"] == (2.0, 1.0)
    assert r["check_ok"]
    assert "sign" in r["symbolic"][0] and "x" in r["symbolic"][0]
    assert "def _acc_g(" in r["code"] and "for k in range(hi - lo):" in r["code"]


@pytest.mark.slow
def test_matrix_factorisation_close_to_the_full_svd(results):
    r = results["matrix_factorisation"]
    assert r["n_params"] == (300 + 200) * 5
    assert r["n_observed"] == 18067  # 30% of 60,000 entries (seeded)
    assert r["status"] == "completed"
    assert r["max_rel_error"] < 1e-12  # value and gradient against np.add.at
    # The full noisy matrix's rank-5 SVD sees every entry: held-out RMSE about the noise (0.3).
    assert 0.28 < r["svd_heldout_rmse"] < 0.31
    # Fitted from 30% of the entries: within 15% of it, far below the data's spread.
    assert r["heldout_rmse"] < 1.15 * r["svd_heldout_rmse"]
    assert r["heldout_rmse"] < 0.35 * r["data_std"]
    assert r["train_rmse"] < r["heldout_rmse"]  # no miracle: the fit sees the training noise
    assert r["truth_rmse"] < 0.15  # close to the noise-free matrix everywhere


@pytest.mark.slow
def test_denoise_image_tv_beats_tikhonov(results):
    if not _available("denoise_image"):
        pytest.skip("denoise_image needs scipy")
    r = results["denoise_image"]
    assert r["n_params"] == 64 * 64
    assert r["max_rel_error"]["Tikhonov"] < 1e-12
    assert r["max_rel_error"]["TV"] < 1e-12
    assert all(fit["success"] for fit in r["fits"].values())
    p = r["psnr"]
    assert p["noisy"] == pytest.approx(16.5, abs=0.1)
    assert p["Tikhonov"] > p["noisy"] + 4
    assert p["TV"] > p["Tikhonov"] + 3  # edges kept: total variation wins on flat shapes


@pytest.mark.slow
def test_speed_fit_lm_beats_3000_sgd_steps(results):
    r = results["speed_fit"]
    np.testing.assert_allclose(r["x"], r["polyfit"], rtol=1e-10)  # the exact minimum
    assert r["lm_nit"] <= 5 and r["lm_nfev"] <= 10
    assert r["lm_loss"] < 1.0 < 250 < r["sgd_loss"]  # SGD with lr 1e-5 is still far off
    assert np.all(np.diff(r["lm_losses"]) <= 0)
    assert np.all(r["stderr"] > 0) and np.all(r["stderr"] < 0.05 * np.abs(r["x"]))


@pytest.mark.slow
def test_decay_fit_band_and_errors_match_curve_fit(results):
    from scipy.optimize import curve_fit

    r = results["decay_fit"]
    mod = load("decay_fit")
    tt, yy = mod.decay_data()
    popt, pcov = curve_fit(lambda t, a, b, c: a * np.exp(-b * t) + c, tt, yy, p0=[1, 0.1, 0],
                           xtol=1e-14, ftol=1e-14, gtol=1e-14)
    assert r["success"]
    np.testing.assert_allclose(r["x"], popt, rtol=1e-8)
    np.testing.assert_allclose(r["cov"], pcov, rtol=1e-6)
    assert np.all(np.abs(r["x"] - np.array(mod.TRUE)) < 3 * r["stderr"])
    assert r["covered"] == 1.0 and 0.05 < r["band_width"] < 0.5


@pytest.mark.slow
def test_dask_fit_recovers_the_model(results):
    if not _available("dask_fit"):
        pytest.skip("dask_fit needs the dask extra")
    r = results["dask_fit"]
    assert r["n_chunks"] == 8
    assert r["status"] == "converged"
    np.testing.assert_allclose(r["x"], (2.0, 1.3, 0.5), atol=0.01)  # 4e5 samples, noise 0.1
    assert 0.099 < r["fun"] < 0.101  # the RMSE ends at the noise level
    assert r["loss0"] > 5 * r["fun"]


def test_demo_runs_the_seed_scenarios(results, tmp_path, capsys):
    """`symgrad demo` (the CLI) runs five of these examples; after ``results`` (same process),
    their kernels are compiled already."""
    code = cli.main(["demo", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    assert f"Outputs in {tmp_path.resolve()}" in out
    for name in ("rosenbrock_learning_rate.png", "quadratic_fit.png", "momentum_escape.png",
                 "two_layer_net.png", "quadratic_fit.py", "summary.json"):
        assert (tmp_path / name).is_file(), name
    s = json.loads((tmp_path / "summary.json").read_text())
    np.testing.assert_allclose(s["rosenbrock"]["lr = 0.1"]["x"], [1.0088, 1.0214], atol=5e-5)
    assert s["backprop"]["grad"] == [2.0, 1.0]
    assert s["two_layer_net"]["test_accuracy"] > 0.95
    assert s["momentum"]["momentum_w"] < -1.2 < s["momentum"]["sgd_w"]
    assert s["quadratic_fit"]["final_loss"] < s["quadratic_fit"]["initial_loss"] / 5
    # the demo runs the example scripts (one copy of each scenario), showing their output
    for script in ("rosenbrock_learning_rate", "quadratic_fit", "backprop_graph",
                   "momentum_escape", "two_layer_net"):
        assert f"(examples/{script}.py)" in out
    assert "lr = 0.1" in out and "d/dw = 2, d/db = 1" in out
