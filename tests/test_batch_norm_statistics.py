"""Batch norm population statistics: the exact estimate, the callback, and `fit`.

The estimate is checked against a NumPy forward pass (tests/indrnn_numpy_reference.py,
which shares no code with the package) that pools each layer's inputs and
normalizes with the pooled statistics, layer after layer.
"""
import doctest

import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn import datasets as sklearn_datasets

import ind_rnn.batch_norm
import ind_rnn.batch_norm_model
import ind_rnn.sequence_batch_norm
from ind_rnn import (BatchNormModel, BatchNormStatistics, IndRNN, SequenceBatchNormalization,
                     build_sequence_classifier, estimate_batch_norm_statistics)
from tests import indrnn_numpy_reference as reference

EPSILON = 1e-3


def _randomize(model, rng):
    """Random weights: gammas around 1, betas around 0, recurrent weights in (0, 1)."""
    for weight in model.trainable_weights:
        shape = tuple(weight.shape)
        if "gamma" in weight.path:
            value = rng.uniform(0.5, 1.5, shape)
        elif "recurrent_kernel" in weight.path:
            value = rng.uniform(0.0, 1.0, shape)
        else:
            value = rng.randn(*shape) * 0.5
        weight.assign(value.astype("float32"))


def _numpy_ind_rnn(x, weights, max_abs, mask=None):
    kernel, recurrent, bias = (w.astype(np.float64) for w in weights)
    h0 = np.zeros((x.shape[0], kernel.shape[1]))
    states, _ = reference.forward(x, kernel, recurrent, bias, h0, "relu", 0.0, max_abs, mask)
    return states


def _numpy_population_statistics(x, stack, mask=None):
    """[(mean, variance)] of each BN's inputs over the valid steps, in inference order.

    `stack`: [(ind_rnn_weights, max_abs, gamma, beta)], one IndRNN -> BN pair each.
    """
    statistics, values = [], x.astype(np.float64)
    for weights, max_abs, gamma, beta in stack:
        values = _numpy_ind_rnn(values, weights, max_abs, mask)
        valid = values.reshape(-1, values.shape[-1]) if mask is None else values[mask]
        mean, variance = valid.mean(0), valid.var(0)
        statistics.append((mean, variance))
        values = (values - mean) / np.sqrt(variance + EPSILON) * gamma + beta
    return statistics


def _plain_stack(model, count):
    """The NumPy view of the plain classifier's `count` IndRNN -> BN pairs."""
    stack = []
    for index in range(1, count + 1):
        layer, norm = model.get_layer(f"ind_rnn_{index}"), model.get_layer(f"norm_{index}")
        stack.append(([w.numpy() for w in layer.cell.weights], layer.cell.recurrent_max_abs,
                      norm.gamma.numpy(), norm.beta.numpy()))
    return stack


def _moving(model, names):
    return [(model.get_layer(name).moving_mean.numpy(),
             model.get_layer(name).moving_variance.numpy()) for name in names]


