"""Deep IndRNN building blocks: batch norm over time, residual and dense blocks.

Li et al. train IndRNNs 21 layers deep ("longer and deeper", CVPR 2018) and
add dense IndRNNs in the follow-up ("Deep IndRNN", arXiv 1910.06251). The
layers here are built on `ind_rnn.IndRNN`, so there is one recurrence:

* `SequenceBatchNormalization` (from `ind_rnn.sequence_batch_norm`): batch
  norm over batch and time, mask-aware, with debiased moving averages.
* `ResidualIndRNNBlock`: BN -> IndRNN -> BN -> IndRNN plus a shortcut.
* `DenseIndRNNBlock`: dense layers whose outputs are concatenated to their
  inputs, with a bottleneck.

Every layer takes and returns `[batch, time, features]` sequences and passes
a `[batch, time]` mask through.
"""
import numbers

import keras
import tensorflow as tf

from ind_rnn import _checks
from ind_rnn._checks import invalid
from ind_rnn.layer import IndRNN
from ind_rnn.sequence_batch_norm import SequenceBatchNormalization  # noqa: F401 (re-export)


# Input kernels of the deep blocks: fan-in-scaled uniform with standard
# deviation sqrt(2 / (65 * fan_in)) (PyTorch's kaiming_uniform with a=8).
# Behind BN the output does not depend on this scale, but Adam moves every
# weight by about the learning rate per step, so the scale sets the relative
# step: with the plain stack's uniform(-0.001, 0.001), Adam at lr 2e-4
# changes each weight of all 21 layers by 20% or more per step, and a
# 21-layer residual IndRNN's loss jumped to 3x chance level before it came
# down; with this one it falls from the first step.
DEEP_INPUT_KERNEL_INITIALIZER = {
    "class_name": "VarianceScaling",
    "config": {"scale": 2.0 / 65.0, "mode": "fan_in", "distribution": "uniform"}}


def non_negative_int(name, value):
    """Returns `value` if it is an integer >= 0 (not a bool), else raises."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(invalid(name, "an integer >= 0", value))
    if value < 0:
        raise ValueError(invalid(name, "an integer >= 0", value))
    return int(value)


def fraction(name, value):
    """Returns `value` as a float if it is a number in (0, 1], else raises."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(invalid(name, "a number in (0, 1]", value))
    if not 0 < value <= 1:
        raise ValueError(invalid(name, "a number in (0, 1]", value))
    return float(value)


def _serialize_initializer(initializer):
    return None if initializer is None else keras.initializers.serialize(initializer)


def _get_initializer(value):
    return None if value is None else keras.initializers.get(value)


