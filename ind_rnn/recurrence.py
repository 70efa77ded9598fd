"""The IndRNN recurrence over a whole sequence: `indrnn_scan` and `project_and_scan`.

`h_t = act(z_t + u * h_{t-1})` with `z_t = x_t @ W + b` and `u` a vector: every
unit recurs only on itself. The step itself is defined once, in
`ind_rnn.step` (`indrnn_step`, re-exported here with `project_inputs` and
`effective_recurrent_weight`), and used by `IndRNNCell` one step at a time;
`indrnn_scan` runs the same step over a whole time-major sequence for the
fast `IndRNN` layer, choosing the engine: the C++ kernels ("native"), or the
TensorFlow loops of `ind_rnn.tf_loops` ("xla", "tf").

Why `indrnn_scan` is fast:
* the input projection `z` is computed for all steps before the loop (one big
  matmul), so the loop only does elementwise work;
* the loop is compiled with XLA when available (per-iteration overhead of a
  few microseconds instead of a TF executor dispatch per op);
* the gradient is written by hand: the backward pass of the elementwise
  recurrence is the linear recurrence `g_{t-1} = e_{t-1} + u * act'_t * g_t`,
  a single fused multiply-add per step, and `act'` is computed for all steps
  at once from the stored states.
"""
import functools
import logging

import keras
import tensorflow as tf

from ind_rnn import _checks, native
from ind_rnn.step import (effective_recurrent_weight, indrnn_step,  # noqa: F401 (re-exported)
                           matmul_last_axis, project_inputs)
from ind_rnn.tf_loops import compiled_loops

_LOG = logging.getLogger(__name__)


@functools.lru_cache(maxsize=None)
def xla_available():
    """True if this TensorFlow can JIT-compile with XLA on the default device."""
    with tf.init_scope():  # run eagerly even when asked while tracing
        try:
            probe = tf.function(lambda x: x * 2.0 + 1.0, jit_compile=True)
            probe(tf.ones([2]))
            return True
        except Exception as error:  # pylint: disable=broad-except
            _LOG.warning("XLA is unavailable (%s); IndRNN uses its plain TF loop.", error)
            return False


IMPLEMENTATIONS = ("auto", "native", "xla", "tf")


def _native_activation_name(activation):
    names = {keras.activations.relu: "relu", keras.activations.tanh: "tanh",
             keras.activations.sigmoid: "sigmoid", keras.activations.linear: "linear"}
    return names.get(activation)


def _native_applies(projected, activation):
    """Whether the fused C++ kernels can run this scan."""
    return (projected.dtype in (tf.float32, tf.float64)
            and _native_activation_name(activation) is not None
            and native.load() is not None)


def resolve_implementation(implementation, projected, activation):
    """Picks the loop that runs a scan: 'native', 'xla' or 'tf'.

    'auto' takes the fused C++ CPU kernels when they apply (float32/64, a
    ReLU/tanh/sigmoid/linear activation, no GPU visible), else the XLA loop
    when XLA works, else the plain TensorFlow loop. Asking for 'native' where
    it does not apply falls back the same way, with a warning.
    """
    if implementation not in IMPLEMENTATIONS:
        raise ValueError("Received an invalid value for argument `implementation`, expected "
                         f"one of {IMPLEMENTATIONS}, got {implementation!r}.")
    if implementation == "native" and not _native_applies(projected, activation):
        _LOG.warning("implementation='native' does not apply to dtype %s / activation %s "
                     "(or the kernels could not be built); using another loop.",
                     projected.dtype.name, getattr(activation, "__name__", activation))
        implementation = "auto"
    if implementation == "auto":
        if not tf.config.list_logical_devices("GPU") and _native_applies(projected, activation):
            return "native"
        return "xla" if xla_available() else "tf"
    return implementation


def _with_gradient(forward, backward, return_states):
    """A `tf.custom_gradient` function of `forward` (inputs -> (states, last
    state), plus what `backward` needs) and `backward` (that, dL/dstates or
    None, dL/dlast -> input gradients). Without `return_states` only the last
    state is an output, so TensorFlow passes no dL/dstates: were `states` an
    output, it would fill a [batch, time, units] array of zeros for it, which
    the backward pass would then read."""
    @tf.custom_gradient
    def scan(*inputs):
        states, last_state, saved = forward(*inputs)
        if not return_states:
            return last_state, lambda grad_last: backward(saved, None, grad_last)
        return (states, last_state), lambda grad_states, grad_last: backward(
            saved, grad_states, grad_last)

    def run(*inputs):
        return scan(*inputs) if return_states else (None, scan(*inputs))
    return run


