"""The fused C++ kernels of the dilated recurrences (`drnn_ops.cc` and its headers).

`sequence(...)` runs one dilated layer through them, differentiably;
`available(dtype)` says whether they can. `load()` returns the op library
(`dilated_rnn_forward`, `dilated_rnn_backward`), or None when it cannot be had (see
`ind_rnn.native.build.load_op_library`, which builds it with g++ on first
use and caches it); callers then run the XLA or plain TensorFlow loops of
`dilated_rnn.kernels`, which compute the same numbers. Set
`DILATED_RNN_NATIVE=0` to never build it, `DILATED_RNN_CACHE` to choose the
cache folder (default `~/.cache/dilated_rnn`).
"""
import functools
import os

import tensorflow as tf

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


def available(dtype):
    """Whether the fused C++ kernels can run a recurrence of this dtype."""
    return (dtype in (tf.float32, tf.float64)
            and not tf.config.list_logical_devices("GPU")
            and load() is not None)


def sequence(kind, inputs, input_kernel, bias, kernels, mask=None, forget_bias=1.0, rate=1,
             phases=None):
    """Runs a dilated recurrence with the fused C++ kernels.

    Like `dilated_rnn.kernels.fused_sequence`, but on the raw, undilated inputs
    `[time, batch, depth]`: the kernels read dilated step `i` (times
    `i*rate ... i*rate + rate - 1`, phase-major) in place, so no padding or
    interleaving copy is made; they do the input projection
    `inputs @ input_kernel + bias` themselves (for "gru", `input_kernel` and
    `bias` hold the gate and the candidate parts side by side) and return all
    gradients. Of the tensors of the projected sequence's size, only the
    LSTM's and GRU's gate activations are stored, for the backward pass.
    The backward pass skips the rows and steps that no nonzero gradient
    reaches (exactly zero gradients there): with a loss on the last output
    only, a layer of dilation r gets gradients on 1 / r of its rows. Rows
    with a non-finite input or state, or any non-finite weight, skip nothing,
    so NaN and inf reach the gradients as in the reference.

    Args:
        kind: "rnn", "lstm" or "gru".
        inputs: `[time, batch, depth]`, float32 or float64 (see `available`).
        input_kernel: `[depth, gates * units]`.
        bias: `[gates * units]`.
        kernels: the recurrent kernels, `(W_h,)` or, for "gru",
            `(W_gate_h, W_candidate_h)`.
        mask: `None` or boolean `[time, batch]`; masked steps keep the state.
        forget_bias: added to the LSTM's forget gate.
        rate: the dilation.
        phases: `None`, or the phases (ints in `[0, rate)`) whose outputs
            are read: the others' gradients must be zero (nothing may read
            them), as in a stack whose caller reads only some outputs
            (`dilated_rnn.dilation.phases_read`). The kernels then skip each
            other phase whose inputs (and the weights) are all finite: its
            states are zeros. Any other phase is computed, so that NaN and
            inf reach the gradients as they do without `phases`.

    Returns:
        The hidden states `[time, batch, units]`: state `t` follows from
        state `t - rate`.
    """
    ops = load()
    candidate = (kernels[1] if kind == "gru"
                 else tf.zeros([0, 0], inputs.dtype))
    attrs = dict(cell=kind, forget_bias=forget_bias,
                 has_mask=mask is not None, rate=rate)
    read = [] if phases is None else sorted(int(q) for q in phases)
    mask = tf.zeros([0], tf.bool) if mask is None else mask

    @tf.custom_gradient
    def run(inputs, input_kernel, bias, kernel, candidate):
        hidden, cells, gates, finite, computed = ops.dilated_rnn_forward(
            inputs, input_kernel, bias, kernel, candidate, mask, phases=read,
            **attrs)

        def grad(d_hidden):
            # `finite` says which rows may skip their zero gradients exactly,
            # `computed` which phases the forward pass computed.
            return tuple(ops.dilated_rnn_backward(
                inputs, input_kernel, bias, kernel, candidate, mask, hidden,
                cells, gates, finite, computed, d_hidden, **attrs))

        return hidden, grad

    return run(inputs, input_kernel, bias, kernels[0], candidate)
