"""The Keras 3 `IndRNNCell`: one step of an Independently Recurrent Neural Network.

This is the cell under its explicit name, whatever Keras `tf.keras` is. The
names that mirror the original (`ind_rnn.IndRNNCell`,
`ind_rnn.ind_rnn_cell.IndRNNCell`) are this class under Keras 3 and the
tf-keras / TF1 cell `ind_rnn.legacy.IndRNNCell` under `TF_USE_LEGACY_KERAS=1`
(see `ind_rnn.flavour`). Both run the same `ind_rnn.recurrence` step.
"""
import keras
import tensorflow as tf

from ind_rnn import _checks, flavour
from ind_rnn.step import effective_recurrent_weight, indrnn_step, project_inputs

try:  # Keras does not export its dropout mixin in every 3.x release.
    DropoutRNNCell = keras.layers.DropoutRNNCell
except AttributeError:
    from keras.src.layers.rnn.dropout_rnn_cell import DropoutRNNCell

# The TF1 original's default initialisers (REFERENCE §2).
DEFAULT_INPUT_KERNEL_INITIALIZER = {"class_name": "RandomNormal",
                                    "config": {"mean": 0.0, "stddev": 0.001}}
DEFAULT_RECURRENT_KERNEL_INITIALIZER = {"class_name": "Constant", "config": {"value": 1.0}}

TF_KERAS_INSTEAD = (
    "in tf-keras models, tf.keras.layers.RNN(ind_rnn.IndRNNCell(...)) under "
    "TF_USE_LEGACY_KERAS=1 (the tf-keras cell `ind_rnn.legacy.IndRNNCell`: same signature, "
    "weights and maths); or Keras 3 throughout: ind_rnn.IndRNN or "
    "keras.layers.RNN(ind_rnn.keras_cell.IndRNNCell(...)) in a keras.Model on keras.Input.")


def _initializer(value, default):
    return keras.initializers.get(default if value is None else value)


