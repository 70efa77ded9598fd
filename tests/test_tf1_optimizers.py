"""The examples' optimisers against TF's own TF1 optimisers (`tf.compat.v1.train`).

The references run in a `tf.Graph` with a `Session`: the optimiser the original
scripts ran, on the same start and the same gradients. Keras' defaults are not
TF1's (RMSprop's accumulators start at 0, TF1's at 1; Adam's epsilon is 1e-7,
TF1's 1e-8), so each check also confirms the reference tells them apart.
"""
import doctest
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import dilated_rnn
from examples import addition_rnn, copy_memory, permuted_mnist_drnn, sequential_mnist

v1 = tf.compat.v1
SHAPES = [(3, 4), (4,)]


def _gradients(steps, scale=1.0, seed=0):
    """Random gradients a step, each tensor at its own magnitude in 1e-6 .. 1 (x scale)."""
    rng = np.random.default_rng(seed)
    return [[(rng.standard_normal(shape) * scale * 10.0 ** rng.integers(-6, 1))
             .astype(np.float32) for shape in SHAPES] for _ in range(steps)]


def _start():
    rng = np.random.default_rng(1)
    return [rng.standard_normal(shape).astype(np.float32) for shape in SHAPES]


def _tf1_weights(make_optimizer, gradients, clip_norm=None):
    """The variables after TF1's optimiser applied `gradients`, step by step."""
    with tf.Graph().as_default():
        variables = [v1.Variable(value) for value in _start()]
        fed = [v1.placeholder(tf.float32, shape) for shape in SHAPES]
        global_step = v1.train.get_or_create_global_step()
        applied = fed
        if clip_norm:  # the sequential MNIST original's clipping
            applied, _ = tf.clip_by_global_norm(fed, clip_norm)
        train = make_optimizer(global_step).apply_gradients(
            zip(applied, variables), global_step=global_step)
        with v1.Session() as session:
            session.run(v1.global_variables_initializer())
            for step in gradients:
                session.run(train, dict(zip(fed, step)))
            return session.run(variables)


def _keras_weights(optimizer, gradients):
    variables = [keras.Variable(value) for value in _start()]
    for step in gradients:
        optimizer.apply_gradients(zip([tf.constant(g) for g in step], variables))
    return [variable.numpy() for variable in variables]


def _largest_difference(first, second):
    return max(float(np.abs(a - b).max()) for a, b in zip(first, second))


def _largest_move(weights):
    return max(float(np.abs(a - b).max()) for a, b in zip(weights, _start()))


@pytest.mark.parametrize("momentum,centered", [(0.0, False), (0.9, False), (0.0, True),
                                               (0.5, True)])
def test_tf1_rmsprop_is_tf1s_rmspropoptimizer(momentum, centered):
    gradients = _gradients(8)
    expected = _tf1_weights(lambda _: v1.train.RMSPropOptimizer(
        1e-2, 0.9, momentum=momentum, centered=centered), gradients)
    got = _keras_weights(dilated_rnn.TF1RMSprop(1e-2, momentum=momentum, centered=centered),
                         gradients)
    keras_default = _keras_weights(keras.optimizers.RMSprop(
        1e-2, momentum=momentum, centered=centered, epsilon=1e-10), gradients)
    assert _largest_difference(got, expected) < 1e-3 * _largest_move(expected)
    assert _largest_difference(keras_default, expected) > 0.5 * _largest_move(expected)


def test_addition_example_optimizer_is_the_originals_adam(monkeypatch):
    # A decay every 3 steps, so that 8 steps cross two of the staircase's stairs.
    monkeypatch.setattr(addition_rnn, "LEARNING_RATE_DECAY_STEPS", 3)
    gradients = _gradients(8, seed=2)
    expected = _tf1_weights(lambda step: v1.train.AdamOptimizer(
        v1.train.exponential_decay(0.1, step, 3, 0.1, staircase=True)), gradients)
    got = _keras_weights(addition_rnn.make_optimizer(0.1), gradients)
    keras_default = _keras_weights(keras.optimizers.Adam(
        keras.optimizers.schedules.ExponentialDecay(0.1, 3, 0.1, staircase=True)), gradients)
    assert _largest_difference(got, expected) < 1e-4 * _largest_move(expected)
    assert _largest_difference(keras_default, expected) > 1e-2 * _largest_move(expected)


