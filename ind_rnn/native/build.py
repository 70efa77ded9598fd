"""Compile a TensorFlow custom-op source with g++ on first use, and load it.

Shared by the fused kernels of `ind_rnn` and `dilated_rnn`. `load_op_library`
returns the loaded library, or None when it cannot be had (no C++ compiler,
headers missing, a build error, or the package's switch set to 0): callers
then use their XLA or plain TensorFlow loops, which compute the same numbers.
The build needs nothing beyond TensorFlow's own headers and g++; it runs once
and is cached per source, TensorFlow version, CPU and instruction-set level.

The level is `-march=native` unless the environment variable `RNN_KERNELS_ISA`
names another: `x86-64-v2` (SSE4.2, no AVX), `x86-64-v3` (AVX2 + FMA),
`x86-64-v4` (AVX-512), or any other `-march=` value g++ takes. It applies to
both packages' kernels; a level above what this CPU runs is refused, since
its library would stop the process with an illegal instruction.
"""
import ctypes
import functools
import glob
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile

import tensorflow as tf

_LOG = logging.getLogger(__name__)

ISA_VARIABLE = "RNN_KERNELS_ISA"
ALLOCATOR_VARIABLE = "RNN_KERNELS_TUNE_ALLOCATOR"
# glibc's mallopt parameters, and the values set once the kernels load.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD = 32 << 20   # the largest glibc takes: blocks below it come from the heap
_TRIM_THRESHOLD = 1 << 30    # free memory kept for reuse before it goes back to the system

# The CPU flags each x86-64 level needs (the psABI's levels, as /proc/cpuinfo
# names them); a level is runnable when this CPU has all of its flags and
# those of the levels below.
_X86_LEVELS = (
    ("x86-64-v2", ("cx16", "lahf_lm", "popcnt", "sse4_1", "sse4_2", "ssse3")),
    ("x86-64-v3", ("avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe")),
    ("x86-64-v4", ("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl")),
)


def _cpu_flags():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            line = next((line for line in cpuinfo if line.startswith("flags")), "")
    except OSError:
        line = ""
    return set(line.partition(":")[2].split())


def cpu_model():
    """The CPU's model name, as /proc/cpuinfo gives it (else `platform`'s)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_level():
    """The highest x86-64 level this CPU runs ("x86-64", ... "x86-64-v4"), or
    the machine name on other CPUs."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return platform.machine()
    flags, level = _cpu_flags(), "x86-64"
    for name, needed in _X86_LEVELS:
        if not flags.issuperset(needed):
            break
        level = name
    return level


def requested_isa():
    """The `-march=` value the kernels are built for: `$RNN_KERNELS_ISA` or
    "native".

    Raises:
        ValueError: the variable names an x86-64 level this CPU cannot run.
    """
    isa = os.environ.get(ISA_VARIABLE, "").strip() or "native"
    levels = [name for name, _ in _X86_LEVELS]
    if isa in levels:
        have = cpu_level()
        if have not in levels or levels.index(isa) > levels.index(have):
            raise ValueError(
                f"Received an invalid value for the environment variable `{ISA_VARIABLE}`: "
                f"{isa!r} needs a CPU at that level, and this one ({cpu_model()}) is "
                f"{have}. Use a level up to {have}, or unset it for -march=native.")
    return isa


def _optimisations(isa):
    """The g++ option sets, tried in order. AVX512-FP16 is switched off
    because TensorFlow's bundled Eigen headers fail to compile with it under
    gcc 12. Only -march=native falls back to the plain portable build: a level
    asked for by name is built at that level or not at all.

    -fno-trapping-math: the kernels never read the floating-point exception
    flags, and without it gcc 12 leaves loops whose ReLU derivative meets more
    than one use of the gradient scalar ("control flow in loop": it will not
    speculate a possibly trapping operation), 3x slower. It changes no value:
    NaN and inf propagate as before, no reassociation is allowed."""
    portable = ["-O3", "-fno-trapping-math"]
    chosen = portable + [f"-march={isa}", "-mno-avx512fp16"]
    return (chosen, portable) if isa == "native" else (chosen,)


def _cpu_signature():
    """What the `-march=native` build depends on: the CPU's feature flags."""
    return platform.machine() + platform.processor() + " ".join(sorted(_cpu_flags()))


def _build_flags(optimisation):
    return (["-shared", "-fPIC", "-w"] + optimisation + tf.sysconfig.get_compile_flags()
            + tf.sysconfig.get_link_flags())


def _source_text(source):
    """The source's bytes and those of the headers beside it (`*.h`, which it
    includes: the DilatedRNN kernels are split over several), in name order,
    so that a changed header is a new build."""
    folder = os.path.dirname(os.path.abspath(source))
    headers = sorted(glob.glob(os.path.join(folder, "*.h")))
    text = b""
    for path in [source] + headers:
        with open(path, "rb") as file:
            text += file.read()
    return text


