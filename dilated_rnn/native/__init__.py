"""The fused C++ kernels of the dilated recurrences (`drnn_ops.cc`), compiled on first use.

`load()` returns the op library (`dilated_rnn_forward`, `dilated_rnn_backward`),
or None when it cannot be built (no C++ compiler, a build error,
`DILATED_RNN_NATIVE=0`): callers then run the XLA or plain TensorFlow loops of
`dilated_rnn.kernels`, which compute the same numbers. Building and caching
(per source, TensorFlow version and CPU, under `$DILATED_RNN_CACHE`, default
`~/.cache/dilated_rnn`) is `ind_rnn.native.build`'s, shared with the IndRNN
kernels.
"""
import functools
import os

from ind_rnn.native import build

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "drnn_ops.cc")
_PACKAGE, _SWITCH, _CACHE = "dilated_rnn", "DILATED_RNN_NATIVE", "DILATED_RNN_CACHE"


def library_path():
    """Where the compiled library for this source, TF and CPU is cached."""
    return build.library_path(SOURCE, build.cache_dir(_PACKAGE, _CACHE))


@functools.lru_cache(maxsize=None)
def load():
    """The op library, or None if the kernels cannot be built or loaded."""
    return build.load_op_library(SOURCE, _PACKAGE, _SWITCH, _CACHE)
