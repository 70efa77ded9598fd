"""The fused C++ IndRNN kernels (`indrnn_ops.cc`), compiled on first use.

`load()` returns the op library (`ind_rnn_forward`, `ind_rnn_backward`), or
None when it cannot be built (see `build.load_op_library`); set
`IND_RNN_NATIVE=0` to never build it, `IND_RNN_CACHE` to choose the cache
folder (default `~/.cache/ind_rnn`).
"""
import functools
import os

from ind_rnn.native.build import load_op_library

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "indrnn_ops.cc")


@functools.lru_cache(maxsize=None)
def load():
    """The op library, or None."""
    return load_op_library(SOURCE, "ind_rnn", "IND_RNN_NATIVE", "IND_RNN_CACHE")
