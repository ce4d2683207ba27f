"""Learning-rate schedules: each formula against its closed form, composition, validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

import symgrad as sg
from symgrad import optim
from symgrad import schedules as S


@pytest.mark.parametrize(
    ("sched", "expected"),
    [
        (S.constant(0.3), lambda k: 0.3),
        (S.time_decay(0.2, decay=0.01), lambda k: 0.2 / (1 + 0.01 * k)),
        (S.step(0.5, step_size=3, gamma=0.1), lambda k: 0.5 * 0.1 ** math.floor(k / 3)),
        (S.exponential(0.5, gamma=0.9, step_size=4), lambda k: 0.5 * 0.9 ** (k / 4)),
        (
            S.cosine(0.4, decay_steps=10, alpha=0.1),
            lambda k: 0.4 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(k, 10) / 10))),
        ),
    ],
    ids=["constant", "time_decay", "step", "exponential", "cosine"],
)
def test_schedule_matches_closed_form(sched, expected):
    for k in range(25):
        assert sched(k) == pytest.approx(expected(k), rel=1e-15, abs=0)


def test_time_decay_is_the_seed_formula():
    # MATLAB seed: learn_rate = initialLearnRate / (1 + decay*iteration), k the 0-based step
    lr = S.time_decay(0.2, decay=0.01)
    assert lr(0) == 0.2
    assert lr(100) == pytest.approx(0.1, rel=1e-15)


def test_step_is_piecewise_constant():
    s = S.step(1.0, step_size=2, gamma=0.5)
    assert [s(k) for k in range(6)] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]


def test_cosine_endpoints_and_flat_tail():
    s = S.cosine(1.0, decay_steps=8, alpha=0.25)
    assert s(0) == 1.0
    assert s(4) == pytest.approx(0.625, rel=1e-15)
    assert s(8) == pytest.approx(0.25, rel=1e-15)
    assert s(100) == s(8)


def test_warmup_linear_then_wrapped_schedule_restarts_its_clock():
    inner = S.cosine(1.0, decay_steps=4)
    s = S.warmup(inner, steps=4, start=0.2)
    assert [s(k) for k in range(4)] == pytest.approx([0.2, 0.4, 0.6, 0.8], rel=1e-15)
    for k in range(4, 12):
        assert s(k) == inner(k - 4)


def test_warmup_of_a_float_and_of_a_plain_function():
    assert [S.warmup(0.1, steps=2)(k) for k in range(4)] == pytest.approx([0.0, 0.05, 0.1, 0.1])
    s = S.warmup(lambda k: 1.0 / (k + 1), steps=1)
    assert s(0) == 0.0
    assert s(3) == 1.0 / 3


def test_values_equals_step_by_step_calls():
    for sched in [S.constant(0.1), S.exponential(1.0, 0.5, 3), S.warmup(S.step(1, 2), 3), 0.25]:
        arr = S.values(sched, 20)
        call = S.as_schedule(sched)
        assert arr.dtype == np.float64
        assert arr.shape == (20,)
        assert all(arr[k] == call(k) for k in range(20))
    assert S.values(0.1, 0).shape == (0,)


def test_values_rejects_a_schedule_that_goes_bad():
    with pytest.raises(ValueError, match="step 3"):
        S.values(lambda k: 1.0 if k < 3 else float("nan"), 5)
    with pytest.raises(ValueError, match="invalid learning rate"):
        S.values(lambda k: -1.0, 2)
    with pytest.raises(ValueError, match=r"invalid learning rate -0.1 at step 0"):
        S.values(S.Constant(-0.1), 2)  # the class built directly skips constant()'s check


@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("lr", [-0.1, float("nan")])
def test_a_bad_constant_is_refused_by_both_loops(compiled, lr):
    """Constant(-0.1) ran gradient ascent to 'completed' in the compiled loop."""
    f = sg.compile((sg.params("q_const") - 1.0) ** 2)
    with pytest.raises(ValueError, match=r"invalid learning rate .* at step 0"):
        sg.minimize(f, [0.0], optimizer=optim.sgd(lr=S.Constant(lr)), steps=5,
                    compiled=compiled)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: S.time_decay(-0.1, 0.01), "lr0"),
        (lambda: S.time_decay(0.1, -1.0), "decay"),
        (lambda: S.step(0.1, 0), "step_size"),
        (lambda: S.step(0.1, 2.5), "step_size"),
        (lambda: S.exponential(0.1, 0.0), "gamma"),
        (lambda: S.cosine(0.1, 10, alpha=2.0), "alpha"),
        (lambda: S.warmup(0.1, steps=0), "steps"),
        (lambda: S.constant(float("inf")), "value"),
    ],
)
def test_invalid_arguments_are_named(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_as_schedule_types():
    assert S.as_schedule(0.1)(7) == 0.1
    f = lambda k: 0.5  # noqa: E731
    assert S.as_schedule(f) is f
    with pytest.raises(TypeError, match="float or a schedule"):
        S.as_schedule("0.1")
    with pytest.raises(TypeError, match="float or a schedule"):
        S.as_schedule(True)


def test_schedules_are_frozen_and_hashable():
    s = S.time_decay(0.2, 0.01)
    assert s == S.time_decay(0.2, 0.01)
    assert hash(s) == hash(S.time_decay(0.2, 0.01))
    with pytest.raises(AttributeError):
        s.lr0 = 1.0  # type: ignore[misc]
