"""The recurrences of the TF1 cells over whole sequences, and their gradients.

Two implementations of the same maths, both with a hand-written backward pass:

* `dilated_rnn.native.sequence`: fused C++ CPU kernels (compiled on first
  use). One op runs a whole dilated layer: it reads the dilated phases
  in place, does the input projection, the recurrence and, backwards, all
  gradients inside the kernel, so nothing of the size of the projected
  sequence goes through memory. The default on CPU.
* `fused_sequence`: TensorFlow loops over an already dilated sequence, the
  portable path (GPU, float16, XLA-compiled callers, no C++ compiler). The
  input half of every matmul (`x @ W_x + b`) is done by the caller for the
  whole sequence at once, so a step only does `h @ W_h` plus elementwise
  maths. The backward pass recomputes every step-local quantity it needs
  (gate activations, `1 - tanh^2` ...) for all steps at once from the stored
  states, so the reverse loop only carries the state's gradient through one
  small matmul per step; letting TensorFlow differentiate the loop instead
  pushes every intermediate onto per-step accumulators, several times slower
  (much slower under XLA). The loops run XLA-compiled, as plain
  `tf.while_loop`s, or unrolled in Python (see `dilated_rnn.loops.run_loop`).

All tensors are time-major: `[steps, batch, features]`. The initial state is
always zero (as in the TF1 original, which passed no initial state). Masked
steps keep the previous state; `mask` is `None` or a boolean
`[steps, batch]` tensor.

Each recurrence has a `*_step` (one forward step on projected inputs; the
cells' `call` uses it too, so the TensorFlow side has one copy of the maths),
a `_*_forward` loop and a `_*_backward` loop.
"""
import functools

import tensorflow as tf

from dilated_rnn.loops import run_loop

# Loop engines. "unrolled" needs a static number of steps; "native" the
# compiled C++ kernels of dilated_rnn.native.
ENGINES = ("native", "xla", "while", "unrolled")


def _state_spec(projected, units):
    """(dtype, shape) of one step of a state: [batch, units]."""
    return projected.dtype, tf.TensorShape([projected.shape[1], units])


def _masked(mask_t, new, old):
    """Keeps the previous state where the step is masked out."""
    return new if mask_t is None else tf.where(mask_t, new, old)


# Masked steps in the backward pass. A masked step passes its state
# through unchanged: the gradient reaching it goes straight to the step
# before, and its local derivative is exactly zero. Both are selects, never
# products with a 0/1 mask, so that the gradients have NaN where the
# reference's (`tests/drnn_reference.masked_stack_loop`) have it and nowhere
# else: a NaN or inf computed at a masked step (`0 @ W_h^T` with a
# non-finite kernel, a gate times a NaN gradient) does not leak into the
# carried gradient, while the exact zero dL/dpre there still enters the
# products of the linear parts (`0 @ W_x^T`, `h^T @ 0`), NaN where those
# values are not finite, as in the reference.
def _pass_through(mask_t, back, grad):
    """The carried gradient: `back` at valid steps, `grad` at masked ones."""
    return back if mask_t is None else tf.where(mask_t, back, grad)


def _zero_masked(mask, d_pre):
    """dL/dpre with exact zeros at the masked steps (whole sequence)."""
    if mask is None:
        return d_pre
    return tf.where(mask, d_pre, tf.zeros_like(d_pre))


def _shift_in_zeros(states):
    """State sequence -> the sequence of states each step started from."""
    return tf.concat([tf.zeros_like(states[:1]), states[:-1]], axis=0)


def sequence_matmul(sequence, kernel):
    """[steps, batch, m] @ [m, n] as one large matmul."""
    flat = tf.matmul(tf.reshape(sequence, [-1, sequence.shape[-1]]), kernel)
    return tf.reshape(flat, tf.concat(
        [tf.shape(sequence)[:-1], [kernel.shape[-1]]], axis=0))


def _sum_outer(left, right):
    """Sum over steps and batch of left^T @ right: a weight gradient."""
    return tf.matmul(tf.reshape(left, [-1, left.shape[-1]]),
                     tf.reshape(right, [-1, right.shape[-1]]),
                     transpose_a=True)


