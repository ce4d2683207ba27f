"""Classification metrics on a model's outputs: accuracy and the confusion matrix.

``scores`` are per-sample outputs with one column per class (logits or probabilities, as a
:class:`~symgrad.ModelKernel` returns them); the predicted class is the largest column.

>>> import numpy as np
>>> scores = np.array([[2.0, 0.1], [0.3, 0.9], [1.0, 0.0]])
>>> accuracy(scores, [0, 1, 1])
0.6666666666666666
>>> confusion_matrix(scores, [0, 1, 1])
array([[1, 0],
       [1, 1]])
"""

from __future__ import annotations

import numpy as np

__all__ = ["accuracy", "confusion_matrix", "predicted_class"]


def predicted_class(scores) -> np.ndarray:
    """The column of the largest score in each row (the first one on ties)."""
    if np.ma.isMaskedArray(scores):
        raise TypeError("scores is a masked array: argmax would read the masked entries; fill "
                        "them (scores.filled(-np.inf)) or drop their rows")
    s = np.asarray(scores)
    if s.dtype.kind not in "fciub":
        raise TypeError(f"scores must be numbers, got an array of dtype {s.dtype}")
    if s.ndim != 2 or s.shape[1] < 2:
        raise ValueError(f"scores must have shape (samples, classes), one column per class, "
                         f"got {s.shape}" + (" (a single logit z per sample: the classes are "
                                              "z > 0, or pass np.hstack([-z, z]))"
                                              if s.ndim == 2 and s.shape[1] == 1 else ""))
    if s.dtype.kind in "fc":  # argmax takes a NaN for the largest score (inf is ordered)
        bad = np.argwhere(np.isnan(s))
        if bad.size:
            r, c = (int(k) for k in bad[0])
            raise ValueError(f"scores have a NaN at row {r}, column {c}: no class is "
                             "predicted there (check the model's outputs)")
    return np.argmax(s, axis=1)


def _labels(labels, n: int, classes: int | None = None) -> np.ndarray:
    y = np.asarray(labels)
    if y.shape != (n,) or y.dtype.kind not in "iu":
        raise ValueError(f"labels must be {n} integer class numbers (one per row of scores), "
                         f"got shape {y.shape} and dtype {y.dtype}")
    if classes is not None and n and (y.min() < 0 or y.max() >= classes):
        raise ValueError(f"labels must lie in 0..{classes - 1} (one column of scores per class), "
                         f"got {y.min()}..{y.max()}")
    return y


def accuracy(scores, labels) -> float:
    """The fraction of rows whose largest score is at the true label's column."""
    pred = predicted_class(scores)
    y = _labels(labels, pred.shape[0], np.asarray(scores).shape[1])
    if not y.shape[0]:
        raise ValueError("accuracy of no samples is undefined")
    return float(np.mean(pred == y))


def confusion_matrix(scores, labels) -> np.ndarray:
    """``C[i, j]``: how many samples of true class ``i`` were predicted as class ``j``."""
    pred = predicted_class(scores)
    k = np.asarray(scores).shape[1]
    y = _labels(labels, pred.shape[0], k)
    out = np.zeros((k, k), dtype=np.int64)
    np.add.at(out, (y, pred), 1)
    return out
