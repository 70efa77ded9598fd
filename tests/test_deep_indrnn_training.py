"""A 21-layer residual IndRNN trains: digits as 64-step pixel sequences, T=1000 adding.

Short runs (ten steps, eager, batch 16-32): they show no NaN, no
divergence, the loss going down, and gradients of sane size at every layer.
"""
import keras
import numpy as np
import pytest
import tensorflow as tf

from ind_rnn import IndRNN, ResidualIndRNNBlock, build_sequence_classifier

sklearn_datasets = pytest.importorskip("sklearn.datasets")


def _ind_rnns_in_call_order(model):
    found = []
    for layer in model.layers:
        if isinstance(layer, ResidualIndRNNBlock):
            found += [sub for sub in layer.residual_layers if isinstance(sub, IndRNN)]
        elif isinstance(layer, IndRNN):
            found.append(layer)
    return found


def _input_kernel_gradient_norms(model, gradients):
    by_weight = {id(weight): gradient for weight, gradient in
                 zip(model.trainable_weights, gradients)}
    return np.array([float(tf.norm(by_weight[id(layer.cell.input_kernel)]))
                     for layer in _ind_rnns_in_call_order(model)])


def _train(model, loss_fn, batches, steps, learning_rate):
    """Adam with global-norm clipping 5 (as the original script), eager.

    Returns the losses and, per step, the input-kernel gradient norm of
    every IndRNN layer (first to last).
    """
    optimizer = keras.optimizers.Adam(learning_rate, global_clipnorm=5.0)
    losses, norms = [], []
    for step in range(steps):
        x, y = batches[step % len(batches)]
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        gradients = tape.gradient(loss, model.trainable_weights)
        assert all(np.all(np.isfinite(g.numpy())) for g in gradients), f"step {step}"
        losses.append(float(loss))
        norms.append(_input_kernel_gradient_norms(model, gradients))
        optimizer.apply_gradients(zip(gradients, model.trainable_weights))
    return np.array(losses), np.array(norms)


def _mean_loss(model, loss_fn, batches):
    return np.mean([float(loss_fn(y, model(x, training=True))) for x, y in batches])


def _check_gradient_norms(norms):
    """No layer's gradient vanishes or explodes, first and last layer alike."""
    assert norms.shape[1] == 21
    assert np.all(norms > 1e-4) and np.all(norms < 1e4), norms
    ratio = norms[:, 0] / norms[:, -1]  # first IndRNN layer vs last, at every step
    assert np.all(ratio > 1e-2) and np.all(ratio < 1e2), ratio


def _digit_batches(batch_size, count):
    digits = sklearn_datasets.load_digits()
    pixels = (digits.data / 8.0 - 1.0).astype("float32")  # [0, 16] -> [-1, 1]
    sequences = pixels.reshape(-1, 64, 1)  # 8x8 images as 64-step pixel sequences
    return [(sequences[i * batch_size:(i + 1) * batch_size],
             digits.target[i * batch_size:(i + 1) * batch_size]) for i in range(count)]


@pytest.mark.slow
def test_21_layer_residual_indrnn_trains_on_digit_sequences():
    model = build_sequence_classifier(64, 1, 10, model="residual", num_layers=21)
    assert len(_ind_rnns_in_call_order(model)) == 21
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    batches = _digit_batches(batch_size=32, count=3)
    before = _mean_loss(model, loss_fn, batches)
    losses, norms = _train(model, loss_fn, batches, steps=10, learning_rate=2e-4)
    after = _mean_loss(model, loss_fn, batches)
    assert np.all(np.isfinite(losses)) and np.isfinite(after)
    assert max(losses) < 2 * before, losses  # no divergence on the way
    assert after < 0.6 * before and after < np.log(10), (before, after, losses)
    _check_gradient_norms(norms)


def _adding_problem(batch_size, steps, rng):
    """REFERENCE §2: channel 0 uniform [0, 1), channel 1 marks one step in
    each half; the target is the sum of the two marked values."""
    values = rng.rand(batch_size, steps).astype("float32")
    first = rng.randint(0, steps // 2, batch_size)
    second = rng.randint(steps // 2, steps, batch_size)
    markers = np.zeros((batch_size, steps), "float32")
    rows = np.arange(batch_size)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    targets = values[rows, first] + values[rows, second]
    return np.stack([values, markers], axis=-1), targets[:, None]


@pytest.mark.slow
def test_21_layer_residual_indrnn_trains_on_adding_problem_of_1000_steps(rng):
    steps = 1000
    model = build_sequence_classifier(steps, 2, 1, model="residual", num_layers=21, units=32)
    assert model.get_layer("ind_rnn_input").recurrent_max_abs == pytest.approx(2 ** (1 / steps))
    loss_fn = keras.losses.MeanSquaredError()
    batches = [_adding_problem(16, steps, rng) for _ in range(3)]
    before = _mean_loss(model, loss_fn, batches)
    losses, norms = _train(model, loss_fn, batches, steps=10, learning_rate=1e-3)
    after = _mean_loss(model, loss_fn, batches)
    assert np.all(np.isfinite(losses)) and np.isfinite(after)
    assert max(losses) < 2 * before, losses
    assert after < 0.5 * before, (before, after, losses)
    _check_gradient_norms(norms)
