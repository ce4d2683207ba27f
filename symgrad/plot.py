"""Figures for losses and optimizer runs: loss curves, contour + trajectories + gradient quiver,
predictions against data, decision regions.

matplotlib is an optional extra (``pip install "symgrad[plot]"``); this module imports it only
when a function is called. Figures are built with the object-oriented API
(``matplotlib.figure.Figure``, rendered by the Agg canvas), so nothing here touches pyplot's
global state or needs a display: it works the same on a headless CI machine and in a notebook
(a returned ``Figure`` displays inline).

Every function takes an optional ``ax`` to draw into (returns that ``ax``'s figure) and an
optional ``path`` to save a PNG to; without ``ax`` it creates its own figure.

>>> import numpy as np, tempfile, os
>>> from symgrad import plot
>>> fig = plot.loss_curves({"sgd": np.array([4.0, 2.0, 1.0])})
>>> p = plot.save(fig, os.path.join(tempfile.mkdtemp(), "loss.png")); p.suffix
'.png'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "contour",
    "decision_regions",
    "figure",
    "loss_curves",
    "path_1d",
    "predictions",
    "save",
]

#: Colours used for successive series (colour-blind friendly, high contrast on white).
COLORS = ("#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2")

_MISSING = (
    "symgrad.plot needs matplotlib, which is an optional extra: "
    'pip install "symgrad[plot]"  (or: pip install matplotlib)'
)


def _mpl() -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - exercised by monkeypatching in the tests
        raise ImportError(_MISSING) from exc
    return Figure


def figure(ncols: int = 1, nrows: int = 1, *, size: tuple[float, float] = (6.0, 4.5)) -> Any:
    """A new ``Figure`` with an ``nrows x ncols`` grid of axes (``fig.axes``).

    ``size`` is the size of one panel in inches.
    """
    Figure = _mpl()
    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows), layout="constrained")
    fig.subplots(nrows, ncols, squeeze=False)
    return fig


def save(fig: Any, path: str | Path, *, dpi: int = 110) -> Path:
    """Write ``fig`` as a PNG (parent directories are created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


def _ax(ax: Any, size: tuple[float, float] = (6.0, 4.5)) -> Any:
    return figure(size=size).axes[0] if ax is None else ax


def _finish(ax: Any, path: str | Path | None) -> Any:
    fig = ax.figure
    if path is not None:
        save(fig, path)
    return fig


def _series(v: Any) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of a loss series: a History (``.step``/``.loss``) or a 1-D array."""
    if hasattr(v, "loss") and hasattr(v, "step"):
        return np.asarray(v.step), np.asarray(v.loss, dtype=float)
    if hasattr(v, "history"):  # an OptimizeResult
        return _series(v.history)
    y = np.asarray(v, dtype=float).ravel()
    return np.arange(y.size), y


def loss_curves(
    curves: Any,
    *,
    ax: Any = None,
    log: bool | None = None,
    xlabel: str = "step",
    ylabel: str = "loss",
    title: str = "Loss during training",
    path: str | Path | None = None,
) -> Any:
    """Loss against step for each labelled run (a History, an OptimizeResult or an array).

    ``curves`` is a mapping label -> run, or a single run (labelled "loss").
    ``log=None`` uses a log scale when the values are positive and span over two decades.
    """
    if not isinstance(curves, Mapping):
        curves = {"loss": curves}
    ax = _ax(ax)
    span = []
    for i, (label, v) in enumerate(curves.items()):
        s, y = _series(v)
        ax.plot(s, y, color=COLORS[i % len(COLORS)], lw=1.8, label=str(label))
        span.append(y[np.isfinite(y)])
    vals = np.concatenate(span) if span else np.empty(0)
    if log is None:
        log = bool(vals.size) and vals.min() > 0 and vals.max() / vals.min() > 100
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel + (" (log scale)" if log else ""))
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if curves:
        ax.legend()
    return _finish(ax, path)


def contour(
    f: Any,
    xlim: tuple[float, float],
    ylim: tuple[float, float],
    *,
    trajectories: Mapping[str, Any] | None = None,
    quiver: bool = True,
    grad: Callable[[np.ndarray], np.ndarray] | None = None,
    minimum: Sequence[float] | None = None,
    levels: int = 30,
    log: bool = True,
    resolution: int = 200,
    labels: tuple[str, str] = ("x1", "x2"),
    title: str = "Loss surface",
    legend: str = "best",
    ax: Any = None,
    path: str | Path | None = None,
) -> Any:
    """Filled contours of a 2-parameter loss, with optimizer paths and the gradient field.

    ``f`` is a Kernel (its ``value``/``grad`` are used) or a callable ``x -> float`` (then pass
    ``grad`` for the quiver). ``trajectories`` maps labels to ``(k, 2)`` paths (or Histories /
    OptimizeResults, whose ``x`` path is used). The quiver shows the *negative* gradient
    (the descent direction), normalised, so arrows are readable where the slope is steep.
    """
    ax = _ax(ax, size=(7.0, 5.5))
    value = getattr(f, "value", f)
    gfun = grad or getattr(f, "grad", None)
    xs = np.linspace(*xlim, resolution)
    ys = np.linspace(*ylim, resolution)
    XX, YY = np.meshgrid(xs, ys)
    Z = np.array([[value(np.array([a, b])) for a in xs] for b in ys])
    if log:
        Z = np.log10(Z - min(Z.min(), 0.0) + 1e-3)
    cs = ax.contourf(XX, YY, Z, levels=levels, cmap="viridis", alpha=0.9)
    ax.contour(XX, YY, Z, levels=levels, colors="k", linewidths=0.3, alpha=0.4)
    ax.figure.colorbar(cs, ax=ax, label="log10(loss)" if log else "loss")
    if quiver and gfun is not None:
        qn = 18
        qx, qy = np.meshgrid(np.linspace(*xlim, qn), np.linspace(*ylim, qn))
        G = np.array([gfun(np.array([a, b])) for a, b in zip(qx.ravel(), qy.ravel(), strict=True)])
        norm = np.hypot(G[:, 0], G[:, 1])
        norm[norm == 0] = 1.0
        ax.quiver(qx.ravel(), qy.ravel(), -G[:, 0] / norm, -G[:, 1] / norm, color="white",
                  alpha=0.75, width=0.003, scale=30)
    for i, (label, tr) in enumerate((trajectories or {}).items()):
        P = _path(tr)
        c = COLORS[i % len(COLORS)]
        ax.plot(P[:, 0], P[:, 1], "-", color=c, lw=1.6, label=str(label))
        ax.plot(P[:, 0], P[:, 1], "x", color=c, ms=4, mew=1.0)
        ax.plot(P[-1, 0], P[-1, 1], "o", color=c, ms=7, mec="k")
    if trajectories:
        P0 = _path(next(iter(trajectories.values())))[0]
        ax.plot(P0[0], P0[1], "s", color="white", mec="k", ms=8, label="start")
    if minimum is not None:
        ax.plot(minimum[0], minimum[1], "*", color="gold", mec="k", ms=15, label="minimum")
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.set_title(title + ("\n(arrows: descent direction -gradient)" if quiver and gfun else ""),
                 fontsize=11)
    ax.legend(loc=legend, fontsize=8, framealpha=0.9)
    return _finish(ax, path)


def _path(tr: Any) -> np.ndarray:
    P = _iterates(tr)
    if P.ndim != 2 or P.shape[1] < 2:
        raise ValueError(f"a trajectory must be a (k, 2) array of points, got shape {P.shape}")
    return P


def _iterates(tr: Any) -> np.ndarray:
    """The recorded iterates of a run (an OptimizeResult, its History) or an array of points."""
    hist = tr.history if hasattr(tr, "history") else tr
    if hasattr(hist, "x") and hasattr(hist, "step"):
        if len(hist.step) and not len(hist.x):
            raise ValueError("this run recorded no iterates: run sg.minimize(..., "
                             "record_x=True) to draw its path")
        return np.asarray(hist.x, dtype=float)
    if hasattr(tr, "x") and not isinstance(tr, np.ndarray):
        tr = tr.x
    return np.asarray(tr, dtype=float)


def path_1d(
    f: Callable[[float], float],
    xlim: tuple[float, float],
    paths: Mapping[str, Any],
    *,
    xlabel: str = "w",
    title: str = "Optimizer paths on a 1-D loss",
    ax: Any = None,
    path: str | Path | None = None,
) -> Any:
    """A 1-D loss curve with the iterates of each labelled run drawn on it."""
    ax = _ax(ax)
    value = getattr(f, "value", f)
    xs = np.linspace(*xlim, 400)
    ax.plot(xs, [value(np.array([v])) for v in xs], color="0.2", lw=2, label="loss")
    for i, (label, tr) in enumerate(paths.items()):
        w = _iterates(tr).ravel()
        fw = np.array([value(np.array([v])) for v in w])
        c = COLORS[i % len(COLORS)]
        ax.plot(w, fw, "o-", color=c, ms=3, lw=0.8, alpha=0.8, label=str(label))
        ax.plot(w[-1], fw[-1], "o", color=c, ms=10, mec="k")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    return _finish(ax, path)


def predictions(
    t: Any,
    y: Any,
    preds: Mapping[str, Any],
    *,
    xlabel: str = "t",
    ylabel: str = "y",
    title: str = "Predictions against data",
    ax: Any = None,
    path: str | Path | None = None,
) -> Any:
    """Data points ``(t, y)`` and each labelled prediction curve (evaluated at ``t``)."""
    ax = _ax(ax)
    t = np.asarray(t, dtype=float)
    ax.scatter(t, y, color="0.25", s=22, zorder=3, label="data")
    order = np.argsort(t)
    for i, (label, p) in enumerate(preds.items()):
        p = np.asarray(p, dtype=float)
        ax.plot(t[order], p[order], "-", color=COLORS[i % len(COLORS)], lw=1.8, label=str(label))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _finish(ax, path)


def decision_regions(
    predict: Callable[[np.ndarray], np.ndarray],
    X: Any,
    labels: Any,
    *,
    class_names: Sequence[str] | None = None,
    resolution: int = 300,
    margin: float = 0.5,
    title: str = "Decision regions",
    ax: Any = None,
    path: str | Path | None = None,
) -> Any:
    """Colour the plane by ``predict(points) -> class index`` and scatter the labelled points."""
    from matplotlib.colors import ListedColormap

    ax = _ax(ax, size=(6.0, 5.5))
    X = np.asarray(X, dtype=float)
    labels = np.asarray(labels).astype(int)
    k = int(max(labels.max() + 1, 1))
    (x0, y0), (x1, y1) = X.min(axis=0) - margin, X.max(axis=0) + margin
    gx, gy = np.meshgrid(np.linspace(x0, x1, resolution), np.linspace(y0, y1, resolution))
    Z = np.asarray(predict(np.column_stack([gx.ravel(), gy.ravel()]))).reshape(gx.shape)
    colors = [COLORS[(i + 1) % len(COLORS)] for i in range(k)]
    ax.contourf(gx, gy, Z, levels=np.arange(k + 1) - 0.5, cmap=ListedColormap(colors), alpha=0.25)
    ax.contour(gx, gy, Z, levels=np.arange(k) + 0.5, colors="k", linewidths=0.8)
    names = class_names or [f"class {i}" for i in range(k)]
    for i in range(k):
        m = labels == i
        ax.scatter(X[m, 0], X[m, 1], s=14, color=colors[i], edgecolors="k", linewidths=0.3,
                   label=names[i])
    ax.set_xlabel("feature 1")
    ax.set_ylabel("feature 2")
    ax.set_title(title)
    ax.set_aspect("equal")
    ax.legend(loc="upper right", fontsize=8, framealpha=0.9)
    return _finish(ax, path)
