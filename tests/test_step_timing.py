"""`benchmarks/step_timing.py`, the benchmarks' timing loops, on a simulated clock.

The machine's drift is simulated: every call costs more than the one before,
as on a machine whose load grows during a run. The interleaved ratio must
still give the true ratio of the two costs, and alternate which runs first.
"""
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
import step_timing  # noqa: E402  (benchmarks/step_timing.py)


class _Done:
    def numpy(self):
        return 0.0


class _DriftingMachine:
    """A clock, and steps that advance it by `cost * (1 + drift * calls so far)`."""

    def __init__(self, drift):
        self.now, self.calls, self.drift, self.order = 0.0, 0, drift, []

    def perf_counter(self):
        return self.now

    def step(self, name, cost):
        def run():
            self.order.append(name)
            self.now += cost * (1.0 + self.drift * self.calls)
            self.calls += 1
            return _Done()
        return run


@pytest.fixture(name="machine")
def _machine(monkeypatch):
    machine = _DriftingMachine(drift=0.05)
    monkeypatch.setattr(step_timing.time, "perf_counter", machine.perf_counter)
    return machine


def test_median_step_seconds_skips_warmup(machine):
    machine.drift = 0.0
    step = machine.step("a", 2.0)
    assert step_timing.median_step_seconds(step, warmup=2, repeats=3) == pytest.approx(2.0)
    assert machine.order == ["a"] * 5


def test_interleaved_ratio_cancels_drift_and_alternates(machine):
    native, floor = machine.step("native", 3.0), machine.step("floor", 2.0)
    _, _, ratio, (low, high) = step_timing.interleaved_ratio(native, floor, warmup=1, rounds=4,
                                                             steps_per_round=1)
    # Within a round the later of the two pays one call's more drift, so the
    # rounds' ratios straddle 1.5 and their median is near it.
    assert low < 1.5 < high
    assert ratio == pytest.approx(1.5, rel=0.03)
    # Warm-up, then rounds alternating who goes first.
    assert machine.order == ["native", "floor", "native", "floor", "floor", "native",
                             "native", "floor", "floor", "native"]


def test_separate_medians_would_carry_the_drift(machine):
    """What the interleaving avoids: medians taken one after the other."""
    native, floor = machine.step("native", 3.0), machine.step("floor", 2.0)
    first = step_timing.median_step_seconds(native, warmup=1, repeats=5)
    second = step_timing.median_step_seconds(floor, warmup=1, repeats=5)
    assert first / second < 1.3  # far from 1.5: the floor ran on a slower machine


def test_epoch_timer_splits_epochs_into_steps(monkeypatch):
    """The hooks by hand on a fake clock: an epoch's time holds its steps' and the gaps."""
    clock = {"wall": 0.0, "cpu": 0.0}
    monkeypatch.setattr(step_timing.time, "perf_counter", lambda: clock["wall"])
    monkeypatch.setattr(step_timing.time, "process_time", lambda: clock["cpu"])
    timer = step_timing.EpochTimer()

    def advance(wall, cpu):
        clock["wall"] += wall
        clock["cpu"] += cpu

    for epoch in range(2):
        timer.on_epoch_begin(epoch)
        for batch in range(3):
            advance(0.5, 0.1)  # between steps: the iterator, callbacks
            timer.on_train_batch_begin(batch)
            advance(2.0 + epoch, 3.0)  # the step; epoch 1 is slower
            timer.on_train_batch_end(batch)
        advance(1.0, 0.0)
        timer.on_epoch_end(epoch)
    assert [len(steps) for _, _, steps in timer.epochs] == [3, 3]
    assert timer.epochs[0][:2] == pytest.approx((3 * 2.5 + 1.0, 3 * 3.1))
    assert timer.epochs[1][2] == [pytest.approx((3.0, 3.0))] * 3
    assert timer.step_seconds() == pytest.approx([2.0] * 3 + [3.0] * 3)
    assert timer.step_seconds(first_epoch=1) == pytest.approx([3.0] * 3)


def test_epoch_timer_under_fit():
    """Keras calls the hooks: every step of every epoch is timed, inside its epoch."""
    import keras
    import numpy as np

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    timer = step_timing.EpochTimer()
    x = np.zeros((12, 4), np.float32)
    model.fit(x, x[:, :1], batch_size=4, epochs=2, verbose=0, callbacks=[timer])
    assert [len(steps) for _, _, steps in timer.epochs] == [3, 3]
    for wall, _, steps in timer.epochs:
        assert 0 < sum(step[0] for step in steps) <= wall
    assert len(timer.step_seconds(first_epoch=1)) == 3
