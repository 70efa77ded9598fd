"""The fused C++ IndRNN kernels, compiled on first use.

`load()` returns the loaded op library, or None when it cannot be had (no
C++ compiler, headers missing, `IND_RNN_NATIVE=0`, a build error): callers
then use the XLA or plain TensorFlow loop, which compute the same numbers.
The build needs nothing beyond TensorFlow's own headers and g++; it takes
about half a minute once and is cached per TensorFlow version, source and
CPU under `$IND_RNN_CACHE` (default `~/.cache/ind_rnn`).
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
SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "indrnn_ops.cc")
# The activations the kernels implement, by their Keras names.
ACTIVATIONS = ("relu", "tanh", "sigmoid", "linear")


def _cpu_signature():
    """What the `-march=native` build depends on: the CPU's feature flags."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            flags = next((line for line in cpuinfo if line.startswith("flags")), "")
    except OSError:
        flags = ""
    return platform.machine() + platform.processor() + flags


# Tried in order. `-march=native` vectorises for this CPU; AVX512-FP16 is
# switched off because TensorFlow's bundled Eigen headers fail to compile
# with it under gcc 12. The plain build is the portable fallback.
_OPTIMISATIONS = (["-O3", "-march=native", "-mno-avx512fp16"], ["-O3"])


def _build_flags(optimisation):
    return (["-shared", "-fPIC", "-w"] + optimisation + tf.sysconfig.get_compile_flags()
            + tf.sysconfig.get_link_flags())


def _library_path():
    with open(SOURCE, "rb") as source:
        key = hashlib.sha256(source.read() + tf.__version__.encode()
                             + _cpu_signature().encode()
                             + repr(_OPTIMISATIONS).encode()).hexdigest()[:16]
    cache = os.environ.get("IND_RNN_CACHE", os.path.join(os.path.expanduser("~"), ".cache",
                                                         "ind_rnn"))
    return os.path.join(cache, f"indrnn_ops_{key}.so")


def _compile(target):
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        raise RuntimeError("no C++ compiler (g++) found")
    os.makedirs(os.path.dirname(target), exist_ok=True)
    # Build beside the target, then rename: concurrent builds never see half a file.
    handle, partial = tempfile.mkstemp(suffix=".so", dir=os.path.dirname(target))
    os.close(handle)
    try:
        for optimisation in _OPTIMISATIONS:
            build = subprocess.run([compiler, SOURCE, "-o", partial] + _build_flags(optimisation),
                                   capture_output=True, text=True, timeout=600, check=False)
            if build.returncode == 0:
                os.replace(partial, target)
                return
        raise RuntimeError(f"compiling {SOURCE} failed:\n{build.stderr[-2000:]}")
    finally:
        if os.path.exists(partial):
            os.remove(partial)


@functools.lru_cache(maxsize=None)
def load():
    """The op library (with `ind_rnn_forward`, `ind_rnn_backward`), or None."""
    if os.environ.get("IND_RNN_NATIVE", "1") == "0":
        return None
    try:
        target = _library_path()
        if not os.path.exists(target):
            _LOG.info("Compiling the IndRNN CPU kernels (once) into %s", target)
            _compile(target)
        return tf.load_op_library(target)
    except Exception as error:  # pylint: disable=broad-except
        _LOG.warning("The fused IndRNN CPU kernels are unavailable (%s); using the "
                     "XLA / TensorFlow loop instead.", error)
        return None
