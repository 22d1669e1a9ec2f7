"""Weight schedules: constant, linear, log_linear (RAVE's β warm-up) and cyclic annealing."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lyra_core import BuildContext, SpecError, WeightScheduleRef
from lyra_core.spec import structure
from lyra_core.testing import check_component

NAMES = ["constant", "linear", "log_linear", "cyclic"]


def schedule(registry, data: dict):
    spec = structure(data, WeightScheduleRef, registry)
    return spec.build(BuildContext(registry=registry))


@pytest.mark.parametrize("name", NAMES)
def test_contract(registry, name):
    fn = check_component(registry, "weight_schedule", name)
    assert isinstance(fn(0), float) and isinstance(fn(10**6), float)


def test_constant(registry):
    fn = schedule(registry, {"type": "constant", "value": 0.25})
    assert {fn(s) for s in (0, 1, 10**7)} == {0.25}


def test_linear_ramps_between_its_steps_and_holds_outside(registry):
    fn = schedule(
        registry, {"type": "linear", "start": 0.0, "end": 2.0, "start_step": 100, "end_step": 300}
    )
    assert [fn(s) for s in (0, 100, 150, 200, 300, 10**6)] == pytest.approx(
        [0.0, 0.0, 0.5, 1.0, 2.0, 2.0]
    )


def test_the_seeds_epoch_kl_annealing_is_a_linear_schedule_in_steps(registry):
    # kl_anneal_epochs = 5 with 200 steps per epoch: the weight reaches 1 after 1000 steps
    epochs, steps_per_epoch = 5, 200
    fn = schedule(registry, {"type": "linear", "end_step": epochs * steps_per_epoch})
    assert fn(0) == 0.0
    assert fn(2 * steps_per_epoch) == pytest.approx(2 / epochs)
    assert fn(epochs * steps_per_epoch) == 1.0


@given(
    start=st.floats(-10, 10),
    end=st.floats(-10, 10),
    start_step=st.integers(0, 1000),
    span=st.integers(1, 1000),
    steps=st.lists(st.integers(0, 3000), min_size=2, max_size=8),
)
def test_linear_is_monotone_and_bounded(plugins, start, end, start_step, span, steps):
    data = {"type": "linear", "start": start, "end": end}
    fn = schedule(
        plugins.registry, {**data, "start_step": start_step, "end_step": start_step + span}
    )
    values = [fn(s) for s in sorted(steps)]
    lo, hi = min(start, end), max(start, end)
    assert all(lo - 1e-9 <= v <= hi + 1e-9 for v in values)
    pairs = list(itertools.pairwise(values))
    if end >= start:
        assert all(a <= b + 1e-9 for a, b in pairs)
    else:
        assert all(a >= b - 1e-9 for a, b in pairs)


def test_log_linear_defaults_are_raves_beta_warmup(registry):
    fn = schedule(registry, {"type": "log_linear"})
    assert fn(0) == pytest.approx(1e-6)
    assert fn(20000) == pytest.approx(5e-2)
    assert fn(10**6) == pytest.approx(5e-2)
    # geometric: equal steps multiply the weight by equal factors
    assert fn(10000) == pytest.approx(math.sqrt(1e-6 * 5e-2))
    for step in (1234, 5000, 17000):  # RAVE: exp(t·(ln max − ln min) + ln min), t = step / warmup
        t = step / 20000
        expected = math.exp(t * (math.log(5e-2) - math.log(1e-6)) + math.log(1e-6))
        assert fn(step) == pytest.approx(expected, rel=1e-12)


def test_cyclic_ramps_then_holds_and_repeats(registry):
    fn = schedule(registry, {"type": "cyclic", "period": 100, "ramp_fraction": 0.5})
    assert [fn(s) for s in (0, 25, 50, 75, 99)] == pytest.approx([0.0, 0.5, 1.0, 1.0, 1.0])
    assert all(fn(s) == fn(s + 100) == fn(s + 700) for s in range(0, 100, 7))


def test_cyclic_start_step_and_a_finite_number_of_cycles(registry):
    data = {"type": "cyclic", "period": 10, "ramp_fraction": 1.0, "start": 0.2, "end": 0.4}
    fn = schedule(registry, {**data, "start_step": 5, "cycles": 2})
    assert fn(0) == fn(5) == fn(15) == pytest.approx(0.2)
    assert fn(10) == pytest.approx(0.3)
    assert fn(25) == fn(26) == fn(10**6) == pytest.approx(0.4)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"type": "linear", "start_step": 10, "end_step": 10}, "must be greater than start_step"),
        ({"type": "linear", "start_step": -1}, "start_step must be >= 0"),
        ({"type": "log_linear", "start": 0.0}, "start must be positive"),
        ({"type": "cyclic", "ramp_fraction": 0.0}, r"ramp_fraction must be in \(0, 1\]"),
        ({"type": "cyclic", "period": 0}, "period must be positive"),
        ({"type": "cyclic", "cycles": 0}, "cycles must be positive"),
        ({"type": "linear", "ends": 1.0}, "unexpected field 'ends'; did you mean 'end'"),
    ],
)
def test_bad_schedules_are_spec_errors(registry, data, message):
    with pytest.raises(SpecError, match=message):
        structure(data, WeightScheduleRef, registry)
