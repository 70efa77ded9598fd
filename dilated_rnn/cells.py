"""Keras RNN cells with the exact maths, weight layout and initialisation of
TensorFlow 1's `BasicRNNCell`, `BasicLSTMCell` and `GRUCell`.

Converted TF1 weights therefore give the same numbers:

* `BasicRNNCell`: `kernel` `[input + units, units]`, `bias` `[units]`;
  `h' = tanh([x, h] @ kernel + bias)`.
* `BasicLSTMCell`: `kernel` `[input + units, 4 * units]` (gate order
  i, j, f, o), `bias` `[4 * units]`, `forget_bias` added at run time; the
  state is `(c, h)` as in TF1's `LSTMStateTuple`.
* `GRUCell`: `gates_kernel` `[input + units, 2 * units]` (order r, u),
  `gates_bias` starting at 1.0, `candidate_kernel` `[input + units, units]`,
  `candidate_bias`; the reset gate multiplies the state before the candidate
  matmul (Keras' `reset_after=False`).

Kernels start from `glorot_uniform` over the whole concatenated kernel and
biases from zeros, as TF1's defaults did. Each cell does one step in `call`
(usable in `keras.layers.RNN`) and also exposes `fused_sequence`, the fast
whole-sequence kernel of `dilated_rnn.kernels` that `DilatedRNN` uses.
"""
import keras
import tensorflow as tf

from dilated_rnn import kernels, native
from dilated_rnn._validation import check_int_list
from dilated_rnn._validation import check_positive_int

CELL_TYPES = ("RNN", "LSTM", "GRU", "IndRNN")


