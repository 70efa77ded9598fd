"""Exact population statistics for the batch norms of a trained model.

* `estimate_batch_norm_statistics(model, data, batches=None)`: sets the
  moving mean and variance of every `SequenceBatchNormalization` (and
  `keras.layers.BatchNormalization`) of `model` to the exact population
  statistics of `data`, as inference sees them.
* `BatchNormStatistics(data, batches=1)`: a Keras callback that does it before
  every evaluation and at the end of training, as the original sequential
  MNIST script did before every validation (from 500 training sequences).

"Exact" means: pooled over every valid step of every given sample (not a
moving average of batch statistics), and in inference order, i.e. each
layer's inputs are computed with the lower layers already normalized by their
new statistics, with dropout off. When the data is one batch this takes one
forward pass; for more batches, one pass per batch norm layer (each pass
stopping at that layer). Nothing but the moving statistics is changed.
"""
import warnings

import keras
import numpy as np
import tensorflow as tf

from ind_rnn import _checks
from ind_rnn._checks import invalid

# Batches of the same shape are merged into one forward pass of at most this
# many samples: the result is the same, and one pass replaces one per layer.
MAX_MERGED_SAMPLES = 512


def _check_batches(value):
    if value is None:
        return None
    return _checks.positive_int("batches", value)


def _check_data(data):
    if isinstance(data, tf.data.Dataset):
        return data
    if isinstance(data, (np.ndarray, tf.Tensor)):
        if np.ndim(data) < 1 or data.shape[0] == 0:
            raise ValueError(invalid("data", "a non-empty array of samples (axis 0)",
                                      getattr(data, "shape", data)))
        return data
    raise TypeError(invalid(
        "data", "a tf.data.Dataset of (x, y), (x, y, sample_weight) or x batches, "
        "or a NumPy array / tensor of inputs x", type(data).__name__))


def batch_norm_layers(model):
    """Every batch norm layer of `model`, those nested in blocks too, in model order.

    Args:
        model: a `keras.layers.Layer` (e.g. a `keras.Model`).

    Returns:
        A list of the `keras.layers.BatchNormalization` layers (including
        `SequenceBatchNormalization`) inside `model` (or `model` itself).

    Raises:
        TypeError: if `model` is not a Keras layer.

    Example:

    >>> from ind_rnn import build_sequence_classifier
    >>> from ind_rnn.batch_norm import batch_norm_layers
    >>> model = build_sequence_classifier(16, 1, 3, num_layers=2, units=8)
    >>> [layer.name for layer in batch_norm_layers(model)]
    ['norm_1', 'norm_2']
    """
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(invalid("model", "a Keras model or layer", type(model).__name__))
    # _flatten_layers: the one Keras walk that reaches layers nested in blocks.
    layers = model._flatten_layers(include_self=True)  # pylint: disable=protected-access
    return [layer for layer in layers if isinstance(layer, keras.layers.BatchNormalization)]


def _input_batches(data, batches):
    """The inputs x of at most `batches` batches of `data`, as a list."""
    if not isinstance(data, tf.data.Dataset):
        return [data]  # an array: one batch
    if batches is None and data.cardinality() == tf.data.INFINITE_CARDINALITY:
        raise ValueError(invalid("batches", "a positive integer for an infinite "
                                  "(repeated) dataset", batches))
    if batches is not None:
        data = data.take(batches)
    inputs = [element[0] if isinstance(element, (tuple, list)) else element
              for element in data]
    if not inputs:
        raise ValueError(invalid("data", "a dataset with at least one batch", data))
    return inputs


def _merged(inputs):
    """Concatenates runs of same-shaped tensor batches, up to MAX_MERGED_SAMPLES each."""
    chunks, run, size = [], [], 0
    for batch in inputs:
        if not isinstance(batch, (np.ndarray, tf.Tensor)):
            chunks += run + [batch]  # dicts, tuples of inputs: as they are
            run, size = [], 0
            continue
        batch = tf.convert_to_tensor(batch)
        fits = (run and batch.shape[1:] == run[0].shape[1:] and batch.dtype == run[0].dtype
                and size + batch.shape[0] <= MAX_MERGED_SAMPLES)
        if run and not fits:
            chunks.append(tf.concat(run, axis=0) if len(run) > 1 else run[0])
            run, size = [], 0
        run.append(batch)
        size += batch.shape[0]
    if run:
        chunks.append(tf.concat(run, axis=0) if len(run) > 1 else run[0])
    return chunks