def _assert_statistics_close(actual, expected):
    for (mean, variance), (ref_mean, ref_variance) in zip(actual, expected, strict=True):
        np.testing.assert_allclose(mean, ref_mean, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(variance, ref_variance, rtol=1e-4, atol=1e-6)


def _classifier(rng, layers=3, time_steps=9, input_dim=2):
    model = build_sequence_classifier(time_steps, input_dim, 3, model="plain",
                                      num_layers=layers, units=6)
    _randomize(model, rng)
    return model


# ---------------------------------------------------------------- the estimate

def test_estimate_from_an_array_matches_numpy(rng):
    model = _classifier(rng)
    x = (rng.randn(20, 9, 2) * 2.0 + 0.5).astype("float32")
    counts = estimate_batch_norm_statistics(model, x)
    assert counts == {"norm_1": 180, "norm_2": 180, "norm_3": 180}
    names = ["norm_1", "norm_2", "norm_3"]
    _assert_statistics_close(_moving(model, names),
                             _numpy_population_statistics(x, _plain_stack(model, 3)))


@pytest.mark.parametrize("merged_samples", [512, 5])  # one pass; one pass per layer
def test_estimate_from_dataset_batches_pools_them_exactly(merged_samples, rng, monkeypatch):
    monkeypatch.setattr(ind_rnn.batch_norm, "MAX_MERGED_SAMPLES", merged_samples)
    model = _classifier(rng)
    x = (rng.randn(23, 9, 2) * 2.0 + 0.5).astype("float32")
    labels = rng.randint(0, 3, 23)
    dataset = tf.data.Dataset.from_tensor_slices((x, labels)).batch(5)  # 4 x 5 + 3
    counts = estimate_batch_norm_statistics(model, dataset, batches=3)
    assert set(counts.values()) == {15 * 9}
    names = ["norm_1", "norm_2", "norm_3"]
    _assert_statistics_close(_moving(model, names),
                             _numpy_population_statistics(x[:15], _plain_stack(model, 3)))
    estimate_batch_norm_statistics(model, dataset.map(lambda inputs, _: inputs))  # all, x only
    _assert_statistics_close(_moving(model, names),
                             _numpy_population_statistics(x, _plain_stack(model, 3)))


@pytest.mark.parametrize("merged_samples", [512, 2])
def test_estimate_skips_padded_steps(merged_samples, rng, monkeypatch):
    monkeypatch.setattr(ind_rnn.batch_norm, "MAX_MERGED_SAMPLES", merged_samples)
    lengths = np.array([9, 4, 7, 2, 9, 6])
    mask = np.arange(9)[None, :] < lengths[:, None]
    x = (rng.randn(6, 9, 2) + 0.3).astype("float32")
    x[~mask] = 0.0
    inputs = keras.Input((9, 2))
    values = keras.layers.Masking()(inputs)
    layers = []
    for index in range(2):
        layers.append((IndRNN(5, recurrent_max_abs=1.5, return_sequences=True),
                       SequenceBatchNormalization(name=f"bn_{index}")))
        values = layers[-1][1](layers[-1][0](values))
    model = keras.Model(inputs, values)
    _randomize(model, rng)
    counts = estimate_batch_norm_statistics(model, tf.data.Dataset.from_tensor_slices(x).batch(2))
    assert counts == {"bn_0": lengths.sum(), "bn_1": lengths.sum()}
    stack = [([w.numpy() for w in rnn.cell.weights], 1.5, norm.gamma.numpy(), norm.beta.numpy())
             for rnn, norm in layers]
    _assert_statistics_close(_moving(model, ["bn_0", "bn_1"]),
                             _numpy_population_statistics(x, stack, mask))


def test_estimate_of_keras_batch_norm_in_a_dense_model(rng):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="dense"),
                              keras.layers.BatchNormalization(name="bn"),
                              keras.layers.Dropout(0.5), keras.layers.Dense(2, name="out"),
                              keras.layers.BatchNormalization(name="bn_out")])
    _randomize(model, rng)
    x = rng.randn(30, 4).astype("float32")
    assert estimate_batch_norm_statistics(model, x) == {"bn": 30, "bn_out": 30}
    kernel, bias = model.get_layer("dense").get_weights()
    hidden = x.astype(np.float64) @ kernel + bias
    mean, variance = hidden.mean(0), hidden.var(0)
    bn = model.get_layer("bn")
    normalized = (hidden - mean) / np.sqrt(variance + EPSILON) * bn.gamma.numpy() + bn.beta.numpy()
    kernel, bias = model.get_layer("out").get_weights()
    out = normalized @ kernel + bias  # dropout off, as at inference
    _assert_statistics_close(_moving(model, ["bn", "bn_out"]),
                             [(mean, variance), (out.mean(0), out.var(0))])


def test_estimate_changes_nothing_but_the_moving_statistics(rng):
    model = _classifier(rng)
    frozen = model.get_layer("norm_2")
    frozen.trainable = False
    before = {w.path: w.numpy().copy() for w in model.weights}
    counts = estimate_batch_norm_statistics(model, rng.randn(8, 9, 2).astype("float32"))
    assert set(counts) == {"norm_1", "norm_3"}  # a frozen batch norm is left as it is
    for weight in model.weights:
        changed = not np.array_equal(before[weight.path], weight.numpy())
        statistic = weight.path.endswith(("moving_mean", "moving_variance", "moving_weight"))
        expected = statistic and "norm_2" not in weight.path
        assert changed == expected, weight.path
    # The layers work normally afterwards (the wrapped calls are gone).
    assert "call" not in vars(model.get_layer("norm_1"))