@keras.saving.register_keras_serializable(package="ind_rnn")
class IndRNNCell(keras.layers.Layer, DropoutRNNCell):
    """Independently recurrent cell: `h_t = act(x_t @ W + u * h_{t-1} + b)`.

    `u` is a vector: each unit recurs only on itself (Li et al., CVPR 2018).
    The constructor keeps the TF1 original's positional signature and
    defaults; Keras extras are keyword-only. Use it inside Keras 3's
    `keras.layers.RNN`, or use `ind_rnn.IndRNN`, the fast whole-sequence layer
    with the same weights. (It is a Keras 3 layer: in a tf-keras
    `tf.keras.layers.RNN` use the tf-keras cell, `ind_rnn.legacy.IndRNNCell`,
    which is what `ind_rnn.IndRNNCell` is under `TF_USE_LEGACY_KERAS=1`.)

    Args:
        num_units: positive int, number of units (state and output size).
        recurrent_min_abs: float >= 0. If non-zero, the recurrent weight used
            is `sign(u) * max(|u|, recurrent_min_abs)` (a weight of exactly 0
            stays 0).
        recurrent_max_abs: float > 0 or None. If set (non-zero), the recurrent
            weight used is clipped to `[-recurrent_max_abs, recurrent_max_abs]`,
            e.g. `2 ** (1 / T)` for sequences of length T. Both bounds are
            applied on every forward pass, so the stored kernel keeps training.
        recurrent_kernel_initializer: initializer of `recurrent_kernel`
            `[num_units]`. None: the original's constant 1.0.
        input_kernel_initializer: initializer of `input_kernel`
            `[input_dim, num_units]`. None: the original's normal(0, 0.001).
        activation: elementwise activation; None means ReLU (as the original).
        reuse: accepted for TF1 compatibility and ignored: Keras shares
            weights by reusing the cell object, not by variable scopes.
        name: layer name.
        bias_initializer: initializer of `bias` `[num_units]` (zeros).
        input_kernel_regularizer, recurrent_kernel_regularizer,
        bias_regularizer: optional regularizers.
        input_kernel_constraint, recurrent_kernel_constraint, bias_constraint:
            optional constraints, applied after each optimizer update.
        dropout: float in [0, 1), dropout rate on the inputs, with one mask
            per sequence (shared over time) while training.
        seed: seed of the dropout mask.
        **kwargs: other `keras.layers.Layer` arguments (e.g. `dtype`).

    Call arguments:
        inputs: `[batch, input_dim]`.
        states: `[batch, num_units]`, or a one-element list of it.
        training: whether dropout applies.

    Returns:
        `(output, [new_state])`, the same `[batch, num_units]` tensor twice.

    Raises:
        TypeError / ValueError: for a non-positive or non-int `num_units`,
            negative bounds, `recurrent_min_abs > recurrent_max_abs`, an unknown
            activation, a dropout outside [0, 1), or inputs that are not rank 2
            with a known last dimension.
        ind_rnn.flavour.KerasFlavourError (a TypeError): inside a tf-keras
            `tf.keras.layers.RNN`, or run on tf-keras tensors.

    Example:

    >>> import keras, numpy as np
    >>> from ind_rnn.keras_cell import IndRNNCell
    >>> layer = keras.layers.RNN(IndRNNCell(8, recurrent_max_abs=2 ** (1 / 10)))
    >>> layer(np.ones((3, 10, 2), "float32")).shape
    TensorShape([3, 8])
    """

    def __init__(self, num_units, recurrent_min_abs=0, recurrent_max_abs=None,
                 recurrent_kernel_initializer=None, input_kernel_initializer=None,
                 activation=None, reuse=None, name=None, *,
                 bias_initializer="zeros",
                 input_kernel_regularizer=None, recurrent_kernel_regularizer=None,
                 bias_regularizer=None, input_kernel_constraint=None,
                 recurrent_kernel_constraint=None, bias_constraint=None,
                 dropout=0.0, seed=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_units = _checks.positive_int("num_units", num_units)
        self.recurrent_min_abs = _checks.non_negative_number(
            "recurrent_min_abs", 0 if recurrent_min_abs is None else recurrent_min_abs)
        self.recurrent_max_abs = _checks.non_negative_number(
            "recurrent_max_abs", recurrent_max_abs, allow_none=True)
        if (self.recurrent_min_abs and self.recurrent_max_abs
                and self.recurrent_min_abs > self.recurrent_max_abs):
            raise ValueError(
                "Received an invalid value for argument `recurrent_min_abs`, expected a "
                f"value <= recurrent_max_abs={self.recurrent_max_abs}, got {recurrent_min_abs}.")
        self.activation = _checks.activation(activation)
        self.reuse = reuse
        self.input_kernel_initializer = _initializer(
            input_kernel_initializer, DEFAULT_INPUT_KERNEL_INITIALIZER)
        self.recurrent_kernel_initializer = _initializer(
            recurrent_kernel_initializer, DEFAULT_RECURRENT_KERNEL_INITIALIZER)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.input_kernel_regularizer = keras.regularizers.get(input_kernel_regularizer)
        self.recurrent_kernel_regularizer = keras.regularizers.get(recurrent_kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.input_kernel_constraint = keras.constraints.get(input_kernel_constraint)
        self.recurrent_kernel_constraint = keras.constraints.get(recurrent_kernel_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        self.dropout = _checks.rate("dropout", dropout)
        self.seed = seed
        # Read by Keras' dropout mixin; the IndRNN state has no dropout of its
        # own (drop between layers instead).
        self.recurrent_dropout = 0.0
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.state_size = self.num_units
        self.output_size = self.num_units

    @property
    def units(self):
        """Alias of `num_units`, the Keras name."""
        return self.num_units

    def build(self, input_shape):
        input_dim = _checks.known_feature_size("inputs", input_shape, rank=2)
        self.input_kernel = self.add_weight(
            shape=(input_dim, self.num_units), name="input_kernel",
            initializer=self.input_kernel_initializer,
            regularizer=self.input_kernel_regularizer, constraint=self.input_kernel_constraint)
        self.recurrent_kernel = self.add_weight(
            shape=(self.num_units,), name="recurrent_kernel",
            initializer=self.recurrent_kernel_initializer,
            regularizer=self.recurrent_kernel_regularizer,
            constraint=self.recurrent_kernel_constraint)
        self.bias = self.add_weight(
            shape=(self.num_units,), name="bias", initializer=self.bias_initializer,
            regularizer=self.bias_regularizer, constraint=self.bias_constraint)

    def effective_recurrent_weight(self):
        """The recurrent weight `u` after the min/max bounds, in the compute dtype."""
        kernel = tf.cast(self.recurrent_kernel, self.compute_dtype)
        return effective_recurrent_weight(kernel, self.recurrent_min_abs, self.recurrent_max_abs)

    def projection_weights(self):
        """`(input_kernel, bias)` in the compute dtype, as `project` uses them."""
        return (tf.cast(self.input_kernel, self.compute_dtype),
                tf.cast(self.bias, self.compute_dtype))

    def project(self, inputs):
        """`inputs @ input_kernel + bias` over the last axis, any leading shape."""
        return project_inputs(inputs, *self.projection_weights())

    def call(self, inputs, states, training=False):
        if inputs.shape.rank != 2:
            raise ValueError(
                "Received an invalid value for argument `inputs`, expected a tensor of rank 2 "
                f"[batch, input_dim], got shape {inputs.shape}.")
        state = states[0] if isinstance(states, (list, tuple)) else states
        if training and self.dropout > 0:
            inputs = inputs * self.get_dropout_mask(inputs)
        output = indrnn_step(self.project(inputs), self.effective_recurrent_weight(),
                             state, self.activation)
        new_states = [output] if isinstance(states, (list, tuple)) else output
        return output, new_states

    def get_initial_state(self, batch_size=None, **tf_keras_arguments):
        """Zero state `[batch_size, num_units]` (a one-element list).

        Raises:
            ind_rnn.flavour.KerasFlavourError: when tf-keras or the TF1 RNN API
                asks (they pass `inputs` and `dtype`; Keras 3 passes only
                `batch_size`), or `batch_size` is a tf-keras tensor.
        """
        if tf_keras_arguments:
            raise _in_tf1_api()
        if flavour.is_tf_keras_object(batch_size):
            raise flavour.unsupported(
                "a Keras 3 IndRNN layer (`ind_rnn.IndRNN`, or keras.layers.RNN over "
                "`ind_rnn.keras_cell.IndRNNCell`) called on tf-keras tensors (tf.keras.Input, "
                "or inside a tf-keras model)", TF_KERAS_INSTEAD)
        return [tf.zeros((batch_size, self.num_units), dtype=self.compute_dtype)]

    def zero_state(self, batch_size, dtype):
        """Refuses: `zero_state` is the TF1 cells' API (`dynamic_rnn`, `MultiRNNCell`).

        Raises:
            ind_rnn.flavour.KerasFlavourError: always, naming the cell to use.
        """
        raise _in_tf1_api()

    def get_config(self):
        config = {
            "num_units": self.num_units,
            "recurrent_min_abs": self.recurrent_min_abs,
            "recurrent_max_abs": self.recurrent_max_abs,
            "recurrent_kernel_initializer":
                keras.initializers.serialize(self.recurrent_kernel_initializer),
            "input_kernel_initializer": keras.initializers.serialize(self.input_kernel_initializer),
            "activation": keras.activations.serialize(self.activation),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            "input_kernel_regularizer": keras.regularizers.serialize(self.input_kernel_regularizer),
            "recurrent_kernel_regularizer":
                keras.regularizers.serialize(self.recurrent_kernel_regularizer),
            "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
            "input_kernel_constraint": keras.constraints.serialize(self.input_kernel_constraint),
            "recurrent_kernel_constraint":
                keras.constraints.serialize(self.recurrent_kernel_constraint),
            "bias_constraint": keras.constraints.serialize(self.bias_constraint),
            "dropout": self.dropout,
            "seed": self.seed,
        }
        return {**super().get_config(), **config}


def _in_tf1_api():
    return flavour.unsupported(
        "the Keras 3 cell `ind_rnn.keras_cell.IndRNNCell` inside tf-keras or the TF1 RNN API "
        "(tf.keras.layers.RNN under TF_USE_LEGACY_KERAS=1, tf.compat.v1.nn.dynamic_rnn, "
        "static_rnn, bidirectional_dynamic_rnn, MultiRNNCell)",
        "the tf-keras / TF1 cell `ind_rnn.legacy.IndRNNCell`, which `ind_rnn.IndRNNCell` and "
        "`ind_rnn.ind_rnn_cell.IndRNNCell` are under TF_USE_LEGACY_KERAS=1 (same signature, "
        "weights and maths); or Keras 3 throughout: keras.layers.RNN(ind_rnn.IndRNNCell(...)) "
        "or ind_rnn.IndRNN.")