class _Moments:
    """Per-feature count, mean and sum of squared deviations, pooled in float64."""

    def __init__(self):
        self.count, self.mean, self.m2 = 0.0, 0.0, 0.0

    def add(self, layer, inputs, mask):
        values = tf.cast(inputs, tf.float64)
        rank = values.shape.rank
        axis = layer.axis if isinstance(layer.axis, int) else layer.axis[0]
        axis %= rank
        reduce_axes = [index for index in range(rank) if index != axis]
        if mask is None:
            weights = tf.ones_like(values)
        else:  # as Keras: a mask has one dimension less than the inputs
            weights = tf.broadcast_to(tf.cast(mask, tf.float64)[..., None], tf.shape(values))
        count = tf.reduce_sum(weights, axis=reduce_axes).numpy()
        safe = np.maximum(count, 1.0)
        mean = tf.reduce_sum(values * weights, axis=reduce_axes).numpy() / safe
        shape = [1] * rank
        shape[axis] = -1
        centred = values - tf.constant(mean.reshape(shape))
        m2 = tf.reduce_sum(tf.square(centred) * weights, axis=reduce_axes).numpy()
        # Chan et al.'s pairwise update: exact, and stable in one pass.
        total = self.count + count
        safe_total = np.maximum(total, 1.0)
        delta = mean - self.mean
        self.m2 = self.m2 + m2 + delta ** 2 * self.count * count / safe_total
        self.mean = self.mean + delta * count / safe_total
        self.count = total

    def assign_to(self, layer):
        """Sets the layer's moving statistics; returns the samples per feature."""
        count = int(np.min(self.count)) if np.size(self.count) else 0
        if count == 0:  # no valid step: keep the old statistics
            return 0
        variance = self.m2 / np.maximum(self.count, 1.0)  # biased, as Keras' batch moments
        for average, value in ((layer.moving_mean, self.mean),
                               (layer.moving_variance, variance)):
            average.assign(np.broadcast_to(value, average.shape).astype(average.dtype))
        if getattr(layer, "moving_weight", None) is not None:
            # SequenceBatchNormalization: the averages are complete (training
            # on from here updates them, it does not replace them).
            layer.moving_weight.assign(1.0)
        return count


class _Stop(Exception):
    """Raised by the layer being measured to end a forward pass there."""

    _keras_call_info_injected = True  # Keras re-raises it unchanged


def _layer_key(layer, model):
    """The layer's path inside `model`, e.g. "residual_block_1/norm_1"."""
    path = getattr(layer.moving_mean, "path", None) or ""
    if not path.endswith("/moving_mean"):
        return layer.name
    path = path[:-len("/moving_mean")]
    prefix = f"{model.name}/"  # Sequential models put their own name first
    return path[len(prefix):] if path.startswith(prefix) and path != prefix else path


class _Estimator:
    """Wraps each batch norm's `call` to measure, set and then use its statistics."""

    def __init__(self, model, layers, one_pass):
        self.model = model
        self.pending = [layer for layer in layers if layer.trainable]
        self.pending_ids = {id(layer) for layer in self.pending}
        self.one_pass = one_pass
        self.target, self.moments, self.counts = None, None, {}
        self.originals = {}

    def __enter__(self):
        for layer in self.pending:
            original = layer.call
            self.originals[id(layer)] = (layer, original)
            layer.call = self._wrapped(layer, original)
        return self

    def __exit__(self, *exc_info):
        for layer, _ in self.originals.values():
            del layer.call  # the class's method again

    def _wrapped(self, layer, original):
        def call(inputs, *args, training=None, mask=None, **kwargs):
            del training  # always inference: the statistics are for it
            if id(layer) in self.pending_ids and (self.target is None
                                                  or self.target is layer):
                self.target = layer
                if self.moments is None:
                    self.moments = _Moments()
                self.moments.add(layer, inputs, mask)
                if not self.one_pass:
                    raise _Stop()
                self.finish_target()
            return original(inputs, *args, training=False, mask=mask, **kwargs)
        return call

    def finish_target(self):
        self.counts[_layer_key(self.target, self.model)] = self.moments.assign_to(self.target)
        self.pending_ids.discard(id(self.target))
        self.pending = [layer for layer in self.pending if layer is not self.target]
        self.target, self.moments = None, None


