"""The IndRNN step, written once: `h_t = act(x_t @ W + b + u * h_{t-1})`.

`u` is a vector: every unit recurs only on itself. `IndRNNCell` (Keras and
TF1) runs `indrnn_step` one step at a time; the TensorFlow loops of the
whole-sequence scan (`ind_rnn.tf_loops`) run the same function on every step;
the C++ kernels are tested against it. `ind_rnn.recurrence` re-exports all
three functions.
"""
import tensorflow as tf


def effective_recurrent_weight(recurrent_kernel, recurrent_min_abs=0.0, recurrent_max_abs=None):
    """The recurrent weight `u` after the original's magnitude bounds.

    As in the TF1 `IndRNNCell`: if `recurrent_min_abs` is truthy,
    `u = sign(u) * max(|u|, min_abs)` (so an exact 0 stays 0); then, if
    `recurrent_max_abs` is truthy, `u = clip(u, -max_abs, max_abs)`. It is
    applied on every forward pass, so the stored kernel keeps training and
    the bound always holds for the weight actually used.

    Args:
        recurrent_kernel: tensor `[units]`, the stored recurrent weights.
        recurrent_min_abs: float, lower bound on `|u|` (0 or None: none).
        recurrent_max_abs: float, upper bound on `|u|` (0 or None: none).

    Returns:
        A tensor like `recurrent_kernel`.
    """
    weight = recurrent_kernel
    if recurrent_min_abs:
        magnitude = tf.maximum(tf.abs(weight), tf.cast(recurrent_min_abs, weight.dtype))
        weight = tf.sign(weight) * magnitude
    if recurrent_max_abs:
        bound = tf.cast(recurrent_max_abs, weight.dtype)
        weight = tf.clip_by_value(weight, -bound, bound)
    return weight


def project_inputs(inputs, input_kernel, bias):
    """`inputs @ input_kernel + bias` over the last axis, for any leading shape."""
    return matmul_last_axis(inputs, input_kernel) + bias


def matmul_last_axis(inputs, kernel):
    """`inputs @ kernel` over the last axis of `inputs`, for any leading shape."""
    return tf.tensordot(inputs, kernel, axes=[[inputs.shape.rank - 1], [0]])


def indrnn_step(projected_input, recurrent_weight, state, activation):
    """One IndRNN step: `activation(projected_input + recurrent_weight * state)`.

    Args:
        projected_input: `[batch, units]`, `x_t @ input_kernel + bias`.
        recurrent_weight: `[units]`, the effective recurrent weight `u`.
        state: `[batch, units]`, `h_{t-1}`.
        activation: an elementwise callable.

    Returns:
        `h_t`, `[batch, units]`: both the output and the new state.
    """
    return activation(projected_input + recurrent_weight * state)
