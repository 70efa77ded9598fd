"""The timing loop the IndRNN benchmarks share (run them as `python benchmarks/<script>.py`)."""
import statistics
import time


def median_step_seconds(step, warmup, repeats):
    """Median wall seconds of `step()` over `repeats` calls, after `warmup` untimed ones.

    `step` returns a tensor; `.numpy()` waits for it, so asynchronous work
    is counted.
    """
    for _ in range(warmup):
        step().numpy()
    durations = []
    for _ in range(repeats):
        start = time.perf_counter()
        step().numpy()
        durations.append(time.perf_counter() - start)
    return statistics.median(durations)