def estimate_batch_norm_statistics(model, data, batches=None):
    """Sets every batch norm's moving statistics to the exact population statistics of `data`.

    For each `SequenceBatchNormalization` and `keras.layers.BatchNormalization`
    in `model` (nested ones too), in call order, the moving mean and variance
    become the mean and (biased) variance of that layer's inputs, pooled
    over all samples and valid (unmasked) steps of `data`, with every lower
    layer already using its new statistics and dropout off: exactly what
    `evaluate` and `predict` will then see. Layers with `trainable=False`
    (frozen batch norms) are left as they are. Call it eagerly (as callbacks
    run); it runs the model in inference mode only.

    A model without batch norm has nothing to estimate: that raises, since
    it means the wrong model (e.g. `batch_norm=False`) was passed.

    Args:
        model: a built Keras model (or layer) containing batch norm layers.
        data: a `tf.data.Dataset` of `(x, y)`, `(x, y, sample_weight)` or `x`
            batches; or a NumPy array / tensor of inputs `x`, taken as one
            batch (all its samples). Keep the batches the same each time if
            you need reproducible results (a dataset is read once per call).
        batches: positive int, the number of dataset batches to use; None:
            all (the dataset must be finite). Ignored for an array.

    Returns:
        A dict: layer path (e.g. `"residual_block_1/norm_1"`) -> the number of
        values each feature's statistics pooled (samples x valid steps); 0
        for a layer that saw no valid step (its statistics are kept).

    Raises:
        TypeError: if `model` is not a Keras layer, `data` not a dataset,
            array or tensor, or `batches` not an int.
        ValueError: if `model` has no trainable batch norm layer, `batches`
            is not positive (or None for an infinite dataset), `data` is
            empty. (A batch norm layer that the model never calls is left as
            it is, with a warning.)
        RuntimeError: if called inside a `tf.function`.

    Example:

    >>> import numpy as np
    >>> from ind_rnn import build_sequence_classifier, estimate_batch_norm_statistics
    >>> model = build_sequence_classifier(16, 1, 3, num_layers=2, units=8)
    >>> x = np.random.rand(50, 16, 1).astype("float32")
    >>> estimate_batch_norm_statistics(model, x)
    {'norm_1': 800, 'norm_2': 800}
    """
    layers = batch_norm_layers(model)
    data = _check_data(data)
    batches = _check_batches(batches)
    if not any(layer.trainable for layer in layers):
        raise ValueError(invalid(
            "model", "a model with at least one trainable BatchNormalization or "
            "SequenceBatchNormalization layer", getattr(model, "name", model)))
    if not tf.executing_eagerly():
        raise RuntimeError("estimate_batch_norm_statistics runs eagerly, not inside a "
                           "tf.function (call it from a callback or between fit calls).")
    chunks = _merged(_input_batches(data, batches))
    with _Estimator(model, layers, one_pass=len(chunks) == 1) as estimator:
        if estimator.one_pass:
            model(chunks[0], training=False)
        while estimator.pending and not estimator.one_pass:
            for chunk in chunks:
                try:
                    model(chunk, training=False)
                except _Stop:
                    continue
            if estimator.target is None:
                break  # a full pass reached no pending layer
            estimator.finish_target()
    if estimator.pending:
        warnings.warn("estimate_batch_norm_statistics: these batch norm layers were never "
                      "called by the model, their statistics are unchanged: "
                      f"{[layer.name for layer in estimator.pending]}", stacklevel=2)
    return estimator.counts


class BatchNormStatistics(keras.callbacks.Callback):
    """Re-estimates the batch norms' population statistics before every evaluation.

    Calls `estimate_batch_norm_statistics(model, data, batches)` at
    `on_test_begin` (before each of `fit`'s validations and before
    `evaluate`) and at `on_train_end`, so that evaluations, and `predict`
    after `fit`, use the exact population statistics of the given training
    data under the current weights. This is what the original sequential
    MNIST script did: before every validation it recomputed the statistics
    from one batch of 500 training sequences.

    Args:
        data: as in `estimate_batch_norm_statistics`: a `tf.data.Dataset`
            (a repeated, shuffled one gives fresh batches at each call) or
            an array of training inputs (all used, as one batch).
        batches: positive int (default 1), dataset batches per estimate; None:
            all of a finite dataset.

    Attributes:
        counts: the last call's result (layer path -> values per feature),
            None before the first.
        calls: how many times the statistics were estimated.

    Raises:
        TypeError / ValueError: for a bad `data` or `batches` (at
            construction), or a model without batch norm (at the first
            estimate).

    Example:

    >>> import keras, numpy as np
    >>> from ind_rnn import BatchNormStatistics, build_sequence_classifier
    >>> x = np.random.rand(64, 16, 1).astype("float32")
    >>> y = np.random.randint(0, 3, 64)
    >>> model = build_sequence_classifier(16, 1, 3, num_layers=2, units=8)
    >>> model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    >>> statistics = BatchNormStatistics(x[:32])
    >>> _ = model.fit(x, y, validation_split=0.25, epochs=2, verbose=0,
    ...               callbacks=[statistics])
    >>> statistics.calls  # 2 validations + the end of training
    3
    """

    def __init__(self, data, batches=1):
        super().__init__()
        self.data = _check_data(data)
        self.batches = _check_batches(batches)
        self.counts = None
        self.calls = 0

    def _estimate(self):
        self.counts = estimate_batch_norm_statistics(self.model, self.data, self.batches)
        self.calls += 1

    def on_test_begin(self, logs=None):
        self._estimate()

    def on_train_end(self, logs=None):
        self._estimate()
