"""Independent references for the DilatedRNN tests.

The TF1 cells' maths written out from the spec (REFERENCE.md section 1) as
plain TensorFlow ops on `[x, h]` concatenations, exactly as TF1 computed it,
and the dilated recurrence as a plain Python loop over time:
`output_t = cell(x_t, state_{t - rate})`, with a zero state for `t < rate`.
Nothing here reuses the library's dilation, kernels or cells' maths, so
agreement is evidence; differentiating the loop with a GradientTape gives
reference gradients.
"""
import tensorflow as tf


def basic_rnn_step(cell):
    """TF1 BasicRNNCell: h' = tanh([x, h] @ kernel + bias)."""
    def step(x, state):
        (h,) = state
        h = tf.tanh(tf.matmul(tf.concat([x, h], 1), cell.kernel) + cell.bias)
        return h, (h,)
    return step


def basic_lstm_step(cell, forget_bias=1.0):
    """TF1 BasicLSTMCell, gates i, j, f, o; the state is (c, h)."""
    def step(x, state):
        c, h = state
        gates = tf.matmul(tf.concat([x, h], 1), cell.kernel) + cell.bias
        i, j, f, o = tf.split(gates, 4, axis=1)
        c = c * tf.sigmoid(f + forget_bias) + tf.sigmoid(i) * tf.tanh(j)
        h = tf.tanh(c) * tf.sigmoid(o)
        return h, (c, h)
    return step


def gru_step(cell):
    """TF1 GRUCell: reset gate applied to h before the candidate matmul."""
    def step(x, state):
        (h,) = state
        gates = tf.sigmoid(
            tf.matmul(tf.concat([x, h], 1), cell.gates_kernel) + cell.gates_bias)
        r, u = tf.split(gates, 2, axis=1)
        c = tf.tanh(tf.matmul(tf.concat([x, r * h], 1), cell.candidate_kernel)
                    + cell.candidate_bias)
        return u * h + (1 - u) * c, (u * h + (1 - u) * c,)
    return step


def keras_cell_step(cell):
    """Any Keras cell, one `call` per step (for cells we did not write)."""
    def step(x, state):
        output, new_state = cell(x, list(state))
        return output, tuple(new_state)
    return step


def reference_step(cell):
    """The reference step for one of our TF1 cells, else `keras_cell_step`."""
    if not type(cell).__module__.startswith("dilated_rnn"):
        return keras_cell_step(cell)  # e.g. Keras' own GRUCell
    name = type(cell).__name__
    if name == "BasicRNNCell":
        return basic_rnn_step(cell)
    if name == "BasicLSTMCell":
        return basic_lstm_step(cell, cell.forget_bias)
    if name == "GRUCell":
        return gru_step(cell)
    return keras_cell_step(cell)


def zero_state(cell, batch, dtype):
    sizes = cell.state_size if isinstance(cell.state_size, (list, tuple)) else [
        cell.state_size]
    return tuple(tf.zeros([batch, size], dtype) for size in sizes)


def dilated_loop(step, inputs, rate, initial_state):
    """`[batch, T, D]` -> `[batch, T, units]`, one plain step per time."""
    outputs, states = [], []
    for t in range(inputs.shape[1]):
        previous = states[t - rate] if t >= rate else initial_state
        output, state = step(inputs[:, t], previous)
        outputs.append(output)
        states.append(state)
    return tf.stack(outputs, axis=1)


def stack_loop(cells, dilations, inputs):
    """A stack of dilated layers, each the plain loop above."""
    x = inputs
    for cell, rate in zip(cells, dilations):
        x = dilated_loop(reference_step(cell), x, rate,
                         zero_state(cell, x.shape[0], x.dtype))
    return x


