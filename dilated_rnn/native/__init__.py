"""The fused C++ kernels of the dilated recurrences (`drnn_ops.cc`).

`load()` returns the op library (`dilated_rnn_forward`,
`dilated_rnn_backward`), or None when it cannot be had (see
`ind_rnn.native.build.load_op_library`, which builds it with g++ on first
use and caches it); callers then run the XLA or plain TensorFlow loops of
`dilated_rnn.kernels`, which compute the same numbers. Set
`DILATED_RNN_NATIVE=0` to never build it, `DILATED_RNN_CACHE` to choose the
cache folder (default `~/.cache/dilated_rnn`).
"""
import functools
import os

from ind_rnn.native import build

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                      "drnn_ops.cc")
_PACKAGE, _SWITCH, _CACHE = "dilated_rnn", "DILATED_RNN_NATIVE", "DILATED_RNN_CACHE"


def library_path():
    """Where the library built for this source, TensorFlow and CPU lives."""
    return build.library_path(SOURCE, build.cache_dir(_PACKAGE, _CACHE))


@functools.lru_cache(maxsize=None)
def load():
    """The op library, or None."""
    return build.load_op_library(SOURCE, _PACKAGE, _SWITCH, _CACHE)
