"""Deep IndRNN: masked batch norm over time, residual and dense blocks, model builders.

References: Keras' own BatchNormalization (on the valid steps alone), and a
NumPy forward pass built from `tests/indrnn_numpy_reference.py` (it shares
no code with the package).
"""
import doctest

import keras
import numpy as np
import pytest
import tensorflow as tf

from ind_rnn import (DenseIndRNNBlock, IndRNN, ResidualIndRNNBlock, SequenceBatchNormalization,
                     build_dense_indrnn, build_plain_indrnn, build_residual_indrnn,
                     build_sequence_classifier, recommended_recurrent_initializers)
import ind_rnn.deep
import ind_rnn.initialization
import ind_rnn.last_step
import ind_rnn.models
import ind_rnn.stacks
from ind_rnn.models import LastStep
from ind_rnn.stacks import split_layers
from tests import indrnn_numpy_reference as reference

EPSILON = 1e-3  # Keras' BatchNormalization default, also ours


def _padding_mask():
    mask = np.ones((4, 9), bool)
    mask[1, 6:] = False        # right padding
    mask[2, :4] = False        # left padding
    mask[3, [1, 4, 5]] = False  # holes
    return mask


def _padded_batch(rng, features=5):
    """A batch whose padded steps hold huge values, which must not matter."""
    mask = _padding_mask()
    x = rng.randn(*mask.shape, features).astype("float32") * 2.0 + 0.5
    x[~mask] = 1e3
    return x, mask


def _set_random_affine(norm, rng):
    features = norm.gamma.shape[0]
    norm.gamma.assign(rng.uniform(0.5, 1.5, features).astype("float32"))
    norm.beta.assign(rng.uniform(-0.5, 0.5, features).astype("float32"))


def _numpy_batch_norm(x, gamma, beta, mask=None, mean=None, variance=None):
    """BN over batch and time; statistics from the valid steps unless given."""
    valid = x.reshape(-1, x.shape[-1]) if mask is None else x[mask]
    mean = valid.mean(0) if mean is None else mean
    variance = valid.var(0) if variance is None else variance
    return (x - mean) / np.sqrt(variance + EPSILON) * gamma + beta


def _randomize(layer, rng, scale=0.5):
    """Random trainable weights (recurrent weights in (-1, 1), gammas around 1)."""
    for weight in layer.trainable_weights:
        shape = tuple(weight.shape)
        if "gamma" in weight.path:
            value = rng.uniform(0.5, 1.5, shape)
        elif "recurrent_kernel" in weight.path:
            value = rng.uniform(-1.0, 1.0, shape)
        else:
            value = rng.randn(*shape) * scale
        weight.assign(value.astype("float32"))


def _sublayer(layer, name):
    return next(sub for sub in layer._flatten_layers() if sub.name == name)  # noqa: SLF001


def _numpy_ind_rnn(x, layer, mask=None):
    kernel, recurrent, bias = [w.numpy().astype(np.float64) for w in layer.cell.weights]
    h0 = np.zeros((x.shape[0], kernel.shape[1]))
    states, _ = reference.forward(x, kernel, recurrent, bias, h0, "relu", 0.0,
                                  layer.cell.recurrent_max_abs, mask)
    return states


def _numpy_norm(x, layer, training, mask=None):
    gamma, beta = layer.gamma.numpy(), layer.beta.numpy()
    if training:
        return _numpy_batch_norm(x, gamma, beta, mask)
    return _numpy_batch_norm(x, gamma, beta, mean=layer.moving_mean.numpy(),
                             variance=layer.moving_variance.numpy())


# ---------------------------------------------------------------- batch norm over time