def test_inference_after_estimate_equals_batch_statistics_of_the_same_data(rng):
    """Inference with the estimate = training-mode BN on the whole data as one batch."""
    model = build_sequence_classifier(9, 2, 3, model="residual", num_layers=5, units=6)
    x = (rng.randn(16, 9, 2) * 2.0).astype("float32")
    estimate_batch_norm_statistics(model, tf.data.Dataset.from_tensor_slices(x).batch(4))
    np.testing.assert_allclose(model(x, training=False).numpy(),
                               model(x, training=True).numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("call, error, words", [
    (lambda m: estimate_batch_norm_statistics("model", np.zeros((2, 9, 2))), TypeError,
     "`model`"),
    (lambda m: estimate_batch_norm_statistics(m, [np.zeros((2, 9, 2))]), TypeError, "`data`"),
    (lambda m: estimate_batch_norm_statistics(m, np.zeros((0, 9, 2))), ValueError, "`data`"),
    (lambda m: estimate_batch_norm_statistics(m, np.zeros((2, 9, 2)), batches=0), ValueError,
     "`batches`"),
    (lambda m: estimate_batch_norm_statistics(m, np.zeros((2, 9, 2)), batches=1.5), TypeError,
     "`batches`"),
    (lambda m: estimate_batch_norm_statistics(
        m, tf.data.Dataset.from_tensors(np.zeros((2, 9, 2))).repeat()), ValueError,
     "infinite"),
    (lambda m: estimate_batch_norm_statistics(
        m, tf.data.Dataset.from_tensors(np.zeros((2, 9, 2))).take(0)), ValueError, "`data`"),
    (lambda m: estimate_batch_norm_statistics(
        build_sequence_classifier(9, 2, 3, num_layers=2, units=4, batch_norm=False),
        np.zeros((2, 9, 2))), ValueError, "BatchNormalization"),
    (lambda m: BatchNormStatistics(np.zeros((2, 9, 2)), batches=-1), ValueError, "`batches`"),
    (lambda m: BatchNormStatistics({"x": 1}), TypeError, "`data`"),
])
def test_bad_arguments_name_the_argument(call, error, words, rng):
    with pytest.raises(error, match=words):
        call(_classifier(rng, layers=2))


# ---------------------------------------------------------------- the callback

class _Snapshots(keras.callbacks.Callback):
    """Weights and moving statistics as each evaluation begins (after BatchNormStatistics)."""

    def __init__(self):
        super().__init__()
        self.taken = []

    def on_test_begin(self, logs=None):
        self.taken.append((_plain_stack(self.model, 2),
                           _moving(self.model, ["norm_1", "norm_2"])))


def test_callback_sets_exact_statistics_before_every_validation(rng):
    x = (rng.randn(48, 9, 2) + 0.5).astype("float32")
    y = rng.randint(0, 3, 48)
    model = _classifier(rng, layers=2)
    model.compile(keras.optimizers.Adam(1e-2),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    statistics, snapshots = BatchNormStatistics(x[:24]), _Snapshots()
    model.fit(x, y, batch_size=8, epochs=2, validation_data=(x[24:], y[24:]), verbose=0,
              callbacks=[statistics, snapshots])
    assert statistics.calls == 3  # two validations and the end of training
    assert statistics.counts == {"norm_1": 24 * 9, "norm_2": 24 * 9}
    assert len(snapshots.taken) == 2
    for stack, moving in snapshots.taken:
        _assert_statistics_close(moving, _numpy_population_statistics(x[:24], stack))
    _assert_statistics_close(_moving(model, ["norm_1", "norm_2"]),  # at the end of training
                             _numpy_population_statistics(x[:24], _plain_stack(model, 2)))
    model.evaluate(x, y, verbose=0, callbacks=[statistics])
    assert statistics.calls == 4


def test_sequence_batch_norm_debiased_moving_averages_match_numpy(rng):
    """After n batches: sum_i (1 - m) m^(n-i) s_i / (1 - m^n), no trace of the start values."""
    norm = SequenceBatchNormalization(momentum=0.8)
    batches = [(rng.randn(3, 5, 4) * scale + shift).astype("float32")
               for scale, shift in ((1e-3, 0.0), (2e-3, 1e-3), (3e-3, -1e-3))]
    for batch in batches:
        norm(batch, training=True)
    weights = np.array([0.2 * 0.8 ** 2, 0.2 * 0.8, 0.2]) / (1 - 0.8 ** 3)
    means = [b.reshape(-1, 4).mean(0) for b in batches]
    variances = [b.reshape(-1, 4).var(0) for b in batches]
    np.testing.assert_allclose(norm.moving_mean.numpy(), np.tensordot(weights, means, 1),
                               rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(norm.moving_variance.numpy(),
                               np.tensordot(weights, variances, 1), rtol=1e-4)
    np.testing.assert_allclose(norm.moving_weight.numpy(), 1 - 0.8 ** 3, rtol=1e-6)


def test_sequence_batch_norm_training_output_and_gradients_match_numpy(rng):
    """Training mode is plain batch norm over batch and time (unchanged by the debiasing)."""
    x = (rng.randn(3, 6, 4) * 0.01 + 0.3).astype("float32")
    upstream = rng.randn(3, 6, 4)
    norm = SequenceBatchNormalization()
    norm.build(x.shape)
    gamma, beta = rng.uniform(0.5, 1.5, 4), rng.uniform(-0.5, 0.5, 4)
    norm.gamma.assign(gamma.astype("float32"))
    norm.beta.assign(beta.astype("float32"))
    inputs = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        loss = tf.reduce_sum(norm(inputs, training=True) * upstream)
    grad_x, grad_gamma, grad_beta = tape.gradient(loss, [inputs, norm.gamma, norm.beta])
    # NumPy: y = gamma * xhat + beta, xhat = (x - mu) / sqrt(var + eps), over N = 18 values.
    values = x.reshape(-1, 4).astype(np.float64)
    g = upstream.reshape(-1, 4)
    mean, variance = values.mean(0), values.var(0)
    inv = 1.0 / np.sqrt(variance + EPSILON)
    xhat = (values - mean) * inv
    np.testing.assert_allclose(norm(inputs, training=True).numpy().reshape(-1, 4),
                               gamma * xhat + beta, rtol=1e-4, atol=1e-4)
    dxhat = g * gamma
    expected_dx = inv * (dxhat - dxhat.mean(0) - xhat * (dxhat * xhat).mean(0))
    np.testing.assert_allclose(grad_x.numpy().reshape(-1, 4), expected_dx, rtol=1e-3,
                               atol=1e-3)
    np.testing.assert_allclose(grad_gamma.numpy(), (g * xhat).sum(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(grad_beta.numpy(), g.sum(0), rtol=1e-5, atol=1e-5)


def test_sequence_batch_norm_loads_variables_saved_without_moving_weight(rng):
    norm = SequenceBatchNormalization()
    norm.build((None, 5, 3))
    old = {str(i): rng.randn(3).astype("float32") for i in range(4)}  # gamma, beta, mean, var
    norm.load_own_variables(old)
    for variable, key in zip((norm.gamma, norm.beta, norm.moving_mean, norm.moving_variance),
                             "0123"):
        np.testing.assert_array_equal(variable.numpy(), old[key])
    assert norm.moving_weight.numpy() == 1.0  # warmed up: a next batch does not replace them


def test_new_options_round_trip(tmp_path, rng):
    model = build_sequence_classifier(9, 2, 3, model="residual", num_layers=3, units=4)
    model.batch_norm_statistics = 64
    norm = SequenceBatchNormalization(momentum=0.7)
    assert SequenceBatchNormalization.from_config(norm.get_config()).momentum == 0.7
    x = rng.randn(5, 9, 2).astype("float32")
    model(x, training=True)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, BatchNormModel) and loaded.batch_norm_statistics == 64
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), rtol=1e-6, atol=1e-6)
    assert ([w.numpy().tolist() for w in loaded.non_trainable_weights]
            == [w.numpy().tolist() for w in model.non_trainable_weights])
    with pytest.raises(ValueError, match="`batch_norm_statistics`"):
        BatchNormModel(model.inputs, model.outputs, batch_norm_statistics=-1)
    with pytest.raises(ValueError, match="`momentum`"):
        SequenceBatchNormalization(momentum=1.0)


def _compiled(model):
    model.compile(keras.optimizers.Adam(1e-2),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def test_model_fit_re_estimates_from_the_training_part_of_arrays(rng):
    x = (rng.randn(48, 9, 2) + 0.5).astype("float32")
    y = rng.randint(0, 3, 48)
    model = _compiled(_classifier(rng, layers=2))
    snapshots = _Snapshots()
    model.fit(x, y, batch_size=8, epochs=2, validation_split=0.25, verbose=0,
              callbacks=[snapshots])
    train = x[:36]  # Keras validates on the last quarter; 36 < 500: all training rows
    assert len(snapshots.taken) == 2
    for stack, moving in snapshots.taken:  # before each validation
        _assert_statistics_close(moving, _numpy_population_statistics(train, stack))
    _assert_statistics_close(_moving(model, ["norm_1", "norm_2"]),  # at the end
                             _numpy_population_statistics(train, _plain_stack(model, 2)))


def test_model_fit_re_estimates_from_the_first_dataset_batches(rng):
    x = (rng.randn(40, 9, 2) + 0.5).astype("float32")
    y = rng.randint(0, 3, 40)
    model = _compiled(_classifier(rng, layers=2))
    model.batch_norm_statistics = 16  # two batches of 8
    model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(8), epochs=1, verbose=0)
    _assert_statistics_close(_moving(model, ["norm_1", "norm_2"]),
                             _numpy_population_statistics(x[:16], _plain_stack(model, 2)))


def test_model_fit_keeps_the_users_callback_or_the_moving_averages(rng):
    x = (rng.randn(32, 9, 2) + 0.5).astype("float32")
    y = rng.randint(0, 3, 32)
    model = _compiled(_classifier(rng, layers=2))
    statistics = BatchNormStatistics(x[:8])
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[statistics])
    assert statistics.calls == 1  # one callback, the user's
    _assert_statistics_close(_moving(model, ["norm_1", "norm_2"]),
                             _numpy_population_statistics(x[:8], _plain_stack(model, 2)))
    model.batch_norm_statistics = 0  # off: the moving averages of the last batches
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    exact = _numpy_population_statistics(x, _plain_stack(model, 2))
    assert not np.allclose(model.get_layer("norm_2").moving_mean.numpy(), exact[1][0],
                           rtol=1e-3, atol=1e-4)
    with pytest.warns(UserWarning, match="moving averages"):
        model.batch_norm_statistics = 8
        model.fit((batch for batch in [(x[:8], y[:8])]), epochs=1, verbose=0)


@pytest.mark.parametrize("module", [ind_rnn.batch_norm, ind_rnn.batch_norm_model,
                                    ind_rnn.sequence_batch_norm])
def test_docstring_examples_run(module):
    failures, _ = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert failures == 0


# ---------------------------------------------------------------- after plain fit

def _digit_sequences():
    """sklearn's 8x8 digits as 64-step pixel sequences in [-1, 1]: train / held-out."""
    digits = sklearn_datasets.load_digits()
    x = (digits.data / 8.0 - 1.0).astype("float32")[:, :, None]
    y = digits.target.astype("int32")
    return (x[:1400], y[:1400]), (x[1400:], y[1400:])


def _accuracy(logits, labels):
    return float(np.mean(np.argmax(np.asarray(logits), -1) == labels))


def _batch_statistics_accuracy(model, x, y, batch_size):
    """Accuracy with each batch normalized by its own statistics (training=True)."""
    norms = ind_rnn.batch_norm.batch_norm_layers(model)
    saved = [w.numpy() for layer in norms for w in layer.non_trainable_weights]
    logits = np.concatenate([model(x[i:i + batch_size], training=True).numpy()
                             for i in range(0, len(x), batch_size)])
    for variable, value in zip([w for layer in norms for w in layer.non_trainable_weights],
                               saved):
        variable.assign(value)  # training=True moved the averages: put them back
    return _accuracy(logits, y)


@pytest.mark.parametrize("kind, num_layers, epochs, options", [
    ("plain", 6, 4, {}),
    ("residual", 5, 2, {}),
    ("dense", 4, 2, {"growth_rate": 8, "num_blocks": 2}),
])
def test_evaluate_after_plain_fit_matches_batch_statistics(kind, num_layers, epochs, options):
    (x, y), (x_test, y_test) = _digit_sequences()
    model = build_sequence_classifier(64, 1, 10, model=kind, num_layers=num_layers, units=32,
                                      **options)
    model.compile(keras.optimizers.Adam(1e-3, global_clipnorm=5.0),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x, y, batch_size=32, epochs=epochs, verbose=0)
    batch_statistics = _batch_statistics_accuracy(model, x_test, y_test, 32)
    inference = model.evaluate(x_test, y_test, batch_size=128, verbose=0)[1]
    predicted = _accuracy(model.predict(x_test, batch_size=128, verbose=0), y_test)
    print(f"{kind}: evaluate {inference:.3f}, batch statistics {batch_statistics:.3f}")
    assert batch_statistics > 0.5  # it learned something
    assert abs(inference - batch_statistics) <= 0.05
    assert predicted == pytest.approx(inference, abs=1e-6)
