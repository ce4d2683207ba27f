"""curve_fit against SciPy's conventions: data rows, degrees of freedom, models without data."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import symgrad as sg

RNG = np.random.default_rng(0)
X2, X10 = RNG.random(30), RNG.random(30) + 5


def test_xdata_rows_follow_the_natural_order_of_the_data_names():
    # rows of a (k, N) xdata went to the names in plain string order (x10 before x2), unlike
    # every other order in symgrad: the two parameters came back swapped, with success
    a, b = sg.params("a b")
    x2, x10 = sg.data("x2 x10")
    y = 3 * X2 + 7 * X10
    popt, _ = sg.curve_fit(a * x2 + b * x10, np.vstack([X2, X10]), y, [1, 1])
    np.testing.assert_allclose(popt, [3, 7], rtol=1e-10)
    popt, _ = sg.curve_fit("a*x2 + b*x10", np.vstack([X2, X10]), y, [1, 1], params="a b")
    np.testing.assert_allclose(popt, [3, 7], rtol=1e-10)


def test_no_degrees_of_freedom_give_an_infinite_pcov_with_a_warning():
    # SciPy's convention; pcov used to be all NaN without a word
    a, b = sg.params("a b")
    t = sg.data("t")
    with pytest.warns(RuntimeWarning, match="no degrees of freedom"):
        popt, pcov = sg.curve_fit(a * t + b, np.array([0.0, 1.0]), np.array([1.0, 3.0]), [0, 0])
    np.testing.assert_allclose(popt, [2, 1], rtol=1e-12)
    assert np.isinf(pcov).all() and pcov.shape == (2, 2)
    with warnings.catch_warnings():  # with absolute sigma there is no variance to estimate
        warnings.simplefilter("error")
        _, pcov = sg.curve_fit(a * t + b, np.array([0.0, 1.0]), np.array([1.0, 3.0]), [0, 0],
                               sigma=[0.5, 0.5], absolute_sigma=True)
    assert np.isfinite(pcov).all()


def test_a_model_without_data_fits_the_mean():
    c = sg.params("c")
    t = sg.data("t")
    tt = np.linspace(0, 8, 50)
    yy = 1.0 + 0.1 * np.sin(tt)
    popt, pcov = sg.curve_fit(c + 0 * t, tt, yy, [0])  # SymPy drops 0*t: no data at all
    np.testing.assert_allclose(popt, [yy.mean()], rtol=1e-12)
    np.testing.assert_allclose(pcov, [[yy.var(ddof=1) / yy.size]], rtol=1e-9)


def test_curve_fit_input_errors_say_what_to_do():
    a, b = sg.params("a b")
    t = sg.data("t")
    with pytest.raises(ValueError, match=r"xdata column\(s\) 't' are not in the model"):
        sg.curve_fit("c", {"t": np.arange(4.0)}, np.arange(4.0), [0])
    with pytest.raises(TypeError, match=r"curve_fit needs p0, a start for each parameter \(a, b\)"):
        sg.curve_fit(a * t + b, np.arange(4.0), np.arange(4.0), None)