class _TF1Cell(keras.layers.Layer):
    """Shared plumbing of the TF1 cells: arguments, state, fused kernel."""

    _fused_kind = None  # set by subclasses: a key of kernels._RECURRENCES
    _gates = 1  # kernel columns per unit (BasicRNNCell 1, BasicLSTMCell 4)

    def __init__(self, num_units, activation=None, reuse=None, name=None, dtype=None, *,
                 kernel_initializer=None, bias_initializer=None, **kwargs):
        # `reuse`: TF1's variable-scope sharing, accepted for compatibility; a
        # Keras cell owns its weights, so sharing is reusing the cell object.
        del reuse
        super().__init__(name=name, dtype=dtype, **kwargs)
        self.num_units = check_positive_int("num_units", num_units)
        # TF1's default activation (None) is tanh.
        self.activation = keras.activations.get(activation or "tanh")
        self.kernel_initializer = keras.initializers.get(
            kernel_initializer or "glorot_uniform")
        self.bias_initializer = (None if bias_initializer is None
                                 else keras.initializers.get(bias_initializer))

    @property
    def output_size(self):
        return self.num_units

    @property
    def state_size(self):
        return self.num_units

    def build(self, input_shape):
        # TF1's single-kernel layout: `kernel` [in + H, gates * H], `bias`.
        self._input_depth = self._check_input_shape(input_shape)
        width = self._gates * self.num_units
        self.kernel = self._add_kernel("kernel", self._input_depth, width)
        self.bias = self._add_bias("bias", width, "zeros")

    def _input_weights(self):
        """(W_x, b): the rows of the kernel that multiply the input."""
        return self.kernel[:self._input_depth], self.bias

    def _recurrent_kernels(self):
        """The rows of the kernel(s) that multiply the state."""
        return (self.kernel[self._input_depth:],)

    @property
    def supports_fused_sequence(self):
        """The hand-derived backward pass of the fused kernel assumes tanh."""
        return self.activation is keras.activations.tanh

    def _check_input_shape(self, input_shape):
        if len(input_shape) != 2 or input_shape[-1] is None:
            raise ValueError(
                f"Received an invalid input shape for {type(self).__name__}"
                f" `{self.name}`, expected [batch, features] with a known "
                f"number of features, got {tuple(input_shape)}.")
        return int(input_shape[-1])

    def _add_kernel(self, name, input_depth, width):
        return self.add_weight(
            name=name, shape=(input_depth + self.num_units, width),
            initializer=self.kernel_initializer)

    def _add_bias(self, name, width, default):
        return self.add_weight(
            name=name, shape=(width,),
            initializer=self.bias_initializer or default)

    def _cast(self, weight):
        # Explicit, so the fused path also works outside this cell's own
        # __call__ (where Keras would autocast the variables under a mixed
        # precision policy).
        return tf.cast(weight, self.compute_dtype)

    def _project(self, inputs):
        """x @ W_x + b for every row of `inputs` (any leading shape)."""
        input_kernel, bias = (self._cast(w) for w in self._input_weights())
        inputs = tf.cast(inputs, self.compute_dtype)
        if inputs.shape.rank == 2:
            return tf.matmul(inputs, input_kernel) + bias
        return kernels.sequence_matmul(inputs, input_kernel) + bias

    def _recurrent(self):
        return tuple(self._cast(k) for k in self._recurrent_kernels())

    def fused_sequence(self, inputs, mask=None, engine="while", rate=1,
                       phases=None):
        """Runs the cell over a time-major sequence with a fused kernel.

        Args:
            inputs: `[steps, batch, features]` tensor.
            mask: `None` or boolean `[steps, batch]`; masked steps keep the
                previous state.
            engine: one of `dilated_rnn.kernels.ENGINES`.
            rate: the dilation, which only the "native" engine applies
                itself (reading the phases in place); the other engines run
                an already dilated sequence, rate 1.
            phases: "native" only: `None` (all) or the phases (in
                `[0, rate)`) whose outputs are read; the kernels may skip
                the others (see `dilated_rnn.native.sequence`).

        Returns:
            The hidden-state sequence `[steps, batch, num_units]`, starting
            from a zero state: state `t` follows from state `t - rate`.
        """
        if engine == "native":
            input_kernel, bias = (self._cast(w) for w in self._input_weights())
            return native.sequence(
                self._fused_kind, tf.cast(inputs, self.compute_dtype),
                input_kernel, bias, self._recurrent(), mask,
                rate=rate, phases=phases, **self._fused_options())
        if rate != 1:
            raise ValueError(
                "Received an invalid value for argument `rate`, expected 1 "
                f"for engine {engine!r} (only 'native' dilates in place), "
                f"got {rate!r}.")
        return kernels.fused_sequence(
            self._fused_kind, self._project(inputs), self._recurrent(), mask,
            engine, **self._fused_options())

    def _fused_options(self):
        return {}

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_units": self.num_units,
            "activation": keras.activations.serialize(self.activation),
            "kernel_initializer": keras.initializers.serialize(
                self.kernel_initializer),
            "bias_initializer": (
                None if self.bias_initializer is None
                else keras.initializers.serialize(self.bias_initializer)),
        })
        return config


@keras.saving.register_keras_serializable(package="dilated_rnn")
class BasicRNNCell(_TF1Cell):
    """TF1's `BasicRNNCell` as a Keras cell: `h' = act([x, h] @ W + b)`.

    The TF1 signature, `BasicRNNCell(num_units, activation=None, reuse=None,
    name=None, dtype=None)`, plus keyword-only initializers.

    Args:
        num_units: positive int, the size of the state and the output.
        activation: activation; `None` means tanh (TF1's default).
        reuse: accepted for TF1 compatibility and ignored: a Keras cell owns
            its weights (share them by reusing the cell object).
        name: the cell's name.
        dtype: the cell's dtype (or dtype policy).
        kernel_initializer: initializer of `kernel`; default glorot_uniform.
        bias_initializer: initializer of `bias`; default zeros.
        **kwargs: other base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: `[batch, features]`.
        states: a list holding the `[batch, num_units]` state.

    Returns:
        `(output, [new_state])`, the output being the new state.

    Raises:
        ValueError: if `num_units` is not a positive integer.

    Example:

    >>> cell = BasicRNNCell(3)
    >>> layer = keras.layers.RNN(cell)
    >>> layer(np.ones((2, 5, 4), "float32")).shape
    TensorShape([2, 3])
    """

    _fused_kind = "rnn"

    def call(self, inputs, states, training=None):
        state = states[0] if isinstance(states, (list, tuple)) else states
        output = kernels.rnn_step(self._project(inputs), state,
                                  *self._recurrent(), self.activation)
        return output, [output]