def _native_scan(sequence, recurrent_weight, initial_state, activation, mask,
                 input_kernel=None, bias=None, return_states=True):
    """The recurrence in the fused C++ kernels.

    `sequence` holds the projections `x_t @ W (+ b)` ([batch, time, units]),
    or, when `input_kernel` is given, the raw inputs ([batch, time, depth]),
    projected inside the kernel. A given `bias` is added inside the kernel,
    which also sums its gradient. Optional inputs travel as empty tensors.
    """
    ops = native.load()
    attrs = dict(activation=_native_activation_name(activation), has_mask=mask is not None)
    mask_input = tf.zeros([0], tf.bool) if mask is None else mask
    empty = tf.zeros([0], sequence.dtype)
    input_kernel = empty if input_kernel is None else input_kernel
    bias = empty if bias is None else bias
    projects_inside = input_kernel is not empty

    def forward(*inputs):
        states = ops.ind_rnn_forward(*inputs, mask_input, **attrs)
        return states, states[:, -1], (inputs, states)

    def backward(saved, grad_states, grad_last_state):
        (sequence, input_kernel, bias, recurrent_weight, initial_state), states = saved
        if grad_states is None:
            grad_states = tf.zeros([0], states.dtype)
        if grad_last_state is None:
            grad_last_state = tf.zeros_like(states[:, -1])
        # Ready projections are not needed for the gradient: not passing
        # them lets their memory go after the forward pass.
        grads = ops.ind_rnn_backward(sequence if projects_inside else empty, input_kernel,
                                     bias, recurrent_weight, initial_state, mask_input,
                                     states, grad_states, grad_last_state, **attrs)
        return [tf.ensure_shape(grad, value.shape) for grad, value in
                zip(grads, (sequence, input_kernel, bias, recurrent_weight, initial_state))]

    return _with_gradient(forward, backward, return_states)(
        sequence, input_kernel, bias, recurrent_weight, initial_state)


def _loop_scan(projected, recurrent_weight, initial_state, activation, mask, use_xla,
               return_states=True):
    loop_forward, loop_backward = compiled_loops(activation, use_xla)
    # The loops step along the leading axis: they work time-major.
    mask = None if mask is None else tf.transpose(mask, [1, 0])

    def forward(projected, recurrent_weight, initial_state):
        time_major = tf.transpose(projected, [1, 0, 2])
        # stop_gradient: the hand-written `backward` below replaces autodiff, so
        # no tape may record the loop (that would also break XLA compilation).
        states, last_state = loop_forward(tf.stop_gradient(time_major),
                                          tf.stop_gradient(recurrent_weight),
                                          tf.stop_gradient(initial_state), mask)
        saved = (time_major, recurrent_weight, initial_state, states, last_state)
        batch_major = tf.transpose(states, [1, 0, 2]) if return_states else None
        return batch_major, last_state, saved

    def backward(saved, grad_states, grad_last_state):
        time_major, recurrent_weight, initial_state, states, last_state = saved
        if grad_last_state is None:
            grad_last_state = tf.zeros_like(last_state)
        if grad_states is not None:
            grad_states = tf.transpose(grad_states, [1, 0, 2])
        grad_projected, grad_weight, grad_initial = loop_backward(
            time_major, recurrent_weight, initial_state, mask, states, grad_states,
            grad_last_state)
        return tf.transpose(grad_projected, [1, 0, 2]), grad_weight, grad_initial

    return _with_gradient(forward, backward, return_states)(
        projected, recurrent_weight, initial_state)


