"""`IndRNN`: the fast whole-sequence IndRNN layer."""
import keras
import tensorflow as tf

from ind_rnn import _checks, flavour
from ind_rnn.keras_cell import IndRNNCell
from ind_rnn.recurrence import IMPLEMENTATIONS, project_and_scan

# Constructor arguments forwarded to the cell, in the cell's positional order.
_CELL_ARGS = ("recurrent_min_abs", "recurrent_max_abs", "recurrent_kernel_initializer",
              "input_kernel_initializer", "activation")
_CELL_KEYWORDS = ("bias_initializer", "input_kernel_regularizer",
                  "recurrent_kernel_regularizer", "bias_regularizer",
                  "input_kernel_constraint", "recurrent_kernel_constraint",
                  "bias_constraint", "dropout", "seed")


@keras.saving.register_keras_serializable(package="ind_rnn")
class IndRNN(keras.layers.RNN):
    """Fast IndRNN layer over `[batch, time, features]` sequences.

    Computes what `keras.layers.RNN(IndRNNCell(...))` computes, with the same
    weights (`input_kernel`, `recurrent_kernel`, `bias`), but projects the
    inputs of all steps in one matmul and runs only the elementwise recurrence
    step by step, in fused C++ CPU kernels (or an XLA-compiled loop), with a
    hand-written backward pass (see `ind_rnn.project_and_scan`: the C++
    kernels also add the bias, and project inputs of at most 4 features,
    inside the loop). Everything `keras.layers.RNN` offers works:
    masks, `initial_state`, `return_sequences`, `return_state`,
    `go_backwards`, `stateful`, `keras.layers.Bidirectional`, mixed precision
    and `tf.distribute`.

    Args:
        units: positive int, number of units.
        recurrent_min_abs, recurrent_max_abs, recurrent_kernel_initializer,
        input_kernel_initializer, activation: as in `IndRNNCell` (None
            activation means ReLU).
        bias_initializer, *_regularizer, *_constraint, dropout, seed: as in
            `IndRNNCell` (keyword-only).
        return_sequences: return the output of every step, `[batch, time, units]`,
            instead of the last one.
        return_state: also return the final state.
        go_backwards: process the sequence backwards (the returned sequence
            is then in reverse order, as in Keras).
        stateful: keep the last state of each batch as the next batch's
            initial state.
        zero_output_for_mask: output zeros (instead of the previous output)
            at masked steps. `Bidirectional` sets it when returning sequences.
        implementation: which loop runs the recurrence: "auto" (default:
            the fused C++ CPU kernels when they apply, else an XLA-compiled
            loop, else a plain TensorFlow loop), "native", "xla" or "tf".
            All give the same numbers; see `ind_rnn.indrnn_scan`.
        **kwargs: other `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        sequences: `[batch, time, features]`; `time` may be unknown.
        initial_state: optional `[batch, units]` (or a list of one).
        mask: optional boolean `[batch, time]`: a False step is skipped, the
            state and output carried through.
        training: whether dropout applies.

    Returns:
        `[batch, units]`, or `[batch, time, units]` with `return_sequences`;
        with `return_state`, a list `[output, final_state]`.

    Raises:
        TypeError / ValueError: for bad constructor arguments (see
            `IndRNNCell`), or inputs that are not rank 3 with a known last
            dimension.

    Example:

    >>> import numpy as np
    >>> from ind_rnn import IndRNN
    >>> layer = IndRNN(16, recurrent_max_abs=2 ** (1 / 100), return_sequences=True)
    >>> layer(np.ones((4, 100, 2), "float32")).shape
    TensorShape([4, 100, 16])
    """

    def __init__(self, units, recurrent_min_abs=0, recurrent_max_abs=None,
                 recurrent_kernel_initializer=None, input_kernel_initializer=None,
                 activation=None, *, bias_initializer="zeros",
                 input_kernel_regularizer=None, recurrent_kernel_regularizer=None,
                 bias_regularizer=None, input_kernel_constraint=None,
                 recurrent_kernel_constraint=None, bias_constraint=None,
                 dropout=0.0, seed=None, return_sequences=False, return_state=False,
                 go_backwards=False, stateful=False, zero_output_for_mask=False,
                 implementation="auto", **kwargs):
        cell = IndRNNCell(
            units, recurrent_min_abs, recurrent_max_abs, recurrent_kernel_initializer,
            input_kernel_initializer, activation,
            bias_initializer=bias_initializer,
            input_kernel_regularizer=input_kernel_regularizer,
            recurrent_kernel_regularizer=recurrent_kernel_regularizer,
            bias_regularizer=bias_regularizer,
            input_kernel_constraint=input_kernel_constraint,
            recurrent_kernel_constraint=recurrent_kernel_constraint,
            bias_constraint=bias_constraint, dropout=dropout, seed=seed,
            dtype=kwargs.get("dtype"), trainable=kwargs.get("trainable", True),
            name="ind_rnn_cell")
        super().__init__(cell, return_sequences=return_sequences, return_state=return_state,
                         go_backwards=go_backwards, stateful=stateful, unroll=False,
                         zero_output_for_mask=zero_output_for_mask, **kwargs)
        if implementation not in IMPLEMENTATIONS:
            raise ValueError("Received an invalid value for argument `implementation`, "
                             f"expected one of {IMPLEMENTATIONS}, got {implementation!r}.")
        self.implementation = implementation

    def build(self, sequences_shape, initial_state_shape=None):
        _checks.known_feature_size("sequences", sequences_shape, rank=3)
        super().build(sequences_shape, initial_state_shape)

    def call(self, sequences, initial_state=None, mask=None, training=False):
        flavour.check_keras3_layer_inputs(self, sequences)
        # Integer (or boolean) inputs are cast to the compute dtype, as Keras'
        # own layers take them (Dense, SimpleRNN); Keras already casts floats.
        sequences = tf.cast(sequences, self.compute_dtype)
        return super().call(sequences, initial_state=initial_state, mask=mask,
                            training=training)

    def inner_loop(self, sequences, initial_state, mask, training=False):
        initial_state = initial_state[0] if isinstance(initial_state, (list, tuple)) \
            else initial_state
        mask = mask[0] if isinstance(mask, (list, tuple)) else mask
        if training and self.cell.dropout > 0:
            # The same mask the cell would use, shared over time.
            dropout_mask = self.cell.get_dropout_mask(sequences[:, 0, :])
            sequences = sequences * dropout_mask[:, None, :]
        if mask is not None:
            mask = tf.cast(mask, tf.bool)
        if self.go_backwards:
            sequences = tf.reverse(sequences, [1])
            mask = None if mask is None else tf.reverse(mask, [1])

        # The cell's projection and recurrence, fused where the kernels can.
        input_kernel, bias = self.cell.projection_weights()
        states, last_state = project_and_scan(
            sequences, input_kernel, bias, self.cell.effective_recurrent_weight(),
            tf.cast(initial_state, sequences.dtype), self.cell.activation,
            mask=mask, implementation=self.implementation,
            return_states=bool(self.return_sequences))
        if self.return_sequences:
            outputs = _masked_outputs(states, mask, self.zero_output_for_mask)
            last_output = outputs[:, -1]
        else:
            # Only the last output is used (RNN.call reads `last_output`): derive
            # it from the last state; `states` is not even an output of the scan,
            # so no [batch, time, units] gradient (of zeros) is made for it.
            last_output = _masked_last_output(last_state, mask, self.zero_output_for_mask)
            outputs = last_output[:, None, :]
        return last_output, outputs, [last_state]

    @property
    def units(self):
        return self.cell.num_units

    def get_config(self):
        cell_config = self.cell.get_config()
        config = {"units": self.cell.num_units, "implementation": self.implementation}
        config.update({key: cell_config[key] for key in _CELL_ARGS + _CELL_KEYWORDS})
        base_config = super().get_config()
        del base_config["cell"]
        base_config.pop("unroll", None)
        return {**base_config, **config}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _cell_setting(name):
    return property(lambda self: getattr(self.cell, name),
                    doc=f"The cell's `{name}` (see `IndRNNCell`).")


# Expose the cell's settings as read-only properties, as Keras' SimpleRNN does.
for _setting in _CELL_ARGS + _CELL_KEYWORDS:
    setattr(IndRNN, _setting, _cell_setting(_setting))


def _masked_last_output(last_state, mask, zero_output_for_mask):
    """The last step's output under Keras' masking convention (see below)."""
    if mask is None:
        return last_state
    keep = mask[:, -1] if zero_output_for_mask else tf.reduce_any(mask, axis=1)
    return tf.where(keep[:, None], last_state, tf.zeros_like(last_state))


def _masked_outputs(states, mask, zero_output_for_mask):
    """Per-step outputs from carried states, with Keras' masking convention.

    The output of a valid step is its new state. At a masked step Keras
    outputs the previous output, which is the carried state once a valid step
    was seen, and zeros before (or always zeros with `zero_output_for_mask`).
    """
    if mask is None:
        return states
    if zero_output_for_mask:
        keep = mask
    else:
        keep = tf.cast(tf.math.cumsum(tf.cast(mask, tf.int32), axis=1), tf.bool)
    return tf.where(keep[:, :, None], states, tf.zeros_like(states))