def test_masked_batch_norm_equals_keras_batch_norm_on_the_valid_steps(rng):
    x, mask = _padded_batch(rng)
    ours = SequenceBatchNormalization()
    theirs = keras.layers.BatchNormalization()  # sees only the valid steps, as [1, N, F]
    ours.build(x.shape)
    theirs.build((1, int(mask.sum()), x.shape[-1]))
    _set_random_affine(ours, rng)
    theirs.set_weights(ours.get_weights()[:4])  # ours also has moving_weight
    upstream = rng.randn(*x.shape).astype("float32")

    x_ours, x_theirs = tf.constant(x), tf.constant(x[mask][None])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x_ours, x_theirs])
        out_ours = ours(x_ours, training=True, mask=mask)
        out_theirs = theirs(x_theirs, training=True)
        loss_ours = tf.reduce_sum(tf.where(mask[:, :, None], out_ours * upstream, 0.0))
        loss_theirs = tf.reduce_sum(out_theirs * upstream[mask][None])

    np.testing.assert_allclose(out_ours.numpy()[mask], out_theirs.numpy()[0],
                               rtol=1e-5, atol=1e-5)
    grad_x_ours = tape.gradient(loss_ours, x_ours).numpy()
    np.testing.assert_allclose(grad_x_ours[mask], tape.gradient(loss_theirs, x_theirs)[0],
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(grad_x_ours[~mask], 0.0)  # padding gets no gradient
    for got, want in zip(tape.gradient(loss_ours, ours.trainable_weights),
                         tape.gradient(loss_theirs, theirs.trainable_weights)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    # And both agree with the formula: statistics of the valid steps only. The
    # moving averages are debiased: after one batch, that batch's statistics.
    np.testing.assert_allclose(ours.moving_mean.numpy(), x[mask].mean(0), rtol=1e-4)
    np.testing.assert_allclose(ours.moving_variance.numpy(), x[mask].var(0), rtol=1e-4)
    np.testing.assert_allclose(
        out_ours.numpy()[mask],
        _numpy_batch_norm(x, ours.gamma.numpy(), ours.beta.numpy(), mask)[mask],
        rtol=1e-4, atol=1e-4)


def test_batch_norm_without_mask_is_over_batch_and_time(rng):
    x = rng.randn(3, 6, 4).astype("float32") + 2.0
    norm = SequenceBatchNormalization()
    full = norm(x, training=True, mask=np.ones((3, 6), bool)).numpy()
    np.testing.assert_allclose(norm(x, training=True).numpy(), full, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(full, _numpy_batch_norm(x, 1.0, 0.0), rtol=1e-4, atol=1e-4)


def test_batch_norm_inference_uses_moving_averages_whatever_the_mask(rng):
    x, mask = _padded_batch(rng)
    norm = SequenceBatchNormalization(momentum=0.5)
    norm(x, training=True, mask=mask)
    expected = _numpy_norm(x, norm, training=False)
    np.testing.assert_allclose(norm(x, mask=mask).numpy(), expected, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(norm(x).numpy(), expected, rtol=1e-4, atol=1e-3)


def test_batch_with_no_valid_step_keeps_moving_averages(rng):
    x = rng.randn(2, 5, 3).astype("float32")
    norm = SequenceBatchNormalization(momentum=0.5)
    norm(x, training=True)
    before = [w.numpy().copy() for w in norm.non_trainable_weights]
    outputs = norm(x, training=True, mask=np.zeros((2, 5), bool))
    assert np.all(np.isfinite(outputs.numpy()))
    for got, want in zip(norm.non_trainable_weights, before):
        np.testing.assert_array_equal(got.numpy(), want)


def test_mask_from_masking_layer_reaches_batch_norm_and_is_passed_on(rng):
    x, mask = _padded_batch(rng, features=3)
    x[~mask] = 0.0
    model = keras.Sequential([keras.Input((None, 3)), keras.layers.Masking(0.0),
                              SequenceBatchNormalization(), IndRNN(4, return_sequences=True)])
    norm, ind_rnn = model.layers[1], model.layers[2]
    direct = ind_rnn(norm(x, training=True, mask=mask), mask=mask)
    np.testing.assert_allclose(model(x, training=True).numpy(), direct.numpy(),
                               rtol=1e-5, atol=1e-6)
    assert norm.compute_mask(x, tf.constant(mask)) is not None


def test_batch_norm_under_mixed_precision(rng):
    x, mask = _padded_batch(rng)
    expected = SequenceBatchNormalization()(x, training=True, mask=mask).numpy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    outputs = SequenceBatchNormalization()(x.astype("float16"), training=True, mask=mask)
    assert outputs.dtype == tf.float16
    np.testing.assert_allclose(outputs.numpy()[mask].astype("float32"), expected[mask],
                               rtol=1e-2, atol=1e-2)


# ---------------------------------------------------------------- residual block

@pytest.mark.parametrize("input_dim", [pytest.param(6, id="identity"),
                                       pytest.param(3, id="projection")])
@pytest.mark.parametrize("training", [True, False])
def test_residual_block_matches_numpy(input_dim, training, rng):
    x = rng.randn(3, 8, input_dim).astype("float32")
    block = ResidualIndRNNBlock(6, recurrent_max_abs=0.9)
    block.build(x.shape)
    _randomize(block, rng)
    norm_1, norm_2 = _sublayer(block, "norm_1"), _sublayer(block, "norm_2")
    hidden = _numpy_ind_rnn(_numpy_norm(x, norm_1, training), _sublayer(block, "ind_rnn_1"))
    branch = _numpy_ind_rnn(_numpy_norm(hidden, norm_2, training), _sublayer(block, "ind_rnn_2"))
    if input_dim == 6:
        assert block.projection is None
        shortcut = x
    else:
        shortcut = x @ block.projection.kernel.numpy()
    np.testing.assert_allclose(block(x, training=training).numpy(), shortcut + branch,
                               rtol=1e-4, atol=1e-4)


def test_residual_block_without_batch_norm_matches_numpy(rng):
    x = rng.randn(2, 7, 4).astype("float32")
    block = ResidualIndRNNBlock(4, recurrent_max_abs=1.0, batch_norm=False)
    block.build(x.shape)
    _randomize(block, rng)
    assert not any(isinstance(layer, keras.layers.BatchNormalization)
                   for layer in block._flatten_layers())  # noqa: SLF001
    branch = _numpy_ind_rnn(_numpy_ind_rnn(x, _sublayer(block, "ind_rnn_1")),
                            _sublayer(block, "ind_rnn_2"))
    np.testing.assert_allclose(block(x).numpy(), x + branch, rtol=1e-4, atol=1e-4)


def test_residual_block_ignores_padding_in_training(rng):
    valid_steps = 6
    x = rng.randn(3, 10, 4).astype("float32")
    x[:, valid_steps:] = 50.0  # right padding with large values
    mask = np.arange(10)[None, :].repeat(3, 0) < valid_steps
    block = ResidualIndRNNBlock(4, recurrent_max_abs=1.0)
    block.build(x.shape)
    _randomize(block, rng)
    padded = block(x, training=True, mask=mask).numpy()
    alone = block(x[:, :valid_steps], training=True).numpy()
    np.testing.assert_allclose(padded[:, :valid_steps], alone, rtol=1e-4, atol=1e-4)
    assert block.compute_mask(x, tf.constant(mask)) is not None


def test_recurrent_initializers_of_the_block(rng):
    block = ResidualIndRNNBlock(
        64, recurrent_max_abs=1.05, recurrent_kernel_initializer=keras.initializers.Constant(0.3),
        last_recurrent_kernel_initializer=keras.initializers.Constant(0.99))
    block.build((None, None, 64))
    np.testing.assert_array_equal(_sublayer(block, "ind_rnn_1").cell.recurrent_kernel,
                                  np.float32(0.3))
    np.testing.assert_array_equal(_sublayer(block, "ind_rnn_2").cell.recurrent_kernel,
                                  np.float32(0.99))
    first = _sublayer(block, "ind_rnn_1").cell.input_kernel.numpy()
    second = _sublayer(block, "ind_rnn_2").cell.input_kernel.numpy()
    assert not np.allclose(first, second)  # each layer draws its own weights
    # The default input kernel: uniform, std sqrt(2 / (65 * fan_in)).
    assert abs(first.std() - np.sqrt(2 / (65 * 64))) < 0.1 * np.sqrt(2 / (65 * 64))


def test_seeded_initializer_gives_distinct_layers_and_reproducible_models():
    def input_kernels():
        model = build_sequence_classifier(
            10, 4, 2, model="residual", num_layers=5, units=4,
            input_kernel_initializer=keras.initializers.RandomNormal(seed=7))
        return [layer.cell.input_kernel.numpy() for layer in _ind_rnns(model)[1:]]

    first, second = input_kernels(), input_kernels()
    for got, want in zip(first, second):
        np.testing.assert_array_equal(got, want)  # the seed makes the model reproducible
    flattened = [kernel.ravel().tolist() for kernel in first]
    assert len({tuple(kernel) for kernel in flattened}) == 4  # yet no two layers alike


def test_residual_block_dropout_is_one_mask_per_sequence():
    block = ResidualIndRNNBlock(32, recurrent_max_abs=1.0, dropout=0.5, seed=3,
                                batch_norm=False, recurrent_kernel_initializer="zeros",
                                input_kernel_initializer="identity")
    x = np.ones((2, 6, 32), "float32")
    # u == 0, identity kernels, constant inputs: the branch is x * m1 * m2,
    # with m1, m2 the two dropout masks (scaled by 2): constant over time.
    branch = block(x, training=True).numpy() - x
    np.testing.assert_allclose(branch, np.broadcast_to(branch[:, :1], branch.shape))
    assert set(np.unique(branch)) <= {0.0, 4.0} and 0 < (branch == 0).mean() < 1
    np.testing.assert_allclose(block(x, training=False).numpy() - x, 1.0)


# ---------------------------------------------------------------- dense block

def _numpy_dense_block(x, block, training):
    features = x
    for index in range(1, block.num_layers + 1):
        new = features
        if block.bottleneck:
            new = _numpy_norm(new, _sublayer(block, f"layer_{index}_bottleneck_norm"), training)
            new = _numpy_ind_rnn(new, _sublayer(block, f"layer_{index}_bottleneck_ind_rnn"))
        new = _numpy_norm(new, _sublayer(block, f"layer_{index}_norm"), training)
        new = _numpy_ind_rnn(new, _sublayer(block, f"layer_{index}_ind_rnn"))
        features = np.concatenate([features, new], axis=-1)
    return features


@pytest.mark.parametrize("bottleneck", [0, 2])
def test_dense_block_matches_numpy(bottleneck, rng):
    x = rng.randn(3, 7, 4).astype("float32")
    block = DenseIndRNNBlock(3, growth_rate=2, bottleneck=bottleneck, recurrent_max_abs=0.9)
    block.build(x.shape)
    _randomize(block, rng)
    outputs = block(x, training=True).numpy()
    assert outputs.shape == (3, 7, 4 + 3 * 2)
    np.testing.assert_array_equal(outputs[..., :4], x)  # the input is passed on unchanged
    np.testing.assert_allclose(outputs, _numpy_dense_block(x, block, True), rtol=1e-4, atol=1e-4)
    ind_rnns = [sub for group in block.dense_layers for sub in group if isinstance(sub, IndRNN)]
    assert [layer.units for layer in ind_rnns] == ([4, 2] * 3 if bottleneck else [2] * 3)


# ---------------------------------------------------------------- model builders

def test_recommended_initializers_follow_the_original_script():
    hidden, last, bound = recommended_recurrent_initializers(784)
    assert bound == 2 ** (1 / 784)
    assert (hidden.minval, hidden.maxval) == (0.0, bound)
    assert (last.minval, last.maxval) == (0.5 ** (1 / 784), bound)
    _, last, bound = recommended_recurrent_initializers(None, recurrent_max_abs=1.25)
    assert (last.minval, last.maxval, bound) == (0.8, 1.25, 1.25)
    _, last, _ = recommended_recurrent_initializers(10, recurrent_max_abs=0.5)
    assert (last.minval, last.maxval) == (0.5, 0.5)  # never above the bound


def _ind_rnns(model):
    """The model's IndRNN layers in call order, those inside blocks included."""
    found = []
    for layer in model.layers:
        if isinstance(layer, ResidualIndRNNBlock):
            found += [sub for sub in layer.residual_layers if isinstance(sub, IndRNN)]
        elif isinstance(layer, DenseIndRNNBlock):
            found += [sub for group in layer.dense_layers for sub in group
                      if isinstance(sub, IndRNN)]
        elif isinstance(layer, IndRNN):
            found.append(layer)
    return found


def test_plain_classifier_is_the_original_sequential_mnist_stack():
    steps = 784
    model = build_sequence_classifier(steps, 1, 10, model="plain", num_layers=6, units=128)
    ind_rnns = _ind_rnns(model)
    assert len(ind_rnns) == 6 and model.output_shape == (None, 10)
    kinds = [type(layer).__name__ for layer in model.layers[1:]]
    assert kinds == ["IndRNN", "SequenceBatchNormalization"] * 6 + ["LastStep", "Dense"]
    bound = 2 ** (1 / steps)
    for index, layer in enumerate(ind_rnns):
        assert layer.recurrent_max_abs == pytest.approx(bound)
        recurrent = layer.cell.recurrent_kernel.numpy()
        lowest = 0.5 ** (1 / steps) if index == 5 else 0.0
        assert recurrent.min() >= lowest and recurrent.max() <= bound
        kernel = layer.cell.input_kernel.numpy()
        assert np.abs(kernel).max() <= 0.001 and kernel.std() > 0.0003
    assert _ind_rnns(model)[0].cell.recurrent_kernel.numpy().min() < 0.5  # hidden: from 0


def test_plain_classifier_matches_numpy(rng):
    x = rng.randn(3, 7, 2).astype("float32")
    model = build_sequence_classifier(7, 2, 3, model="plain", num_layers=2, units=5)
    _randomize(model, rng)
    sequences = x
    for index in (1, 2):
        sequences = _numpy_ind_rnn(sequences, model.get_layer(f"ind_rnn_{index}"))
        sequences = _numpy_norm(sequences, model.get_layer(f"norm_{index}"), training=True)
    kernel, bias = model.get_layer("logits").get_weights()
    np.testing.assert_allclose(model(x, training=True).numpy(),
                               sequences[:, -1] @ kernel + bias, rtol=1e-4, atol=1e-4)


def test_residual_classifier_of_21_layers():
    steps = 64
    model = build_sequence_classifier(steps, 1, 10, model="residual", num_layers=21, units=32)
    ind_rnns = _ind_rnns(model)
    assert len(ind_rnns) == 21
    assert len([layer for layer in model.layers if isinstance(layer, ResidualIndRNNBlock)]) == 10
    bound = 2 ** (1 / steps)
    recurrent = [layer.cell.recurrent_kernel.numpy() for layer in ind_rnns]
    assert all(r.min() >= 0 and r.max() <= bound for r in recurrent)
    assert all(r.min() < 0.5 for r in recurrent[:-1])  # hidden layers: uniform(0, max)
    assert recurrent[-1].min() >= 0.5 ** (1 / steps)  # the last one near 1
    assert all(layer.recurrent_max_abs == pytest.approx(bound) for layer in ind_rnns)
    assert model(np.zeros((2, steps, 1), "float32")).shape == (2, 10)


def test_dense_model_widths_grow_and_transitions_shrink_them():
    model = build_dense_indrnn(16, 1, [2, 2], units=32, growth_rate=8, bottleneck=2)
    assert model.get_layer("dense_block_1").output.shape[-1] == 32 + 2 * 8
    assert model.get_layer("transition_1_ind_rnn").output.shape[-1] == 24
    assert model.output_shape == (None, 16, 24 + 2 * 8)
    ind_rnns = _ind_rnns(model)
    assert len(ind_rnns) == 1 + 2 * 2 * 2 + 1  # input, (bottleneck + growth) x 4, transition
    assert ind_rnns[-1].name == "layer_2_ind_rnn"
    assert ind_rnns[-1].cell.recurrent_kernel.numpy().min() >= 0.5 ** (1 / 16)


def test_dense_classifier_splits_num_layers_over_blocks():
    assert split_layers(8, 3) == [3, 3, 2] and split_layers(3, 3) == [1, 1, 1]
    model = build_sequence_classifier(12, 1, 4, model="dense", num_layers=5, units=16,
                                      growth_rate=4, num_blocks=2)
    blocks = [layer for layer in model.layers if isinstance(layer, DenseIndRNNBlock)]
    assert [block.num_layers for block in blocks] == [3, 2]
    assert all(block.growth_rate == 4 and block.bottleneck == 4 for block in blocks)


def test_residual_and_plain_backbones(rng):
    x = rng.randn(2, 10, 3).astype("float32")
    assert build_residual_indrnn(10, 3, num_blocks=2, units=8)(x).shape == (2, 10, 8)
    assert build_plain_indrnn(10, 3, num_layers=2, units=8)(x).shape == (2, 10, 8)


def test_unknown_length_needs_a_bound_and_runs_on_any_length(rng):
    with pytest.raises(ValueError, match="recurrent_max_abs.*time_steps"):
        build_sequence_classifier(None, 1, 3, model="residual", num_layers=3)
    model = build_sequence_classifier(None, 1, 3, model="residual", num_layers=3, units=8,
                                      recurrent_max_abs=1.0)
    for steps in (5, 17):
        assert model(rng.randn(2, steps, 1).astype("float32")).shape == (2, 3)


def test_last_step_of_masked_sequences():
    x = np.arange(24, dtype="float32").reshape(3, 4, 2)
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0]], bool)
    np.testing.assert_array_equal(LastStep()(x, mask=mask).numpy(),
                                  [x[0, 3], x[1, 1], x[2, 3]])
    np.testing.assert_array_equal(LastStep()(x).numpy(), x[:, -1])


def test_classifier_on_padded_batch_equals_unpadded(rng):
    model = build_sequence_classifier(None, 2, 3, model="residual", num_layers=3, units=6,
                                      recurrent_max_abs=1.0)
    _randomize(model, rng, scale=0.3)
    x = rng.randn(2, 5, 2).astype("float32")
    padded = np.concatenate([x, np.full((2, 3, 2), 7.0, "float32")], axis=1)

    def masked_model(padding_value):
        inputs = keras.Input((None, 2))
        return keras.Model(inputs, model(keras.layers.Masking(padding_value)(inputs)))

    for training in (True, False):
        np.testing.assert_allclose(masked_model(7.0)(padded, training=training).numpy(),
                                   model(x, training=training).numpy(), rtol=1e-4, atol=1e-4)
    # Unmasked, the padding changes the logits: the mask is what removes it.
    assert not np.allclose(masked_model(-99.0)(padded).numpy(), model(x).numpy(), atol=1e-2)


INTEGER_INPUT_LAYERS = {
    "residual-identity": lambda: ResidualIndRNNBlock(4, recurrent_max_abs=1.0),
    "residual-identity-no-bn": lambda: ResidualIndRNNBlock(4, recurrent_max_abs=1.0,
                                                           batch_norm=False),
    "residual-projection-no-bn": lambda: ResidualIndRNNBlock(6, recurrent_max_abs=1.0,
                                                             batch_norm=False),
    "dense": lambda: DenseIndRNNBlock(2, growth_rate=3, recurrent_max_abs=1.0),
    "dense-no-bn": lambda: DenseIndRNNBlock(2, growth_rate=3, bottleneck=0,
                                            recurrent_max_abs=1.0, batch_norm=False),
    "plain-classifier": lambda: build_sequence_classifier(7, 4, 3, num_layers=2, units=5),
    "residual-classifier": lambda: build_sequence_classifier(
        7, 4, 3, model="residual", num_layers=3, units=5, batch_norm=False),
    "dense-classifier": lambda: build_sequence_classifier(
        7, 4, 3, model="dense", num_layers=2, units=5, growth_rate=3),
}


@pytest.mark.parametrize("build", list(INTEGER_INPUT_LAYERS.values()),
                         ids=list(INTEGER_INPUT_LAYERS))
def test_integer_inputs_are_cast_to_the_compute_dtype(build, rng):
    """As Keras' own layers take them: int32 inputs give what their float32
    values give (the blocks' shortcut and concatenation included)."""
    layer = build()
    x = rng.randint(-2, 3, size=(2, 7, 4)).astype("int32")
    # Inference first: a training call moves the batch norms' moving averages.
    for training in (False, True):
        outputs = layer(x, training=training)
        assert outputs.dtype == tf.float32
        np.testing.assert_allclose(outputs.numpy(),
                                   layer(x.astype("float32"), training=training).numpy(),
                                   rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind, num_layers", [("residual", 3), ("dense", 2)])
def test_models_under_mixed_precision(kind, num_layers, rng):
    keras.mixed_precision.set_global_policy("mixed_float16")
    options = {"growth_rate": 4} if kind == "dense" else {}
    model = build_sequence_classifier(8, 3, 4, model=kind, num_layers=num_layers, units=6,
                                      dropout=0.1, **options)
    x = rng.randn(2, 8, 3).astype("float32")
    with tf.GradientTape() as tape:
        logits = model(x, training=True)
        loss = tf.reduce_sum(tf.cast(logits, "float32"))
    gradients = tape.gradient(loss, model.trainable_weights)
    assert logits.dtype == tf.float16
    assert all(weight.dtype == "float32" for weight in model.weights)
    assert all(np.all(np.isfinite(g.numpy())) for g in gradients)


@pytest.mark.parametrize("kind, num_layers", [("plain", 2), ("residual", 3), ("dense", 2)])
def test_models_save_and_load(kind, num_layers, tmp_path, rng):
    model = build_sequence_classifier(9, 2, 3, model=kind, num_layers=num_layers, units=6,
                                      dropout=0.2, seed=5)
    model(rng.randn(4, 9, 2).astype("float32"), training=True)  # move the moving averages
    path = str(tmp_path / f"{kind}.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    x = rng.randn(3, 9, 2).astype("float32")
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), rtol=1e-6, atol=1e-6)
    assert [w.path for w in loaded.weights] == [w.path for w in model.weights]


@pytest.mark.parametrize("layer", [
    SequenceBatchNormalization(momentum=0.9, epsilon=1e-2, center=False),
    ResidualIndRNNBlock(5, recurrent_max_abs=1.1, dropout=0.1, batch_norm=False, seed=2,
                        recurrent_kernel_initializer=keras.initializers.RandomUniform(0, 1.1),
                        last_recurrent_kernel_initializer=keras.initializers.Constant(0.95)),
    DenseIndRNNBlock(2, 3, bottleneck=0, recurrent_max_abs=1.1, dropout=0.1,
                     input_kernel_initializer="he_uniform"),
    LastStep(),
], ids=lambda layer: type(layer).__name__)
def test_layer_configs_round_trip(layer, tmp_path, rng):
    config = layer.get_config()
    assert type(layer).from_config(config).get_config() == config
    model = keras.Sequential([keras.Input((7, 4)), layer])
    path = str(tmp_path / "layer.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.layers[0]) is type(layer)
    x = rng.randn(2, 7, 4).astype("float32")
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("build, error, words", [
    (lambda: build_residual_indrnn(10, 1, num_blocks=0), ValueError, "num_blocks.*positive.*0"),
    (lambda: DenseIndRNNBlock(2, growth_rate=-1), ValueError, "growth_rate.*positive.*-1"),
    (lambda: DenseIndRNNBlock(0, growth_rate=4), ValueError, "num_layers.*positive"),
    (lambda: DenseIndRNNBlock(2, 4, bottleneck=-2), ValueError, "bottleneck.*>= 0.*-2"),
    (lambda: build_dense_indrnn(10, 1, [2, 0]), ValueError, "layers_per_block"),
    (lambda: build_dense_indrnn(10, 1, 3), TypeError, "layers_per_block"),
    (lambda: build_dense_indrnn(10, 1, [2], compression=0.0), ValueError, "compression.*0, 1"),
    (lambda: build_sequence_classifier(10, 1, 3, model="lstm"), ValueError, "model.*'lstm'"),
    (lambda: build_sequence_classifier(10, 1, 3, num_layers=0), ValueError, "num_layers"),
    (lambda: build_sequence_classifier(10, 1, 3, model="residual", num_layers=6),
     ValueError, "num_layers.*odd.*6"),
    (lambda: build_sequence_classifier(10, 1, 3, model="dense", num_layers=2, num_blocks=3),
     ValueError,
     "num_blocks.*<= num_layers=2"),
    (lambda: build_sequence_classifier(10, 1, 3, growth_rate=4), TypeError,
     "options.*growth_rate"),
    (lambda: build_sequence_classifier(10, 0, 3), ValueError, "input_dim.*0"),
    (lambda: build_sequence_classifier(0, 1, 3), ValueError, "time_steps.*0"),
    (lambda: build_sequence_classifier(10, 1, 3, dropout=1.0), ValueError, "dropout"),
    (lambda: build_sequence_classifier(10, 1, 3, batch_norm="yes"), TypeError, "batch_norm"),
    (lambda: build_sequence_classifier(10, 1, 3, recurrent_max_abs=0), ValueError,
     "recurrent_max_abs.*> 0"),
    (lambda: ResidualIndRNNBlock(0), ValueError, "units"),
    (lambda: ResidualIndRNNBlock(4, dropout=-0.1), ValueError, "dropout"),
    (lambda: SequenceBatchNormalization(axis=1), ValueError, "axis"),
    (lambda: SequenceBatchNormalization(renorm=True), ValueError, "renorm"),
    (lambda: SequenceBatchNormalization()(np.ones((2, 3), "float32")), ValueError, "rank 3"),
    (lambda: ResidualIndRNNBlock(4).build((None, 5, None)), ValueError, "known last"),
])
def test_bad_arguments_name_the_argument(build, error, words):
    with pytest.raises(error, match=words):
        build()


@pytest.mark.parametrize("module", [ind_rnn.deep, ind_rnn.models, ind_rnn.stacks,
                                    ind_rnn.initialization, ind_rnn.last_step],
                         ids=lambda m: m.__name__)
def test_docstring_examples_run(module):
    failures, tried = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert tried > 0 and failures == 0