class _IndRNNStackLayer(keras.layers.Layer):
    """Shared plumbing of the blocks: IndRNN settings, BN, dropout, masks."""

    def __init__(self, recurrent_max_abs=None, recurrent_kernel_initializer=None,
                 last_recurrent_kernel_initializer=None, input_kernel_initializer=None,
                 dropout=0.0, batch_norm=True, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.recurrent_max_abs = _checks.non_negative_number(
            "recurrent_max_abs", recurrent_max_abs, allow_none=True)
        self.recurrent_kernel_initializer = _get_initializer(recurrent_kernel_initializer)
        self.last_recurrent_kernel_initializer = _get_initializer(
            last_recurrent_kernel_initializer)
        self.input_kernel_initializer = keras.initializers.get(
            DEEP_INPUT_KERNEL_INITIALIZER if input_kernel_initializer is None
            else input_kernel_initializer)
        self.dropout = _checks.rate("dropout", dropout)
        self.batch_norm = _checks.boolean("batch_norm", batch_norm)
        self.seed = seed
        self.supports_masking = True
        self._layer_count = 0  # dropout layers made, for their seeds
        self._ind_rnn_count = 0

    def _ind_rnn(self, units, name, last=False):
        """A sequence-returning IndRNN (ReLU) with this block's settings."""
        recurrent_initializer = self.recurrent_kernel_initializer
        if last and self.last_recurrent_kernel_initializer is not None:
            recurrent_initializer = self.last_recurrent_kernel_initializer
        self._ind_rnn_count += 1
        offset = self._ind_rnn_count  # distinct weights even from seeded initializers
        return IndRNN(units, recurrent_max_abs=self.recurrent_max_abs,
                      recurrent_kernel_initializer=reseeded(recurrent_initializer, offset),
                      input_kernel_initializer=reseeded(self.input_kernel_initializer, offset),
                      return_sequences=True, name=name,
                      dtype=self.dtype_policy)

    def _norm(self, name):
        return SequenceBatchNormalization(name=name, dtype=self.dtype_policy) \
            if self.batch_norm else None

    def _dropout(self, name):
        """Dropout with one mask per sequence (the same features dropped at every step)."""
        if not self.dropout:
            return None
        self._layer_count += 1
        seed = None if self.seed is None else self.seed + self._layer_count
        return keras.layers.SpatialDropout1D(self.dropout, seed=seed, name=name,
                                             dtype=self.dtype_policy)

    @staticmethod
    def _apply_chain(layers, values, training, mask):
        """Calls `layers` in turn; BN and IndRNN also get the mask."""
        for layer in layers:
            if isinstance(layer, keras.layers.Dropout):
                values = layer(values, training=training)
            else:
                values = layer(values, training=training, mask=mask)
        return values

    @staticmethod
    def _build_chain(layers, input_shape):
        """Builds `layers` in turn (so that saved weights can be loaded into
        them before any call); returns the output shape."""
        shape = tuple(input_shape)
        for layer in layers:
            layer.build(shape)
            shape = tuple(layer.compute_output_shape(shape))
        return shape

    def compute_mask(self, inputs, mask=None):
        return mask

    def get_config(self):
        config = {
            "recurrent_max_abs": self.recurrent_max_abs,
            "recurrent_kernel_initializer":
                _serialize_initializer(self.recurrent_kernel_initializer),
            "last_recurrent_kernel_initializer":
                _serialize_initializer(self.last_recurrent_kernel_initializer),
            "input_kernel_initializer":
                keras.initializers.serialize(self.input_kernel_initializer),
            "dropout": self.dropout,
            "batch_norm": self.batch_norm,
            "seed": self.seed,
        }
        return {**super().get_config(), **config}


def reseeded(initializer, offset):
    """A fresh copy of `initializer`, its integer seed (if any) moved by `offset`.

    A seeded Keras initializer draws the same values at every call, so
    layers that share one would start identical; giving each layer its own
    offset keeps them distinct and the whole model reproducible.
    """
    if initializer is None:
        return None
    config = initializer.get_config()
    if isinstance(config.get("seed"), int):
        config["seed"] += offset
    return initializer.__class__.from_config(config)


@keras.saving.register_keras_serializable(package="ind_rnn")
class ResidualIndRNNBlock(_IndRNNStackLayer):
    """Residual IndRNN block, pre-activation form: `x + F(x)`.

    `F` is BN -> IndRNN(ReLU) -> BN -> IndRNN(ReLU) (Li et al., Fig. 2 of
    arXiv 1803.04831; BN is `SequenceBatchNormalization`, over batch and
    time). The shortcut is the identity, or a linear projection (no bias)
    when the input width differs from `units`. With `dropout`, each IndRNN's
    output is dropped with one mask per sequence before the next step of `F`.

    Args:
        units: positive int, width of both IndRNN layers and of the output.
        recurrent_max_abs: bound on `|u|` of both IndRNN layers, e.g.
            `2 ** (1 / T)`; None: unbounded.
        recurrent_kernel_initializer: initializer of both layers' recurrent
            weights (None: the IndRNN default, constant 1).
        last_recurrent_kernel_initializer: initializer of the second layer's
            recurrent weights, e.g. near 1 for the last block of a stack
            (None: `recurrent_kernel_initializer`).
        input_kernel_initializer: initializer of both layers' input kernels
            (None: `DEEP_INPUT_KERNEL_INITIALIZER`, uniform with standard
            deviation `sqrt(2 / (65 * fan_in))`).
        dropout: float in [0, 1), dropout rate after each IndRNN layer.
        batch_norm: whether to apply the two batch norms.
        seed: seed of the dropout masks.
        **kwargs: `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: `[batch, time, features]`.
        training: whether BN uses batch statistics and dropout applies.
        mask: optional boolean `[batch, time]`; passed to the BNs and IndRNNs
            and passed on.

    Returns:
        `[batch, time, units]`.

    Raises:
        TypeError / ValueError: for a bad `units`, `recurrent_max_abs`,
            `dropout` or `batch_norm`, or inputs that are not rank 3
            with a known last dimension.

    Example:

    >>> import numpy as np
    >>> from ind_rnn import ResidualIndRNNBlock
    >>> block = ResidualIndRNNBlock(16, recurrent_max_abs=2 ** (1 / 20))
    >>> block(np.ones((2, 20, 16), "float32")).shape
    TensorShape([2, 20, 16])
    """

    def __init__(self, units, recurrent_max_abs=None, recurrent_kernel_initializer=None,
                 last_recurrent_kernel_initializer=None, input_kernel_initializer=None,
                 dropout=0.0, batch_norm=True, seed=None, **kwargs):
        super().__init__(recurrent_max_abs, recurrent_kernel_initializer,
                         last_recurrent_kernel_initializer, input_kernel_initializer,
                         dropout, batch_norm, seed, **kwargs)
        self.units = _checks.positive_int("units", units)
        candidates = [self._norm("norm_1"), self._ind_rnn(self.units, "ind_rnn_1"),
                      self._dropout("dropout_1"), self._norm("norm_2"),
                      self._ind_rnn(self.units, "ind_rnn_2", last=True),
                      self._dropout("dropout_2")]
        # The residual branch F, in call order (left-out BNs and dropouts skipped).
        self.residual_layers = [layer for layer in candidates if layer is not None]
        self.projection = None

    def build(self, input_shape):
        input_dim = _checks.known_feature_size("inputs", input_shape, rank=3)
        if input_dim != self.units:
            self.projection = keras.layers.Dense(self.units, use_bias=False, name="projection",
                                                 dtype=self.dtype_policy)
            self.projection.build(input_shape)
        self._build_chain(self.residual_layers, input_shape)
        self.built = True

    def call(self, inputs, training=None, mask=None):
        # Integer (or boolean) inputs are cast to the compute dtype, as Keras'
        # own layers take them; the shortcut adds them as they are.
        inputs = tf.cast(inputs, self.compute_dtype)
        residual = self._apply_chain(self.residual_layers, inputs, training, mask)
        shortcut = inputs if self.projection is None else self.projection(inputs)
        return shortcut + residual

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="ind_rnn")
class DenseIndRNNBlock(_IndRNNStackLayer):
    """Dense IndRNN block: each dense layer's output is concatenated to its input.

    As in Deep IndRNN (arXiv 1910.06251, after DenseNet): dense layer `i`
    maps the concatenation of the block input and all previous dense
    layers' outputs through BN -> IndRNN(`bottleneck * growth_rate` units)
    -> BN -> IndRNN(`growth_rate` units), all IndRNNs with ReLU. With
    `bottleneck=0` the bottleneck IndRNN (and its BN) is left out. The
    block's output has `features + num_layers * growth_rate` features; put a
    transition (BN -> IndRNN of fewer units, see `build_dense_indrnn`)
    between blocks to shrink it.

    Args:
        num_layers: positive int, number of dense layers.
        growth_rate: positive int, features each dense layer adds.
        bottleneck: int >= 0, width of the bottleneck IndRNN as a multiple of
            `growth_rate` (DenseNet's 4); 0 for none.
        recurrent_max_abs, recurrent_kernel_initializer,
        input_kernel_initializer, dropout, batch_norm, seed: as in
            `ResidualIndRNNBlock`.
        last_recurrent_kernel_initializer: initializer of the recurrent
            weights of the block's last IndRNN layer.
        **kwargs: `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: `[batch, time, features]`.
        training: whether BN uses batch statistics and dropout applies.
        mask: optional boolean `[batch, time]`, passed on.

    Returns:
        `[batch, time, features + num_layers * growth_rate]`; the first
        `features` are the inputs unchanged.

    Raises:
        TypeError / ValueError: for a bad `num_layers`, `growth_rate`,
            `bottleneck` or any argument of `ResidualIndRNNBlock`.

    Example:

    >>> import numpy as np
    >>> from ind_rnn import DenseIndRNNBlock
    >>> block = DenseIndRNNBlock(3, growth_rate=8, recurrent_max_abs=2 ** (1 / 20))
    >>> block(np.ones((2, 20, 16), "float32")).shape
    TensorShape([2, 20, 40])
    """

    def __init__(self, num_layers, growth_rate, bottleneck=4, recurrent_max_abs=None,
                 recurrent_kernel_initializer=None, last_recurrent_kernel_initializer=None,
                 input_kernel_initializer=None, dropout=0.0, batch_norm=True,
                 seed=None, **kwargs):
        super().__init__(recurrent_max_abs, recurrent_kernel_initializer,
                         last_recurrent_kernel_initializer, input_kernel_initializer,
                         dropout, batch_norm, seed, **kwargs)
        self.num_layers = _checks.positive_int("num_layers", num_layers)
        self.growth_rate = _checks.positive_int("growth_rate", growth_rate)
        self.bottleneck = non_negative_int("bottleneck", bottleneck)
        self.dense_layers = [self._dense_layer(index) for index in range(self.num_layers)]

    def _dense_layer(self, index):
        """The sublayers of dense layer `index`, in call order (None: left out)."""
        prefix = f"layer_{index + 1}_"
        layers = []
        if self.bottleneck:
            layers += [self._norm(prefix + "bottleneck_norm"),
                       self._ind_rnn(self.bottleneck * self.growth_rate,
                                     prefix + "bottleneck_ind_rnn"),
                       self._dropout(prefix + "bottleneck_dropout")]
        last = index == self.num_layers - 1
        layers += [self._norm(prefix + "norm"),
                   self._ind_rnn(self.growth_rate, prefix + "ind_rnn", last=last),
                   self._dropout(prefix + "dropout")]
        return [layer for layer in layers if layer is not None]

    def build(self, input_shape):
        _checks.known_feature_size("inputs", input_shape, rank=3)
        shape = tuple(input_shape)
        for layers in self.dense_layers:
            new_shape = self._build_chain(layers, shape)
            shape = shape[:-1] + (shape[-1] + new_shape[-1],)
        self.built = True

    def call(self, inputs, training=None, mask=None):
        # Integer (or boolean) inputs are cast to the compute dtype, as Keras'
        # own layers take them; they are the first features of the output.
        features = tf.cast(inputs, self.compute_dtype)
        for layers in self.dense_layers:
            new_features = self._apply_chain(layers, features, training, mask)
            features = tf.concat([features, new_features], axis=-1)
        return features

    def compute_output_shape(self, input_shape):
        width = input_shape[-1] + self.num_layers * self.growth_rate
        return tuple(input_shape[:-1]) + (width,)

    def get_config(self):
        config = {"num_layers": self.num_layers, "growth_rate": self.growth_rate,
                  "bottleneck": self.bottleneck}
        return {**super().get_config(), **config}
