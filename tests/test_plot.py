"""symgrad.plot: figures are produced headless, and a missing matplotlib is explained."""

from __future__ import annotations

import builtins
import importlib
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from symgrad import plot

PNG = b"\x89PNG\r\n\x1a\n"


def rosen(x):
    return (x[1] - x[0] ** 2) ** 2 + (1 - x[0]) ** 2


def rosen_grad(x):
    a = x[1] - x[0] ** 2
    return np.array([-4 * x[0] * a - 2 * (1 - x[0]), 2 * a])


def test_loss_curves_and_save(tmp_path):
    fig = plot.loss_curves({"a": np.array([10.0, 1.0, 0.01]), "b": [5.0, 4.0, 3.0]})
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"  # spans three decades
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b"]
    p = plot.save(fig, tmp_path / "sub" / "loss.png")
    assert p.read_bytes()[:8] == PNG


def _rosen_vg(x):
    return rosen(x), rosen_grad(x)


def test_loss_curves_takes_a_result_or_a_dict_of_results():
    """Issue 24 (new user): plot.loss_curves(res) failed with "'OptimizeResult' object has no
    attribute 'items'"."""
    import symgrad as sg

    res = sg.minimize(_rosen_vg, [2.0, 2.0], optimizer=sg.optim.sgd(0.05), steps=30)
    line, = plot.loss_curves(res).axes[0].get_lines()
    np.testing.assert_array_equal(line.get_ydata(), res.history.loss)
    np.testing.assert_array_equal(line.get_xdata(), res.history.step)
    assert len(plot.loss_curves({"a": res, "b": res.history}).axes[0].get_lines()) == 2


def test_a_path_needs_the_recorded_iterates():
    import symgrad as sg

    kw = dict(optimizer=sg.optim.sgd(0.05), steps=5)
    with pytest.raises(ValueError, match="record_x=True"):
        plot.contour(rosen, (0, 1), (0, 1), trajectories={"run": sg.minimize(
            _rosen_vg, [2.0, 2.0], **kw)}, resolution=5)
    res = sg.minimize(_rosen_vg, [2.0, 2.0], record_x=True, **kw)
    fig = plot.contour(rosen, (0, 3), (0, 3), trajectories={"run": res}, resolution=5)
    assert any(np.array_equal(ln.get_xdata(), res.history.x[:, 0])
               for ln in fig.axes[0].get_lines())


def test_contour_with_trajectories_and_quiver(tmp_path):
    path = np.array([[2.0, 2.0], [0.2, 2.4], [1.0, 1.0]])
    fig = plot.contour(rosen, (-2, 2.5), (-0.5, 3), grad=rosen_grad,
                       trajectories={"sgd": path}, minimum=(1, 1), resolution=40,
                       path=tmp_path / "c.png")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "x1" and ax.get_ylabel() == "x2"
    assert len(ax.collections) > 0 and any(type(c).__name__ == "Quiver" for c in ax.collections)
    assert (tmp_path / "c.png").read_bytes()[:8] == PNG


def test_contour_rejects_bad_paths():
    with pytest.raises(ValueError, match=r"\(k, 2\)"):
        plot.contour(rosen, (0, 1), (0, 1), trajectories={"bad": np.arange(3.0)}, resolution=5)


def test_predictions_and_decision_regions(tmp_path):
    t = np.arange(10.0)
    fig = plot.predictions(t, t**2, {"fit": t**2 + 1})
    assert fig.axes[0].get_title()
    X = np.random.default_rng(0).standard_normal((50, 2))
    lab = (X[:, 0] > 0).astype(int)
    fig = plot.decision_regions(lambda p: (p[:, 0] > 0).astype(int), X, lab, resolution=30,
                                path=tmp_path / "d.png")
    assert (tmp_path / "d.png").stat().st_size > 5000


def test_path_1d(tmp_path):
    fig = plot.path_1d(lambda w: float(w[0] ** 2), (-2, 2), {"run": np.array([[1.5], [0.5]])},
                       path=tmp_path / "p.png")
    assert fig.axes[0].get_xlabel() == "w"


def test_missing_matplotlib_gives_install_hint(monkeypatch):
    real_import = builtins.__import__

    def no_mpl(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mpl)
    mod = importlib.reload(plot)  # importing symgrad.plot itself never needs matplotlib
    with pytest.raises(ImportError, match=r"pip install \"symgrad\[plot\]\""):
        mod.figure()


def test_importing_symgrad_does_not_import_matplotlib():
    import subprocess
    import sys

    code = "import sys, symgrad; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=str(Path(__file__).parent.parent))
    assert out.stdout.strip() == "False", out.stderr
