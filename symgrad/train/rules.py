"""The element-wise update rules of the first-order optimizers, one definition each.

A rule takes ``(x, g, *state, lr, k, *hyper)`` and returns ``(x, *state)``: NumPy arrays in the
Python loop, floats in the compiled loop (which jits the rule by name). :mod:`symgrad.train.optim`
builds the optimizers from them.

>>> sgd_rule(1.0, 2.0, 0.1, 0)
(0.8,)
"""

from __future__ import annotations

import numpy as np

__all__ = ["adagrad_rule", "adam_rule", "momentum_rule", "nesterov_rule", "rmsprop_rule",
           "sgd_rule"]


def sgd_rule(x, g, lr, k):
    """``x <- x - lr*g``"""
    return (x - lr * g,)


def momentum_rule(x, g, v, lr, k, beta):
    """``v <- beta*v - lr*g``;  ``x <- x + v``"""
    v = beta * v - lr * g
    return x + v, v


def nesterov_rule(x, g, v, lr, k, beta):
    """``v <- beta*v - lr*g``;  ``x <- x + beta*v - lr*g`` (with the new ``v``)"""
    v = beta * v - lr * g
    return x + beta * v - lr * g, v


def adam_rule(x, g, m, v, lr, k, b1, b2, eps):
    """``m <- b1*m + (1-b1)*g``; ``v <- b2*v + (1-b2)*g*g``; ``t = k + 1``;
    ``x <- x - lr * (m/(1-b1**t)) / (sqrt(v/(1-b2**t)) + eps)``"""
    t = k + 1.0
    m = b1 * m + (1.0 - b1) * g
    v = b2 * v + (1.0 - b2) * (g * g)
    return x - lr * (m / (1.0 - b1**t)) / (np.sqrt(v / (1.0 - b2**t)) + eps), m, v


def rmsprop_rule(x, g, s, lr, k, rho, eps):
    """``s <- rho*s + (1-rho)*g*g``;  ``x <- x - lr*g / (sqrt(s) + eps)``"""
    s = rho * s + (1.0 - rho) * (g * g)
    return x - lr * g / (np.sqrt(s) + eps), s


def adagrad_rule(x, g, s, lr, k, eps):
    """``s <- s + g*g``;  ``x <- x - lr*g / (sqrt(s) + eps)``"""
    s = s + g * g
    return x - lr * g / (np.sqrt(s) + eps), s
