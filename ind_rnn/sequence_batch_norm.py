"""Batch normalization over batch and time, with moving averages that start unbiased.

`SequenceBatchNormalization` normalizes `[batch, time, features]` with the
statistics of each feature over all batch rows and (valid) time steps, as the
original sequential MNIST script did. Its moving averages, which inference
uses, differ from Keras' in two measured ways (see ind_rnn/README_DEEP.md):

* They are debiased: the average is weighted over the batches seen so far
  only (as Adam debiases its moments), instead of starting from mean 0 and
  variance 1. An IndRNN's activations can have variances of 1e-5 (the plain
  stack's input kernels start at +-0.001): Keras' initial 1 then outweighed
  them for thousands of steps, and `evaluate` scored at chance.
* The default momentum is 0.9 (PyTorch's BatchNorm1d default, which the
  IndRNN authors' code uses), not 0.99: the weights of a recurrent net move
  the statistics faster than a 100-step average follows.

Exact statistics come from `ind_rnn.estimate_batch_norm_statistics`, which the
models of `ind_rnn.models` run at the end of `fit` and before each validation.
"""
import keras
import tensorflow as tf

from ind_rnn import _checks
from ind_rnn._checks import invalid


@keras.saving.register_keras_serializable(package="ind_rnn")
class SequenceBatchNormalization(keras.layers.BatchNormalization):
    """Batch normalization of `[batch, time, features]` over batch and time, mask-aware.

    The statistics of each feature are taken over all batch rows and time
    steps, as in the original sequential MNIST script. With a mask, padded
    steps do not enter the statistics (nor the moving averages), so a padded
    batch is normalized exactly as its valid steps alone would be; the
    outputs at padded steps are normalized with the same statistics and are
    meant to be ignored downstream (IndRNN skips masked steps). With a mask
    the statistics are those of this replica (`synchronized` applies to
    unmasked batches only).

    In training the output is that of `keras.layers.BatchNormalization` (of
    which this is a subclass) on the valid steps. At inference the moving
    averages are used; unlike Keras', they are debiased: after `n` batches
    they are the average of the `n` batch statistics weighted by
    `momentum ** (n - i)`, with no trace of an initial value (the
    `moving_weight` variable holds `1 - momentum ** n`). Moving averages
    still lag weights that change: for exact statistics, use
    `ind_rnn.estimate_batch_norm_statistics` or the `BatchNormStatistics`
    callback (the models of `ind_rnn.models` do it in `fit` themselves).

    Args:
        momentum: float in [0, 1), momentum of the moving averages (default
            0.9, as PyTorch's BatchNorm1d).
        epsilon: small float added to the variance.
        **kwargs: the other `keras.layers.BatchNormalization` arguments
            (`center`, `scale`, initializers, regularizers, constraints,
            `name`, `dtype`, ...). `axis` may only be -1 (features last);
            `renorm` is not supported.

    Call arguments:
        inputs: `[batch, time, features]`.
        training: whether to normalize with the batch statistics (and update
            the moving averages) or with the moving averages.
        mask: optional boolean `[batch, time]`, False at padded steps.

    Returns:
        A tensor shaped like `inputs`; the mask is passed on.

    Raises:
        TypeError / ValueError: for a `momentum` outside [0, 1), an `axis`
            other than -1, `renorm=True`, inputs that are not rank 3 with a
            known last dimension, or a mask that is not `[batch, time]`.

    Example:

    >>> import numpy as np
    >>> from ind_rnn import SequenceBatchNormalization
    >>> x = np.random.rand(4, 10, 3).astype("float32")
    >>> mask = np.arange(10)[None, :] < np.array([[10], [7], [5], [2]])
    >>> norm = SequenceBatchNormalization()
    >>> norm(x, training=True, mask=mask).shape
    TensorShape([4, 10, 3])
    >>> np.allclose(norm.moving_mean.numpy(), x[mask].mean(0))  # debiased: the batch's
    True
    """

    def __init__(self, momentum=0.9, epsilon=1e-3, **kwargs):
        axis = kwargs.pop("axis", -1)
        if axis not in (-1, [-1], (-1,)):
            raise ValueError(invalid("axis", "-1 (features last)", axis))
        if kwargs.get("renorm"):
            raise ValueError(invalid("renorm", "False (not supported over time)",
                                      kwargs["renorm"]))
        momentum = _checks.rate("momentum", momentum)
        super().__init__(axis=-1, momentum=momentum, epsilon=epsilon, **kwargs)
        self.moving_weight = None

    def build(self, input_shape):
        _checks.known_feature_size("inputs", input_shape, rank=3)
        super().build(input_shape)
        # 1 - momentum ** n after n batches: the weight the averages have so
        # far, by which they are debiased.
        self.moving_weight = self.add_weight(shape=(), name="moving_weight",
                                             initializer="zeros", trainable=False,
                                             autocast=False)

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable):
            return super().call(inputs, training=False)
        if mask is not None and mask.shape.rank != 2:
            raise ValueError(invalid("mask", "a boolean tensor [batch, time]", mask.shape))
        # As Keras does: statistics in float32 even under mixed precision.
        values = tf.cast(inputs, "float32")
        if mask is None:
            mean, variance = keras.ops.moments(values, axes=[0, 1],
                                               synchronized=self.synchronized)
            count = None
        else:
            mean, variance, count = _masked_moments(values, tf.cast(mask, tf.bool))
        self._update_moving_averages(mean, variance, count)
        gamma = tf.cast(self.gamma, "float32") if self.scale else None
        beta = tf.cast(self.beta, "float32") if self.center else None
        outputs = tf.nn.batch_normalization(values, mean, variance, beta, gamma, self.epsilon)
        return tf.cast(outputs, self.compute_dtype)

    def _update_moving_averages(self, mean, variance, count):
        """Debiased moving averages: each batch enters with weight `(1 - m) / (1 - m ** n)`."""
        previous = tf.cast(self.moving_weight, "float32")
        weight = previous * self.momentum + (1.0 - self.momentum)
        rate = (1.0 - self.momentum) / weight
        if count is not None:  # a batch with no valid step carries no statistics
            rate = tf.where(count > 0, rate, 0.0)
            weight = tf.where(count > 0, weight, previous)
        for average, value in ((self.moving_mean, mean), (self.moving_variance, variance)):
            current = tf.cast(average, "float32")
            # Not current + rate * (value - current): with the initial variance 1
            # and a batch variance of 1e-6 that cancels to a few digits.
            average.assign(tf.cast(current * (1.0 - rate) + value * rate, average.dtype))
        self.moving_weight.assign(tf.cast(weight, self.moving_weight.dtype))

    def load_own_variables(self, store):
        """Loads the layer's variables; files saved before `moving_weight` existed too.

        Those hold gamma, beta and the moving averages only: the averages
        are then taken as fully warmed up (`moving_weight` 1).
        """
        variables = self._trainable_variables + self._non_trainable_variables
        if len(store.keys()) == len(variables) - 1:
            for index, variable in enumerate(variables[:-1]):
                variable.assign(store[f"{index}"])
            self.moving_weight.assign(1.0)
            return
        super().load_own_variables(store)


def _masked_moments(values, mask):
    """Per-feature mean and (biased) variance of `values` over the steps where `mask`.

    Returns `(mean, variance, count)`, with `count` the number of valid
    steps; zeros if there are none.
    """
    weights = tf.cast(mask, values.dtype)[:, :, None]
    count = tf.reduce_sum(weights)
    safe_count = tf.maximum(count, 1.0)
    mean = tf.reduce_sum(values * weights, axis=[0, 1]) / safe_count
    # Centre before squaring: E[x^2] - E[x]^2 loses precision in float32.
    variance = tf.reduce_sum(tf.square(values - mean) * weights, axis=[0, 1]) / safe_count
    return mean, variance, count