@keras.saving.register_keras_serializable(package="dilated_rnn")
class BasicLSTMCell(_TF1Cell):
    """TF1's `BasicLSTMCell` as a Keras cell (no peepholes, no projection).

    `i, j, f, o = split([x, h] @ kernel + bias, 4)`,
    `c' = c * sigmoid(f + forget_bias) + sigmoid(i) * act(j)`,
    `h' = act(c') * sigmoid(o)`. The state is `[c, h]`, in TF1's order.

    The TF1 signature, `BasicLSTMCell(num_units, forget_bias=1.0,
    state_is_tuple=True, activation=None, reuse=None, name=None, dtype=None)`,
    plus keyword-only initializers.

    Args:
        num_units: positive int, the size of `c`, `h` and the output.
        forget_bias: float added to the forget gate at run time (TF1: 1.0).
        state_is_tuple: must be True (the state is `[c, h]`).
        activation: activation; `None` means tanh.
        reuse: accepted for TF1 compatibility and ignored (see
            `BasicRNNCell`).
        name: the cell's name.
        dtype: the cell's dtype (or dtype policy).
        kernel_initializer: initializer of `kernel`; default glorot_uniform.
        bias_initializer: initializer of `bias`; default zeros.
        **kwargs: other base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: `[batch, features]`.
        states: `[c, h]`, each `[batch, num_units]`.

    Returns:
        `(h', [c', h'])`.

    Raises:
        ValueError: if `num_units` is not a positive integer, or
            `state_is_tuple` is not True.

    Example:

    >>> layer = keras.layers.RNN(BasicLSTMCell(3))
    >>> layer(np.ones((2, 5, 4), "float32")).shape
    TensorShape([2, 3])
    """

    _fused_kind = "lstm"
    _gates = 4

    def __init__(self, num_units, forget_bias=1.0, state_is_tuple=True, activation=None,
                 reuse=None, name=None, dtype=None, *, kernel_initializer=None,
                 bias_initializer=None, **kwargs):
        if state_is_tuple is not True:
            raise ValueError(
                "Received an invalid value for argument `state_is_tuple`, expected True "
                "(the state is the pair (c, h); TF1's deprecated concatenated state is not "
                f"supported), got {state_is_tuple!r}.")
        super().__init__(num_units, activation, reuse, name, dtype,
                         kernel_initializer=kernel_initializer,
                         bias_initializer=bias_initializer, **kwargs)
        self.forget_bias = float(forget_bias)

    @property
    def state_size(self):
        return [self.num_units, self.num_units]

    def _fused_options(self):
        return {"forget_bias": self.forget_bias}

    def call(self, inputs, states, training=None):
        new_c, new_h = kernels.lstm_step(
            self._project(inputs), tuple(states), *self._recurrent(),
            self.forget_bias, self.activation)
        return new_h, [new_c, new_h]

    def get_config(self):
        config = super().get_config()
        config["forget_bias"] = self.forget_bias
        return config


