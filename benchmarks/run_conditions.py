"""What every benchmark prints about where it ran: CPU, kernel ISA level, load.

`apply_isa(level)` sets `$RNN_KERNELS_ISA` (see `ind_rnn.native.build`) before
any fused kernel is loaded, so each level is built and cached on its own.
`LoadMonitor` prints a header (CPU model, its x86-64 level, the level the
kernels are built for, load average, and how busy the machine was in the
second before the run) and, at the end, the load over the run: `/proc/stat`
steal and the CPU time other processes took, against this benchmark's own.
"""
import os
import sys
import time

from ind_rnn.native import build

ISA_HELP = ("instruction-set level of the fused C++ kernels: x86-64-v2 (SSE4.2), "
            "x86-64-v3 (AVX2 + FMA), x86-64-v4 (AVX-512), native, or any g++ -march "
            "value; sets $RNN_KERNELS_ISA, each level is built and cached on its own "
            "(default: $RNN_KERNELS_ISA, else native)")


def apply_isa(level):
    """Sets `$RNN_KERNELS_ISA` to `level` (if given) and checks it against this CPU.

    Raises:
        ValueError: the level needs a CPU this one is not.
    """
    if level:
        os.environ[build.ISA_VARIABLE] = level
    return build.requested_isa()


def apply_isa_or_exit(level):
    """`apply_isa` for an argparse script: a level this CPU cannot run ends it, with why."""
    try:
        return apply_isa(level)
    except ValueError as error:
        sys.exit(str(error))


def apply_isa_flag(level):
    """`apply_isa` for an absl script: a level this CPU cannot run is a usage error."""
    from absl import app  # pylint: disable=import-outside-toplevel
    try:
        return apply_isa(level)
    except ValueError as error:
        raise app.UsageError(str(error)) from error


def load_kernels(name, load, path):
    """Loads a kernel library (building it if `path` is not cached); returns a header line."""
    cached = os.path.exists(path)
    start = time.perf_counter()
    loaded = load() is not None
    return (f"{name} C++ kernels: {'loaded' if loaded else 'UNAVAILABLE'} in "
            f"{time.perf_counter() - start:.1f} s "
            f"({'cached' if cached else 'built now, once per source and level'})")


def indrnn_library_path():
    """Where the IndRNN kernels of this source and level are cached."""
    # pylint: disable=import-outside-toplevel
    from ind_rnn import native
    return build.library_path(native.SOURCE, build.cache_dir("ind_rnn", "IND_RNN_CACHE"))


def _cpu_ticks():
    """(busy, steal, total) clock ticks of all CPUs from /proc/stat, or None."""
    try:
        with open("/proc/stat", encoding="utf-8") as stat:
            fields = [int(v) for v in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, _, _, irq, softirq, steal = fields
    return user + nice + system + irq + softirq, steal, sum(fields)


def _own_seconds():
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def _shares(before, after, own_seconds):
    """Percentages of the CPUs' time over an interval: steal, others, ours."""
    if before is None or after is None or after[2] <= before[2]:
        return None
    hz = os.sysconf("SC_CLK_TCK")
    total = after[2] - before[2]
    steal = after[1] - before[1]
    others = max(0.0, (after[0] - before[0]) - own_seconds * hz)
    return 100 * steal / total, 100 * others / total, 100 * own_seconds * hz / total


def _load():
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


class LoadMonitor:
    """Header and footer lines on the machine and its load (lines start with "# ")."""

    def __init__(self):
        self._ticks = self._own = None

    def header(self, *lines):
        """Samples the machine for a second, then returns the header lines."""
        before, own = _cpu_ticks(), _own_seconds()
        time.sleep(1.0)
        shares = _shares(before, _cpu_ticks(), _own_seconds() - own)
        idle = ("" if shares is None else
                f"; in the second before the run: steal {shares[0]:.0f}%, other "
                f"processes {shares[1]:.0f}% of the CPUs' time")
        self._ticks, self._own = _cpu_ticks(), _own_seconds()
        return "\n".join([f"# {build.describe()}",
                          f"# {os.cpu_count()} CPUs, load average {_load()} at the start{idle}"]
                         + [f"# {line}" for line in lines])

    def footer(self):
        """The load over the run (since `header`)."""
        shares = _shares(self._ticks, _cpu_ticks(), _own_seconds() - self._own)
        over = ("" if shares is None else
                f"; over the run (/proc/stat): steal {shares[0]:.1f}%, other processes "
                f"{shares[1]:.0f}%, this benchmark {shares[2]:.0f}% of the CPUs' time")
        return f"# load average {_load()} at the end{over}"
