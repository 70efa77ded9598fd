"""Compile a TensorFlow custom-op source with g++ on first use, and load it.

Shared by the fused kernels of `ind_rnn` and `dilated_rnn`. `load_op_library`
returns the loaded library, or None when it cannot be had (no C++ compiler,
headers missing, a build error, or the package's switch set to 0): callers
then use their XLA or plain TensorFlow loops, which compute the same numbers.
The build needs nothing beyond TensorFlow's own headers and g++; it runs once
and is cached per source, TensorFlow version and CPU.
"""
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile

import tensorflow as tf

_LOG = logging.getLogger(__name__)

# Tried in order. `-march=native` vectorises for this CPU; AVX512-FP16 is
# switched off because TensorFlow's bundled Eigen headers fail to compile
# with it under gcc 12. The plain build is the portable fallback.
_OPTIMISATIONS = (["-O3", "-march=native", "-mno-avx512fp16"], ["-O3"])


def _cpu_signature():
    """What the `-march=native` build depends on: the CPU's feature flags."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            flags = next((line for line in cpuinfo if line.startswith("flags")), "")
    except OSError:
        flags = ""
    return platform.machine() + platform.processor() + flags


def _build_flags(optimisation):
    return (["-shared", "-fPIC", "-w"] + optimisation + tf.sysconfig.get_compile_flags()
            + tf.sysconfig.get_link_flags())


def library_path(source, cache_dir):
    """Where the library built from `source` for this TF and CPU is cached."""
    with open(source, "rb") as source_file:
        key = hashlib.sha256(source_file.read() + tf.__version__.encode()
                             + _cpu_signature().encode()
                             + repr(_OPTIMISATIONS).encode()).hexdigest()[:16]
    stem = os.path.splitext(os.path.basename(source))[0]
    return os.path.join(cache_dir, f"{stem}_{key}.so")


def _compile(source, target):
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        raise RuntimeError("no C++ compiler (g++) found")
    os.makedirs(os.path.dirname(target), exist_ok=True)
    # Build beside the target, then rename: concurrent builds never see half a file.
    handle, partial = tempfile.mkstemp(suffix=".so", dir=os.path.dirname(target))
    os.close(handle)
    try:
        for optimisation in _OPTIMISATIONS:
            build = subprocess.run([compiler, source, "-o", partial] + _build_flags(optimisation),
                                   capture_output=True, text=True, timeout=600, check=False)
            if build.returncode == 0:
                os.replace(partial, target)
                return
        raise RuntimeError(f"compiling {source} failed:\n{build.stderr[-2000:]}")
    finally:
        if os.path.exists(partial):
            os.remove(partial)


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
    """
    if os.environ.get(switch_variable, "1") == "0":
        return None
    try:
        target = library_path(source, cache_dir(package, cache_variable))
        if not os.path.exists(target):
            _LOG.info("Compiling the %s CPU kernels (once) into %s", package, target)
            _compile(source, target)
        return tf.load_op_library(target)
    except Exception as error:  # pylint: disable=broad-except
        _LOG.warning("The fused %s CPU kernels are unavailable (%s); using the XLA / "
                     "TensorFlow loop instead.", package, error)
        return None
