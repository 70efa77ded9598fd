"""The IndRNN scan as TensorFlow while loops, with a hand-written backward.

The engines "xla" and "tf" of `ind_rnn.recurrence.indrnn_scan` (and the
fallback where the C++ kernels are not available): the forward loop runs
`ind_rnn.step.indrnn_step` over a time-major `[T, B, U]` projection; the
backward pass is the linear recurrence `g_{t-1} = e_{t-1} + u * act'_t * g_t`,
one reverse loop that also sums the recurrent weight's gradient, with `act'`
read off the stored outputs where the activation allows. `compiled_loops`
returns both as (optionally XLA-compiled) `tf.function`s.
"""
import functools

import keras
import tensorflow as tf

from ind_rnn.step import indrnn_step


def _forward_states(projected, recurrent_weight, initial_state, mask, activation):
    """Runs the recurrence; returns all carried states `[T, B, U]` and the last."""
    num_steps = tf.shape(projected)[0]
    states = tf.TensorArray(projected.dtype, size=num_steps, element_shape=initial_state.shape)

    def body(step, state, states):
        new_state = indrnn_step(projected[step], recurrent_weight, state, activation)
        if mask is not None:  # a masked step carries the state through unchanged
            new_state = tf.where(mask[step][:, None], new_state, state)
        return step + 1, new_state, states.write(step, new_state)

    _, last_state, states = tf.while_loop(
        lambda step, *_: step < num_steps, body, (0, initial_state, states))
    return states.stack(), last_state


def _backprop_from_output(activation):
    """`(output, grad) -> act'(pre) * grad`, with `act'` read off `act`'s output.

    For the activations that allow it; returns None for the others. Reading
    the stored outputs instead of recomputing the pre-activations saves a
    full pass over the inputs in the backward loop.

    ReLU is a select whose zero branch is still a product, `grad * 0`: NaN
    where `grad` is NaN or inf, as TF's ReluGrad on CPU (`grad * (x > 0)`)
    and the reference give. XLA compiles `cast(output > 0) * grad` (and
    ReluGrad itself) into a select that gives an exact 0 there; it does not
    fold a floating-point `grad * 0`.
    """
    relu, tanh, sigmoid, linear = (keras.activations.relu, keras.activations.tanh,
                                   keras.activations.sigmoid, keras.activations.linear)
    backprops = {
        relu: lambda output, grad: tf.where(output > 0, grad, grad * 0),
        tanh: lambda output, grad: (1 - output * output) * grad,
        sigmoid: lambda output, grad: output * (1 - output) * grad,
        linear: lambda output, grad: grad,
    }
    return backprops.get(activation)


def _derivative_from_input(pre_activation, activation):
    """`act'(pre)` elementwise, by autodiff, for any elementwise activation."""
    with tf.GradientTape() as tape:
        tape.watch(pre_activation)
        activated = activation(pre_activation)
    return tape.gradient(activated, pre_activation)


def _backward(projected, recurrent_weight, initial_state, mask, states,
              grad_states, grad_last_state, activation):
    """Gradients of the scan w.r.t. `projected`, `recurrent_weight`, `initial_state`.

    With `e_t` the gradient reaching state `t` from outside (`grad_states`,
    None when only the last state was used) and `g_t` the total gradient of
    state `t`: `g_t = e_t + A_{t+1} g_{t+1}` and `dz_t = D_t g_t`, where for a
    valid step `D_t = act'_t` and `A_t = u act'_t`, and for a masked step
    `D_t = 0`, `A_t = 1` (the state passed straight through). One reverse
    loop does it all, `du = sum_t dz_t h_{t-1}` included, so that every
    `[T, B, U]` array is read once: on CPU these passes, not the arithmetic,
    cost the time.
    """
    num_steps = tf.shape(projected)[0]
    from_output = _backprop_from_output(activation)
    sum_dtype = tf.float32 if projected.dtype in (tf.float16, tf.bfloat16) else projected.dtype
    grad_projected = tf.TensorArray(projected.dtype, size=num_steps,
                                    element_shape=initial_state.shape)

    def body(step, carried, state, grad_weight, grad_projected):
        index = num_steps - 1 - step
        # `state` is h_index, carried from the previous iteration.
        previous = tf.where(index > 0, states[tf.maximum(index - 1, 0)], initial_state)
        total = carried if grad_states is None else carried + grad_states[index]
        if from_output is not None:
            grad_step = from_output(state, total)
        else:
            grad_step = _derivative_from_input(
                projected[index] + recurrent_weight * previous, activation) * total
        to_previous = recurrent_weight * grad_step
        if mask is not None:
            valid = mask[index][:, None]
            grad_step = tf.where(valid, grad_step, tf.zeros_like(grad_step))
            to_previous = tf.where(valid, to_previous, total)
        grad_weight += tf.reduce_sum(
            tf.cast(grad_step, sum_dtype) * tf.cast(previous, sum_dtype), axis=0)
        return (step + 1, to_previous, previous, grad_weight,
                grad_projected.write(index, grad_step))

    _, grad_initial_state, _, grad_weight, grad_projected = tf.while_loop(
        lambda step, *_: step < num_steps, body,
        (0, grad_last_state, states[-1], tf.zeros_like(recurrent_weight, dtype=sum_dtype),
         grad_projected))
    return (grad_projected.stack(), tf.cast(grad_weight, recurrent_weight.dtype),
            grad_initial_state)


@functools.lru_cache(maxsize=None)
def compiled_loops(activation, use_xla):
    """The forward and backward loops as (optionally XLA-compiled) tf.functions."""
    forward = tf.function(functools.partial(_forward_states, activation=activation),
                          jit_compile=use_xla, reduce_retracing=True, autograph=False)
    backward = tf.function(functools.partial(_backward, activation=activation),
                           jit_compile=use_xla, reduce_retracing=True, autograph=False)
    return forward, backward