def indrnn_scan(projected, recurrent_weight, initial_state, activation, mask=None,
                implementation="auto", return_states=True):
    """Runs `indrnn_step` over a whole sequence.

    Args:
        projected: `[batch, time, units]`, the input projections `x_t @ W + b`.
        recurrent_weight: `[units]`, the effective recurrent weight `u`.
        initial_state: `[batch, units]`.
        activation: an elementwise callable (e.g. `keras.activations.relu`).
        mask: optional boolean `[batch, time]`; where False, the step is skipped
            and the state carried through.
        implementation: which loop runs it: "native" (fused C++ CPU kernels,
            compiled on first use), "xla" (an XLA-compiled loop), "tf" (a
            plain TensorFlow while loop) or "auto" (see
            `resolve_implementation`). All compute the same numbers.
        return_states: False when only `last_state` is used (a layer without
            `return_sequences`): `states` is then None, and the backward pass
            does not read a `[batch, time, units]` gradient of zeros for it.

    Returns:
        `(states, last_state)`: `states` `[batch, time, units]` holds the state
        after every step (carried through masked steps), `last_state`
        `[batch, units]` the final one. Differentiable w.r.t. `projected`,
        `recurrent_weight` and `initial_state` (first order).

    Raises:
        ValueError: for an unknown `implementation`.
        TypeError: `return_states` is not a bool.
    """
    return_states = _checks.boolean("return_states", return_states)
    implementation = resolve_implementation(implementation, projected, activation)
    if mask is not None:
        mask = tf.cast(mask, tf.bool)
    if implementation == "native":
        return _native_scan(projected, recurrent_weight, initial_state, activation, mask,
                            return_states=return_states)
    return _loop_scan(projected, recurrent_weight, initial_state, activation, mask,
                      use_xla=implementation == "xla", return_states=return_states)


# Inputs at most this wide are projected inside the native kernel (see
# `project_and_scan`); wider ones go through one big matmul first, which
# oneDNN does better than the kernel's per-step loop.
# `python benchmarks/indrnn_speed.py --workloads=depth` measured (2 cores):
# inside / matmul-first step time 0.73 at 1 feature, 0.82 at 4, 1.10 at 8.
MAX_DEPTH_PROJECTED_IN_KERNEL = 4


def project_and_scan(inputs, input_kernel, bias, recurrent_weight, initial_state, activation,
                     mask=None, implementation="auto", return_states=True):
    """`indrnn_scan(project_inputs(inputs, input_kernel, bias), ...)`, fused where it pays.

    With the native kernels, the bias is added inside the recurrence and its
    gradient summed inside the backward pass, and for narrow inputs (at most
    `MAX_DEPTH_PROJECTED_IN_KERNEL` features, e.g. the 1 pixel of sequential
    MNIST or the 2 channels of the adding problem) so is `x_t @ W`: the
    `[batch, time, units]` projections and their gradient are then never
    stored. Those sweeps over memory are most of a step's time besides the
    matmul. The other implementations run `indrnn_scan` over
    `project_inputs`.

    Args:
        inputs: `[batch, time, depth]`.
        input_kernel: `[depth, units]`.
        bias: `[units]`.
        recurrent_weight, initial_state, activation, mask, implementation,
            return_states: as for `indrnn_scan`.

    Returns:
        `(states, last_state)` as `indrnn_scan`; differentiable w.r.t. `inputs`,
        `input_kernel`, `bias`, `recurrent_weight` and `initial_state`.

    Raises:
        ValueError: for an unknown `implementation`, or shapes of `inputs`,
            `input_kernel` and `bias` that do not fit together.
        TypeError: `return_states` is not a bool.
    """
    return_states = _checks.boolean("return_states", return_states)
    _checks.projection_shapes(inputs.shape, input_kernel.shape, bias.shape)
    implementation = resolve_implementation(implementation, inputs, activation)
    if implementation != "native":
        return indrnn_scan(project_inputs(inputs, input_kernel, bias), recurrent_weight,
                           initial_state, activation, mask=mask, implementation=implementation,
                           return_states=return_states)
    if mask is not None:
        mask = tf.cast(mask, tf.bool)
    depth = inputs.shape[-1]
    if depth is not None and depth <= MAX_DEPTH_PROJECTED_IN_KERNEL:
        return _native_scan(inputs, recurrent_weight, initial_state, activation, mask,
                            input_kernel=input_kernel, bias=bias, return_states=return_states)
    return _native_scan(matmul_last_axis(inputs, input_kernel), recurrent_weight,
                        initial_state, activation, mask, bias=bias, return_states=return_states)
