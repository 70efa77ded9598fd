"""The fused C++ kernels of the dilated recurrences, compiled on first use.

`load()` returns the loaded op library (`dilated_rnn_forward`,
`dilated_rnn_backward`), or None when it cannot be had (no C++ compiler, a
build error, `DILATED_RNN_NATIVE=0`): callers then run the XLA or plain
TensorFlow loops of `dilated_rnn.kernels`, which compute the same numbers.
The build needs only TensorFlow's own headers and g++, runs once, and is
cached per TensorFlow version, source and CPU under `$DILATED_RNN_CACHE`
(default `~/.cache/dilated_rnn`).
"""
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile

import tensorflow as tf

_LOG = logging.getLogger(__name__)
SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                      "drnn_ops.cc")
# Tried in order: vectorised for this CPU (AVX512-FP16 off: TensorFlow's
# Eigen headers do not compile with it under gcc 12), then portable.
_OPTIMISATIONS = (["-O3", "-march=native", "-mno-avx512fp16"], ["-O3"])


def _cpu_flags():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            return next((line for line in cpuinfo
                         if line.startswith("flags")), "")
    except OSError:
        return ""


def library_path():
    """Where the compiled library for this source, TF and CPU is cached."""
    with open(SOURCE, "rb") as source:
        key = hashlib.sha256(
            source.read() + tf.__version__.encode()
            + (platform.machine() + _cpu_flags()).encode()
            + repr(_OPTIMISATIONS).encode()).hexdigest()[:16]
    cache = os.environ.get("DILATED_RNN_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "dilated_rnn")
    return os.path.join(cache, f"drnn_ops_{key}.so")


def _compile(target):
    compiler = os.environ.get("CXX") or shutil.which("g++")
    if compiler is None:
        raise RuntimeError("no C++ compiler (g++) found")
    os.makedirs(os.path.dirname(target), exist_ok=True)
    # Build beside the target and rename, so that a concurrent process never
    # loads half a file.
    handle, partial = tempfile.mkstemp(suffix=".so",
                                       dir=os.path.dirname(target))
    os.close(handle)
    try:
        for optimisation in _OPTIMISATIONS:
            build = subprocess.run(
                [compiler, SOURCE, "-o", partial, "-shared", "-fPIC", "-w"]
                + optimisation + tf.sysconfig.get_compile_flags()
                + tf.sysconfig.get_link_flags(),
                capture_output=True, text=True, timeout=900, check=False)
            if build.returncode == 0:
                os.replace(partial, target)
                return
        raise RuntimeError(f"compiling {SOURCE} failed:\n"
                           f"{build.stderr[-2000:]}")
    finally:
        if os.path.exists(partial):
            os.remove(partial)


@functools.lru_cache(maxsize=None)
def load():
    """The op library, or None if the kernels cannot be built or loaded."""
    if os.environ.get("DILATED_RNN_NATIVE", "1") == "0":
        return None
    try:
        target = library_path()
        if not os.path.exists(target):
            _LOG.info("Compiling the DilatedRNN CPU kernels (once) into %s",
                      target)
            _compile(target)
        return tf.load_op_library(target)
    except Exception as error:  # pylint: disable=broad-except
        _LOG.warning("The fused DilatedRNN CPU kernels are unavailable (%s);"
                     " using XLA / TensorFlow loops instead.", error)
        return None
