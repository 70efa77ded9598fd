"""`BatchNormModel`: a functional model whose `fit` gives its batch norms exact statistics.

The models of `ind_rnn.models` are `BatchNormModel`s. Their `fit` adds a
`BatchNormStatistics` callback fed with up to `batch_norm_statistics` (500)
training sequences, so that every validation, and `evaluate` and `predict`
after `fit`, use the exact population statistics under the current weights,
as the original sequential MNIST script did. Moving averages alone lag the
weights and are noisy with batches of 32 sequences (ind_rnn/README_DEEP.md
has the measurements).
"""
import inspect
import math
import warnings

import keras
import numpy as np
import tensorflow as tf

from ind_rnn.batch_norm import BatchNormStatistics, batch_norm_layers
from ind_rnn.deep import non_negative_int

# The original script's choice: one batch of 500 training sequences.
DEFAULT_STATISTICS_SAMPLES = 500


@keras.saving.register_keras_serializable(package="ind_rnn")
class BatchNormModel(keras.Model):
    """A functional `keras.Model` whose `fit` re-estimates its batch norms' statistics.

    `fit` behaves as `keras.Model.fit`, plus a
    `ind_rnn.BatchNormStatistics` callback that sets every batch norm's
    moving mean and variance to the exact population statistics of up to
    `batch_norm_statistics` training samples before each validation, before
    an `evaluate` called from `fit`'s callbacks, and at the end of training.
    The samples are evenly spaced over the training part of `x` (an array;
    `validation_split` respected), or the first batches of `x` (a
    `tf.data.Dataset`; a repeated, shuffled one gives fresh batches each
    time). Nothing is added if `batch_norm_statistics` is 0, the model has
    no batch norm, the callbacks already hold a `BatchNormStatistics`, or
    `x` is of another kind (a generator or `PyDataset`: then a warning says
    that the moving averages are used).

    Args:
        *args, **kwargs: those of `keras.Model` (functional: `inputs`,
            `outputs`, `name`, ...).
        batch_norm_statistics: int >= 0, training samples per estimate (0:
            keep the layers' moving averages). Also an attribute, saved with
            the model.

    Raises:
        TypeError / ValueError: for a `batch_norm_statistics` that is not an
            int >= 0.

    Example:

    >>> import keras, numpy as np
    >>> from ind_rnn import build_sequence_classifier
    >>> model = build_sequence_classifier(16, 1, 3, num_layers=2, units=8)
    >>> type(model).__name__, model.batch_norm_statistics
    ('BatchNormModel', 500)
    >>> model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    >>> x = np.random.rand(40, 16, 1).astype("float32")
    >>> _ = model.fit(x, np.random.randint(0, 3, 40), epochs=1, verbose=0)
    >>> np.allclose(model(x), model(x, training=True), atol=1e-4)  # exact statistics of x
    True
    """

    def __init__(self, *args, batch_norm_statistics=DEFAULT_STATISTICS_SAMPLES, **kwargs):
        super().__init__(*args, **kwargs)
        self.batch_norm_statistics = non_negative_int("batch_norm_statistics",
                                                      batch_norm_statistics)

    def fit(self, *args, **kwargs):  # pylint: disable=arguments-differ
        """`keras.Model.fit`, with the batch norm statistics re-estimated (see the class)."""
        arguments = inspect.signature(keras.Model.fit).bind(self, *args, **kwargs).arguments
        arguments.pop("self")
        callbacks = arguments.get("callbacks")
        if callbacks is None or isinstance(callbacks, (list, tuple)):
            statistics = self._statistics_callback(arguments, list(callbacks or []))
            if statistics is not None:
                # First, so that the other callbacks see the new statistics.
                arguments["callbacks"] = [statistics] + list(callbacks or [])
        return super().fit(**arguments)

    def _statistics_callback(self, arguments, callbacks):
        samples = self.batch_norm_statistics
        if (not samples or any(isinstance(c, BatchNormStatistics) for c in callbacks)
                or not any(layer.trainable for layer in batch_norm_layers(self))):
            return None
        x = arguments.get("x")
        if isinstance(x, (np.ndarray, tf.Tensor)) and np.ndim(x) >= 1:
            train = int(x.shape[0] * (1.0 - arguments.get("validation_split", 0.0)))
            if train < 1:
                return None
            rows = np.unique(np.linspace(0, train - 1, min(train, samples)).astype(int))
            return BatchNormStatistics(tf.gather(x, rows) if isinstance(x, tf.Tensor)
                                       else x[rows])
        if isinstance(x, tf.data.Dataset):
            first = next(iter(x.take(1)), None)
            if first is None:
                return None
            inputs = first[0] if isinstance(first, (tuple, list)) else first
            batch = int(inputs.shape[0]) if hasattr(inputs, "shape") and inputs.shape else 1
            return BatchNormStatistics(x, batches=max(1, math.ceil(samples / max(batch, 1))))
        warnings.warn(
            f"{self.name}.fit: the batch norms' statistics are re-estimated only for "
            f"NumPy / tensor or tf.data inputs, not {type(x).__name__}; evaluate and predict "
            "use the moving averages. Pass callbacks=[ind_rnn.BatchNormStatistics(...)] "
            "with training inputs for exact ones.", stacklevel=3)
        return None

    def get_config(self):
        return {**super().get_config(), "batch_norm_statistics": self.batch_norm_statistics}