# --------------------------------------------------------------------------
# Masked steps, for the non-finite tests. A masked step passes the state of
# its phase through and outputs zeros; its local derivatives are exactly
# zero (a select, not a product with whatever the cell computed there), and
# that zero still goes through the products of the linear parts
# (`[x, h] @ kernel`): dL/dx_t = 0 @ W_x^T, dL/dkernel += [x_t, h]^T @ 0,
# which are NaN where those values are not finite. The gradient reaching a
# masked step's state goes straight to the phase's previous state. This is
# the masking the library documents (ind_rnn.tf_loops._backward:
# "D_t = 0, A_t = 1"); plain autodiff of `tf.where(mask, cell(x, h), h)`
# differs only where the cell's values at a masked step are not finite
# (0 * NaN there reaches every gradient). `_select_gradient` is what makes
# the zero a select: written with tf.where and tf.stop_gradient only.
# --------------------------------------------------------------------------
def _select_gradient(value, mask_t):
    """`value` forward; its gradient is selected to zero where `mask_t` is False."""
    return tf.where(mask_t[:, None], value, tf.stop_gradient(value))


def masked_basic_rnn_step(cell):
    def step(x, state, mask_t):
        (h,) = state
        pre = tf.matmul(tf.concat([x, _select_gradient(h, mask_t)], 1), cell.kernel) + cell.bias
        new = tf.tanh(_select_gradient(pre, mask_t))
        return new, (tf.where(mask_t[:, None], new, h),)
    return step


def masked_basic_lstm_step(cell, forget_bias=1.0):
    def step(x, state, mask_t):
        c, h = state
        c_in, h_in = _select_gradient(c, mask_t), _select_gradient(h, mask_t)
        gates = tf.matmul(tf.concat([x, h_in], 1), cell.kernel) + cell.bias
        i, j, f, o = tf.split(_select_gradient(gates, mask_t), 4, axis=1)
        new_c = c_in * tf.sigmoid(f + forget_bias) + tf.sigmoid(i) * tf.tanh(j)
        new_h = tf.tanh(new_c) * tf.sigmoid(o)
        keep = mask_t[:, None]
        return new_h, (tf.where(keep, new_c, c), tf.where(keep, new_h, h))
    return step


def masked_gru_step(cell):
    def step(x, state, mask_t):
        (h,) = state
        h_in = _select_gradient(h, mask_t)
        gates = tf.matmul(tf.concat([x, h_in], 1), cell.gates_kernel) + cell.gates_bias
        r, u = tf.split(tf.sigmoid(_select_gradient(gates, mask_t)), 2, axis=1)
        candidate = tf.matmul(tf.concat([x, r * h_in], 1), cell.candidate_kernel) \
            + cell.candidate_bias
        c = tf.tanh(_select_gradient(candidate, mask_t))
        new = u * h_in + (1 - u) * c
        return new, (tf.where(mask_t[:, None], new, h),)
    return step


def masked_reference_step(cell):
    """The masked step of one of our TF1 cells (see above)."""
    name = type(cell).__name__
    if name == "BasicRNNCell":
        return masked_basic_rnn_step(cell)
    if name == "BasicLSTMCell":
        return masked_basic_lstm_step(cell, cell.forget_bias)
    if name == "GRUCell":
        return masked_gru_step(cell)
    raise ValueError(f"no masked reference step for {name}")


def masked_dilated_loop(step, inputs, rate, initial_state, mask):
    """`dilated_loop` with a boolean `[batch, T]` mask: a masked step keeps
    its phase's state (state_{t - rate}) and outputs zeros."""
    mask = tf.convert_to_tensor(mask, tf.bool)
    outputs, states = [], []
    for t in range(inputs.shape[1]):
        previous = states[t - rate] if t >= rate else initial_state
        output, state = step(inputs[:, t], previous, mask[:, t])
        outputs.append(tf.where(mask[:, t, None], output, tf.zeros_like(output)))
        states.append(state)
    return tf.stack(outputs, axis=1)


def masked_stack_loop(cells, dilations, inputs, mask):
    """`stack_loop` with a mask (the same for every layer); `stack_loop` if None."""
    if mask is None:
        return stack_loop(cells, dilations, inputs)
    x = inputs
    for cell, rate in zip(cells, dilations):
        x = masked_dilated_loop(masked_reference_step(cell), x, rate,
                                zero_state(cell, x.shape[0], x.dtype), mask)
    return x