# --------------------------------------------------------------------------
# BasicRNNCell: h' = tanh(x W_x + b + h W_h)
# --------------------------------------------------------------------------
def rnn_step(projected, state, recurrent_kernel, activation=tf.tanh):
    """One BasicRNNCell step on the projected input; returns the new state."""
    return activation(projected + tf.matmul(state, recurrent_kernel))


def _rnn_forward(projected, kernels, mask, engine):
    (recurrent_kernel,) = kernels
    units = recurrent_kernel.shape[0]

    def step(carry, x_t, m_t):
        (h,) = carry
        h = _masked(m_t, rnn_step(x_t, h, recurrent_kernel), h)
        return (h,), (h,)

    zeros = tf.zeros([tf.shape(projected)[1], units], projected.dtype)
    _, states = run_loop(step, (zeros,), (projected, mask),
                         (_state_spec(projected, units),), engine)
    return states


def _rnn_backward(d_hidden, states, projected, kernels, mask, engine):
    del projected  # tanh' is read off the stored states
    (hidden,), (recurrent_kernel,) = states, kernels
    local = 1.0 - tf.square(hidden)
    kernel_t = tf.transpose(recurrent_kernel)

    def step(carry, d_t, local_t, mask_t):
        grad = carry[0] + d_t
        d_pre = grad * local_t
        back = _pass_through(mask_t, tf.matmul(d_pre, kernel_t), grad)
        return (back,), (d_pre,)

    _, (d_pre,) = run_loop(
        step, (tf.zeros_like(d_hidden[0]),), (d_hidden, local, mask),
        ((d_hidden.dtype, d_hidden.shape[1:]),), engine, reverse=True)
    d_pre = _zero_masked(mask, d_pre)
    return d_pre, weight_grads("rnn", _shift_in_zeros(hidden), d_pre)


# --------------------------------------------------------------------------
# BasicLSTMCell: i, j, f, o = split(x W_x + b + h W_h, 4)
#   c' = c * sigmoid(f + forget_bias) + sigmoid(i) * tanh(j)
#   h' = tanh(c') * sigmoid(o)
# --------------------------------------------------------------------------
def _lstm_gates(pre, forget_bias, activation=tf.tanh):
    i, j, f, o = tf.split(pre, 4, axis=-1)
    return (tf.sigmoid(i), activation(j), tf.sigmoid(f + forget_bias),
            tf.sigmoid(o))


def lstm_step(projected, state, recurrent_kernel, forget_bias,
              activation=tf.tanh):
    """One BasicLSTMCell step; `state` is `(c, h)`, returns `(c', h')`."""
    c, h = state
    i, j, f, o = _lstm_gates(
        projected + tf.matmul(h, recurrent_kernel), forget_bias, activation)
    new_c = c * f + i * j
    return new_c, activation(new_c) * o


def _lstm_forward(projected, kernels, mask, engine, forget_bias):
    (recurrent_kernel,) = kernels
    units = recurrent_kernel.shape[0]

    def step(carry, x_t, m_t):
        c, h = lstm_step(x_t, carry, recurrent_kernel, forget_bias)
        carry = (_masked(m_t, c, carry[0]), _masked(m_t, h, carry[1]))
        return carry, carry

    zeros = tf.zeros([tf.shape(projected)[1], units], projected.dtype)
    spec = _state_spec(projected, units)
    _, states = run_loop(step, (zeros, zeros), (projected, mask),
                         (spec, spec), engine)
    return states


