"""sg.metrics refuses scores it would misread."""

from __future__ import annotations

import numpy as np
import pytest

import symgrad as sg


def test_scores_it_cannot_read_are_refused():
    # an object array hid its NaN (class 0 was predicted); a masked array's mask was ignored
    with pytest.raises(TypeError, match="scores must be numbers"):
        sg.metrics.predicted_class(np.array([[1.0, float("nan")]], dtype=object))
    masked = np.ma.masked_array([[1.0, 5.0]], mask=[[False, True]])
    with pytest.raises(TypeError, match="masked array"):
        sg.metrics.predicted_class(masked)
    with pytest.raises(ValueError, match=r"one column per class.*z > 0"):
        sg.metrics.accuracy(np.array([[-2.0], [3.0]]), [0, 1])
    assert sg.metrics.predicted_class(np.array([[1, 2], [3, 0]])).tolist() == [1, 0]
