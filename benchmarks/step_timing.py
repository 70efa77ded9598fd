"""The timing loops and the `fit` timer the benchmarks share (run them as
`python benchmarks/<script>.py`)."""
import statistics
import time

import keras


def _timed(step):
    """Wall seconds of one `step()`; `.numpy()` waits for it, so asynchronous work is counted."""
    start = time.perf_counter()
    step().numpy()
    return time.perf_counter() - start


def median_step_seconds(step, warmup, repeats):
    """Median wall seconds of `step()` over `repeats` calls, after `warmup` untimed ones.

    `step` returns a tensor; `.numpy()` waits for it, so asynchronous work
    is counted.
    """
    for _ in range(warmup):
        step().numpy()
    return statistics.median(_timed(step) for _ in range(repeats))


def interleaved_ratio(step, baseline, warmup, rounds, steps_per_round=3):
    """Time of `step()` over `baseline()`'s, from rounds that alternate the two.

    A ratio of two medians taken a minute apart carries the machine's drift
    over that minute; here each round times `steps_per_round` calls of one,
    then of the other (the order alternates between rounds, so neither always
    runs first), and the ratio is taken within the round.

    Returns:
        (median step seconds, median baseline seconds, median of the rounds'
        ratios, (lowest, highest) ratio over the rounds).
    """
    for _ in range(warmup):
        step().numpy()
        baseline().numpy()
    def round_median(function):
        return statistics.median(_timed(function) for _ in range(steps_per_round))

    step_times, baseline_times, ratios = [], [], []
    for index in range(rounds):
        if index % 2 == 0:
            step_seconds, baseline_seconds = round_median(step), round_median(baseline)
        else:
            baseline_seconds, step_seconds = round_median(baseline), round_median(step)
        step_times.append(step_seconds)
        baseline_times.append(baseline_seconds)
        ratios.append(step_seconds / baseline_seconds)
    return (statistics.median(step_times), statistics.median(baseline_times),
            statistics.median(ratios), (min(ratios), max(ratios)))


class EpochTimer(keras.callbacks.Callback):
    """Wall and CPU seconds of each `fit` epoch (begin to end) and of its steps.

    `epochs` holds, per epoch, `(epoch wall, epoch CPU, [(step wall, step
    CPU), ...])`; CPU seconds are the process's, all threads together.
    """

    def __init__(self):
        super().__init__()
        self.epochs = []

    @staticmethod
    def _now():
        return time.perf_counter(), time.process_time()

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append((self._now(), []))

    def on_train_batch_begin(self, batch, logs=None):
        self._step = self._now()

    def on_train_batch_end(self, batch, logs=None):
        now = self._now()
        self.epochs[-1][1].append((now[0] - self._step[0], now[1] - self._step[1]))

    def on_epoch_end(self, epoch, logs=None):
        (wall, cpu), steps = self.epochs[-1]
        now = self._now()
        self.epochs[-1] = (now[0] - wall, now[1] - cpu, steps)

    def step_seconds(self, first_epoch=0):
        """Wall seconds of every step of the epochs from `first_epoch` on."""
        return [step[0] for epoch in self.epochs[first_epoch:] for step in epoch[2]]