def _lstm_backward(d_hidden, states, projected, kernels, mask, engine,
                   forget_bias):
    (cells, hidden), (recurrent_kernel,) = states, kernels
    prev_h, prev_c = _shift_in_zeros(hidden), _shift_in_zeros(cells)
    i, j, f, o = _lstm_gates(
        projected + sequence_matmul(prev_h, recurrent_kernel), forget_bias)
    tanh_c = tf.tanh(cells)
    # d pre-activation = [d_c * coef_ijf, grad_h * coef_o], with
    # d_c = grad_c + grad_h * dc_dh; the cell gradient goes back through f.
    coef_ijf = tf.concat([j * i * (1.0 - i), i * (1.0 - tf.square(j)),
                          prev_c * f * (1.0 - f)], axis=-1)
    coef_o = tanh_c * o * (1.0 - o)
    dc_dh = o * (1.0 - tf.square(tanh_c))
    kernel_t = tf.transpose(recurrent_kernel)

    def step(carry, d_t, ijf_t, o_t, dc_dh_t, f_t, mask_t):
        grad_c, grad_h = carry
        grad_h = grad_h + d_t
        d_c = grad_c + grad_h * dc_dh_t
        d_pre = tf.concat([tf.tile(d_c, [1, 3]) * ijf_t, grad_h * o_t], -1)
        back_h = _pass_through(mask_t, tf.matmul(d_pre, kernel_t), grad_h)
        back_c = _pass_through(mask_t, d_c * f_t, grad_c)
        return (back_c, back_h), (d_pre,)

    zeros = tf.zeros_like(d_hidden[0])
    _, (d_pre,) = run_loop(
        step, (zeros, zeros),
        (d_hidden, coef_ijf, coef_o, dc_dh, f, mask),
        ((projected.dtype, projected.shape[1:]),), engine, reverse=True)
    d_pre = _zero_masked(mask, d_pre)
    return d_pre, weight_grads("lstm", prev_h, d_pre)


# --------------------------------------------------------------------------
# GRUCell: r, u = split(sigmoid(x W_gx + b_g + h W_gh), 2)
#   c = tanh(x W_cx + b_c + (r * h) W_ch);  h' = u * h + (1 - u) * c
# The projected input holds [gate part (2 units), candidate part (units)].
# --------------------------------------------------------------------------
def gru_step(projected, state, gate_kernel, candidate_kernel,
             activation=tf.tanh):
    """One GRUCell step on the projected input; returns the new state."""
    units = candidate_kernel.shape[0]
    x_gates, x_candidate = tf.split(projected, [2 * units, units], axis=-1)
    r, u = tf.split(tf.sigmoid(x_gates + tf.matmul(state, gate_kernel)), 2,
                    axis=-1)
    c = activation(x_candidate + tf.matmul(r * state, candidate_kernel))
    return u * state + (1.0 - u) * c


def _gru_forward(projected, kernels, mask, engine):
    gate_kernel, candidate_kernel = kernels
    units = candidate_kernel.shape[0]

    def step(carry, x_t, m_t):
        (h,) = carry
        h = _masked(m_t, gru_step(x_t, h, gate_kernel, candidate_kernel), h)
        return (h,), (h,)

    zeros = tf.zeros([tf.shape(projected)[1], units], projected.dtype)
    _, states = run_loop(step, (zeros,), (projected, mask),
                         (_state_spec(projected, units),), engine)
    return states


def _gru_backward(d_hidden, states, projected, kernels, mask, engine):
    (hidden,), (gate_kernel, candidate_kernel) = states, kernels
    units = candidate_kernel.shape[0]
    prev = _shift_in_zeros(hidden)
    x_gates, x_candidate = tf.split(projected, [2 * units, units], axis=-1)
    r, u = tf.split(
        tf.sigmoid(x_gates + sequence_matmul(prev, gate_kernel)), 2, axis=-1)
    reset_prev = r * prev
    c = tf.tanh(x_candidate + sequence_matmul(reset_prev, candidate_kernel))
    # With grad = dL/dh': d candidate pre = grad * coef_c,
    # d(r*h) = that @ W_ch^T, d r pre = d(r*h) * coef_r, d u pre = grad*coef_u.
    coef_c = (1.0 - u) * (1.0 - tf.square(c))
    coef_u = (prev - c) * u * (1.0 - u)
    coef_r = prev * r * (1.0 - r)
    gate_kernel_t = tf.transpose(gate_kernel)
    candidate_kernel_t = tf.transpose(candidate_kernel)

    def step(carry, d_t, coef_c_t, coef_u_t, coef_r_t, u_t, r_t, mask_t):
        grad = carry[0] + d_t
        d_candidate = grad * coef_c_t
        d_reset_prev = tf.matmul(d_candidate, candidate_kernel_t)
        d_gates = tf.concat([d_reset_prev * coef_r_t, grad * coef_u_t], -1)
        back = (grad * u_t + d_reset_prev * r_t
                + tf.matmul(d_gates, gate_kernel_t))
        return ((_pass_through(mask_t, back, grad),),
                (tf.concat([d_gates, d_candidate], -1),))

    _, (d_pre,) = run_loop(
        step, (tf.zeros_like(d_hidden[0]),),
        (d_hidden, coef_c, coef_u, coef_r, u, r, mask),
        ((projected.dtype, projected.shape[1:]),), engine, reverse=True)
    d_pre = _zero_masked(mask, d_pre)
    return d_pre, weight_grads("gru", prev, d_pre, reset_prev)