@keras.saving.register_keras_serializable(package="dilated_rnn")
class GRUCell(_TF1Cell):
    """TF1's `GRUCell` as a Keras cell.

    `r, u = split(sigmoid([x, h] @ gates_kernel + gates_bias), 2)`,
    `c = act([x, r * h] @ candidate_kernel + candidate_bias)`,
    `h' = u * h + (1 - u) * c`.

    The TF1 signature: `GRUCell(num_units, activation=None, reuse=None,
    kernel_initializer=None, bias_initializer=None, name=None, dtype=None)`.

    Args:
        num_units: positive int, the size of the state and the output.
        activation: activation of the candidate; `None` means tanh.
        reuse: accepted for TF1 compatibility and ignored (see
            `BasicRNNCell`).
        kernel_initializer: initializer of both kernels; default
            glorot_uniform.
        bias_initializer: initializer of both biases; by default (TF1's)
            `gates_bias` starts at 1.0 and `candidate_bias` at 0.
        name: the cell's name.
        dtype: the cell's dtype (or dtype policy).
        **kwargs: other base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: `[batch, features]`.
        states: a list holding the `[batch, num_units]` state.

    Returns:
        `(output, [new_state])`, the output being the new state.

    Raises:
        ValueError: if `num_units` is not a positive integer.

    Example:

    >>> layer = keras.layers.RNN(GRUCell(3))
    >>> layer(np.ones((2, 5, 4), "float32")).shape
    TensorShape([2, 3])
    """

    _fused_kind = "gru"

    def __init__(self, num_units, activation=None, reuse=None, kernel_initializer=None,
                 bias_initializer=None, name=None, dtype=None, **kwargs):
        super().__init__(num_units, activation, reuse, name, dtype,
                         kernel_initializer=kernel_initializer,
                         bias_initializer=bias_initializer, **kwargs)

    def build(self, input_shape):
        input_depth = self._check_input_shape(input_shape)
        units = self.num_units
        self.gates_kernel = self._add_kernel("gates_kernel", input_depth,
                                             2 * units)
        self.gates_bias = self._add_bias("gates_bias", 2 * units,
                                         keras.initializers.Constant(1.0))
        self.candidate_kernel = self._add_kernel("candidate_kernel",
                                                 input_depth, units)
        self.candidate_bias = self._add_bias("candidate_bias", units, "zeros")
        self._input_depth = input_depth

    def _input_weights(self):
        # One matmul projects the input for the gates and the candidate.
        depth = self._input_depth
        return (tf.concat([self.gates_kernel[:depth],
                           self.candidate_kernel[:depth]], axis=1),
                tf.concat([self.gates_bias, self.candidate_bias], axis=0))

    def _recurrent_kernels(self):
        depth = self._input_depth
        return (self.gates_kernel[depth:], self.candidate_kernel[depth:])

    def call(self, inputs, states, training=None):
        state = states[0] if isinstance(states, (list, tuple)) else states
        new_h = kernels.gru_step(self._project(inputs), state,
                                 *self._recurrent(), self.activation)
        return new_h, [new_h]


_CELL_CLASSES = {"RNN": BasicRNNCell, "LSTM": BasicLSTMCell, "GRU": GRUCell}


def construct_cells(hidden_structs, cell_type):
    """Builds one cell per layer, as the TF1 original's `_contruct_cells`.

    Args:
        hidden_structs: list of positive ints, the units of each layer.
        cell_type: "RNN" (`BasicRNNCell`), "LSTM" (`BasicLSTMCell`,
            forget_bias 1.0), "GRU" (`GRUCell`) or "IndRNN"
            (`ind_rnn.IndRNNCell`).

    Returns:
        A list of new cells, one per entry of `hidden_structs`.

    Raises:
        ValueError: for an unknown `cell_type` (the original's message
            "The cell type is not currently supported.", then the details)
            or a bad `hidden_structs`.

    Example:

    >>> [c.num_units for c in construct_cells([20, 30], "GRU")]
    [20, 30]
    """
    if cell_type not in CELL_TYPES:
        raise ValueError(
            "The cell type is not currently supported. Received an invalid "
            f"value for argument `cell_type`, expected one of {CELL_TYPES},"
            f" got {cell_type!r}.")
    hidden_structs = check_int_list("hidden_structs", hidden_structs)
    if cell_type == "IndRNN":
        # Imported here so that this package works without ind_rnn.
        from ind_rnn.keras_cell import IndRNNCell  # pylint: disable=import-outside-toplevel
        return [IndRNNCell(units) for units in hidden_structs]
    return [_CELL_CLASSES[cell_type](units) for units in hidden_structs]


def cell_output_size(cell):
    """Number of output features of any Keras RNN cell."""
    size = getattr(cell, "output_size", None)
    if size is None:
        state_size = cell.state_size
        size = state_size[0] if isinstance(state_size, (list, tuple)) else (
            state_size)
    return int(size)