def library_path(source, cache_dir, isa=None):
    """Where the library built from `source` for this TF, CPU and level
    (default: `requested_isa()`) is cached; the level is in the file name."""
    isa = isa or requested_isa()
    key = hashlib.sha256(_source_text(source) + tf.__version__.encode()
                         + _cpu_signature().encode()
                         + repr(_optimisations(isa)).encode()).hexdigest()[:16]
    stem = os.path.splitext(os.path.basename(source))[0]
    level = "".join(ch if ch.isalnum() or ch in "-." else "_" for ch in isa)
    return os.path.join(cache_dir, f"{stem}_{level}_{key}.so")


def describe():
    """One line for benchmark headers: CPU model, its level, the level built."""
    return (f"CPU: {cpu_model()} | CPU level: {cpu_level()} | kernels built with "
            f"-march={requested_isa()} (${ISA_VARIABLE})")


def _compile(source, target, isa):
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        raise RuntimeError("no C++ compiler (g++) found")
    os.makedirs(os.path.dirname(target), exist_ok=True)
    # Build beside the target, then rename: concurrent builds never see half a file.
    handle, partial = tempfile.mkstemp(suffix=".so", dir=os.path.dirname(target))
    os.close(handle)
    try:
        for optimisation in _optimisations(isa):
            build = subprocess.run([compiler, source, "-o", partial] + _build_flags(optimisation),
                                   capture_output=True, text=True, timeout=600, check=False)
            if build.returncode == 0:
                os.replace(partial, target)
                return
        raise RuntimeError(f"compiling {source} failed:\n{build.stderr[-2000:]}")
    finally:
        if os.path.exists(partial):
            os.remove(partial)


@functools.lru_cache(maxsize=None)
def tune_allocator():
    """Lets large CPU tensors reuse memory instead of fresh pages, once per process.

    A training step allocates its large tensors anew (the kernels' outputs:
    an LSTM layer's gate activations are 32 MB at the pixel-MNIST demo's
    size, and the gradients of the same size). TensorFlow's default CPU
    allocator takes them from glibc's malloc, which serves such blocks with
    fresh `mmap` pages and returns them when freed, so every step pays a page
    fault and a zeroed page for every 4 KB. On a 2-core AVX2 machine that was
    half of the demo's LSTM step (0.25-0.27 s against 0.13 s), 8,000 faults
    per call of a step with one 32 MB tensor.

    Called when `ind_rnn` or `dilated_rnn` is imported. It sets
    `TF_CPU_ALLOCATOR_USE_BFC=true` unless the variable is set already:
    TensorFlow then pools its CPU memory (its BFC allocator, as on GPU). This
    takes effect only if TensorFlow has not yet run an op in this process
    (importing TensorFlow first is fine). As a fallback it also lets glibc
    keep freed large blocks for reuse (mmap threshold 32 MB, trim threshold
    1 GB, as MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ would; skipped
    if either is set, and off glibc). Either way the process keeps memory it
    freed for reuse, up to its peak use. `RNN_KERNELS_TUNE_ALLOCATOR=0`
    (set before the import) turns all of this off.

    Returns:
        Whether anything was changed.
    """
    if os.environ.get(ALLOCATOR_VARIABLE, "1") == "0":
        return False
    changed = "TF_CPU_ALLOCATOR_USE_BFC" not in os.environ
    os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return changed
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS, Windows)
        return changed
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    tuned = (mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) == 1
             and mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) == 1)
    return changed or tuned


def cache_dir(package, cache_variable):
    """The cache folder: `$<cache_variable>`, else `~/.cache/<package>`."""
    return os.environ.get(cache_variable) or os.path.join(os.path.expanduser("~"), ".cache",
                                                          package)


def load_op_library(source, package, switch_variable, cache_variable):
    """Builds (once) and loads the custom-op library of `source`.

    Args:
        source: path of the C++ source.
        package: name used in log messages and as the cache sub-folder.
        switch_variable: environment variable; "0" disables the build.
        cache_variable: environment variable naming the cache folder
            (default `~/.cache/<package>`).

    Returns:
        The module `tf.load_op_library` returns, or None (a warning is logged).

    Raises:
        ValueError: `$RNN_KERNELS_ISA` names a level this CPU cannot run.
    """
    if os.environ.get(switch_variable, "1") == "0":
        return None
    isa = requested_isa()  # a bad setting is the user's error: raised, not logged
    try:
        target = library_path(source, cache_dir(package, cache_variable), isa)
        if not os.path.exists(target):
            # Said on stderr, not only logged: the build takes 15-30 s, once per
            # source and level, and a first run (the README's demo) would
            # otherwise sit silent for that long before its first line.
            print(f"{package}: compiling the C++ CPU kernels for -march={isa}, once "
                  f"(15-30 s; cached in {os.path.dirname(target)})", file=sys.stderr,
                  flush=True)
            _compile(source, target, isa)
        return tf.load_op_library(target)
    except Exception as error:  # pylint: disable=broad-except
        _LOG.warning("The fused %s CPU kernels are unavailable (%s); using the XLA / "
                     "TensorFlow loop instead.", package, error)
        return None