def weight_grads(kind, prev, d_pre, reset_prev=None):
    """Recurrent-kernel gradients from the pre-activation gradients.

    Every kernel multiplies the state each step started from (`prev`, the
    states shifted by one step with the zero state in front; for the GRU
    candidate, `r * prev`), so its gradient is one large matmul over all
    steps and rows. Step 0 is included although its state is zero: as in
    the reference, `0 * dL/dpre` there is NaN where dL/dpre is NaN or inf.
    """
    # Whole-width products, sliced afterwards: cheaper than copying column
    # slices of the large gradient.
    kernel_grad = _sum_outer(prev, d_pre)
    if kind != "gru":
        return (kernel_grad,)
    units = prev.shape[-1]
    return (kernel_grad[:, :2 * units],
            _sum_outer(reset_prev, d_pre)[:, 2 * units:])


# --------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------
_RECURRENCES = {
    "rnn": (_rnn_forward, _rnn_backward),
    "lstm": (_lstm_forward, _lstm_backward),
    "gru": (_gru_forward, _gru_backward),
}


@functools.lru_cache(maxsize=None)
def _xla_compiled(kind):
    """XLA-compiled forward and backward loops of one recurrence."""
    forward, backward = _RECURRENCES[kind]
    return (tf.function(functools.partial(forward, engine="while"),
                        jit_compile=True),
            tf.function(functools.partial(backward, engine="while"),
                        jit_compile=True))


def _loops(kind, engine):
    if engine == "xla":
        return _xla_compiled(kind)
    forward, backward = _RECURRENCES[kind]
    return (functools.partial(forward, engine=engine),
            functools.partial(backward, engine=engine))


def fused_sequence(kind, projected, kernels, mask=None, engine="while",
                   **options):
    """Runs a fused recurrence over a time-major projected input sequence.

    Args:
        kind: "rnn", "lstm" or "gru".
        projected: `[steps, batch, gates * units]` inputs already multiplied
            by the input half of the kernel, bias added.
        kernels: tuple of recurrent kernels (`(W_h,)`, or
            `(W_gate_h, W_candidate_h)` for "gru").
        mask: `None` or boolean `[steps, batch]`; masked steps keep the
            previous state.
        engine: "xla", "while" or "unrolled" ("native" is
            `dilated_rnn.native.sequence`).
        **options: `forget_bias` for "lstm".

    Returns:
        The hidden-state sequence `[steps, batch, units]` (at a masked step,
        the state carried through it). Its gradient is the hand-derived
        backward pass; second derivatives are not supported.
    """
    forward, backward = _loops(kind, engine)
    if mask is not None:
        mask = mask[..., None]  # broadcasts over the units

    @tf.custom_gradient
    def sequence(projected, *kernels):
        # The loops are never differentiated by TensorFlow: cutting the tape
        # here also stops a watching tape from asking the compiled loops for
        # their intermediates, which XLA cannot hand out.
        projected, kernels = tf.nest.map_structure(
            tf.stop_gradient, (projected, kernels))
        states = forward(projected, kernels, mask, **options)

        def grad(d_hidden):
            d_projected, d_kernels = backward(
                tf.stop_gradient(d_hidden), states, projected, kernels, mask,
                **options)
            return (d_projected,) + tuple(d_kernels)

        return states[-1], grad

    return sequence(projected, *kernels)