def test_sequential_mnist_optimizer_is_the_originals_clipped_adam():
    gradients = _gradients(6, scale=40.0, seed=3)  # norms above 5: the clipping binds
    expected = _tf1_weights(lambda step: v1.train.AdamOptimizer(
        v1.train.exponential_decay(0.01, step, 600000, 0.1, staircase=True)),
        gradients, clip_norm=5.0)
    got = _keras_weights(sequential_mnist.make_optimizer(0.01, 5.0), gradients)
    assert _largest_difference(got, expected) < 1e-4 * _largest_move(expected)


@pytest.mark.parametrize("make", [
    lambda: permuted_mnist_drnn.make_optimizer(1e-3),
    lambda: copy_memory.make_optimizer(1e-3),
], ids=["permuted_mnist_drnn", "copy_memory"])
def test_drnn_examples_optimizer_is_the_demos_rmsprop(make):
    gradients = _gradients(8, seed=4)
    expected = _tf1_weights(lambda _: v1.train.RMSPropOptimizer(1e-3, 0.9), gradients)
    assert _largest_difference(_keras_weights(make(), gradients),
                               expected) < 1e-3 * _largest_move(expected)


def test_tf1_rmsprop_under_a_strategy_and_mixed_precision():
    gradients = _gradients(3, seed=5)
    expected = _tf1_weights(lambda _: v1.train.RMSPropOptimizer(1e-2, 0.9), gradients)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        variables = [keras.Variable(value) for value in _start()]
        optimizer = dilated_rnn.TF1RMSprop(1e-2)
    for step in gradients:  # as fit applies them: in the replica context
        strategy.run(lambda step=step: optimizer.apply_gradients(
            zip([tf.constant(g) for g in step], variables)))
    got = [variable.numpy() for variable in variables]
    assert _largest_difference(got, expected) < 1e-3 * _largest_move(expected)

    keras.mixed_precision.set_global_policy("mixed_float16")
    inputs = keras.Input((6, 1))
    outputs = keras.layers.Dense(2)(dilated_rnn.DilatedRNN([4], [2])(inputs))
    model = keras.Model(inputs, outputs)
    model.compile(dilated_rnn.TF1RMSprop(1e-3), "mse")
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    model.optimizer.build(model.trainable_variables)
    inner = model.optimizer.inner_optimizer
    assert all(np.all(velocity.numpy() == 1.0) for velocity in inner._velocities)
    model.fit(np.ones((4, 6, 1), np.float32), np.zeros((4, 2), np.float32), verbose=0)
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())


def test_tf1_rmsprop_saves_and_loads_with_the_model(tmp_path):
    inputs = keras.Input((6, 1))
    model = keras.Model(inputs, keras.layers.Dense(2)(dilated_rnn.DilatedRNN([4], [1])(inputs)))
    model.compile(dilated_rnn.TF1RMSprop(1e-3, momentum=0.5, centered=True), "mse")
    data = np.random.default_rng(0).standard_normal((8, 6, 1)).astype(np.float32)
    model.fit(data, data[:, :2, 0], epochs=2, verbose=0)
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert type(loaded.optimizer) is dilated_rnn.TF1RMSprop
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    for saved, restored in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(saved.numpy(), restored.numpy())
    config = json.loads(json.dumps(keras.optimizers.serialize(model.optimizer)))
    again = keras.optimizers.deserialize(config)
    assert type(again) is dilated_rnn.TF1RMSprop and again.epsilon == 1e-10


@pytest.mark.parametrize("arguments,words", [
    ({"rho": 1.5}, ["`rho`", "[0, 1)", "1.5"]),
    ({"rho": "0.9"}, ["`rho`", "a float", "'0.9'"]),
    ({"momentum": -0.1}, ["`momentum`", "a number >= 0", "-0.1"]),
    ({"epsilon": float("nan")}, ["`epsilon`", "nan"]),
    ({"centered": "yes"}, ["`centered`", "True or False", "'yes'"]),
])
def test_tf1_rmsprop_bad_arguments_name_the_argument(arguments, words):
    with pytest.raises((TypeError, ValueError)) as raised:
        dilated_rnn.TF1RMSprop(1e-3, **arguments)
    for word in words:
        assert word in str(raised.value)


def test_docstring_example_runs():
    from dilated_rnn import tf1_optimizers  # pylint: disable=import-outside-toplevel
    failures, tried = doctest.testmod(tf1_optimizers, optionflags=doctest.ELLIPSIS)
    assert tried > 0 and failures == 0
