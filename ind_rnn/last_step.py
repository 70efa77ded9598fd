"""`LastStep`: each sequence's last valid step, the input of a classifier's logits."""
import keras
import tensorflow as tf

from ind_rnn import _checks


@keras.saving.register_keras_serializable(package="ind_rnn")
class LastStep(keras.layers.Layer):
    """The features of each sequence's last valid step: `[batch, time, f] -> [batch, f]`.

    Without a mask, the last step; with one, the last step where the mask
    is True (the last step for a sequence with none).

    Call arguments:
        inputs: `[batch, time, features]`.
        mask: optional boolean `[batch, time]`.

    Returns:
        `[batch, features]`.

    Raises:
        ValueError: for inputs that are not rank 3.

    Example:

    >>> import numpy as np
    >>> from ind_rnn.last_step import LastStep
    >>> x = np.arange(6, dtype="float32").reshape(1, 3, 2)
    >>> LastStep()(x, mask=np.array([[True, True, False]])).numpy()
    array([[2., 3.]], dtype=float32)
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def build(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(_checks.invalid("inputs", "a shape of rank 3", tuple(input_shape)))
        self.built = True

    def call(self, inputs, mask=None):
        if mask is None:
            return inputs[:, -1]
        mask = tf.cast(mask, tf.bool)
        num_steps = tf.shape(inputs)[1]
        # Distance of the last True from the end: argmax finds the first True
        # of the reversed mask (0, the last step, when there is none).
        from_end = tf.argmax(tf.cast(tf.reverse(mask, [1]), tf.int32), axis=1,
                             output_type=tf.int32)
        return tf.gather(inputs, num_steps - 1 - from_end, axis=1, batch_dims=1)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])
