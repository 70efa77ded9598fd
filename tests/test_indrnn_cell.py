"""IndRNNCell: the TF1 original's golden cases, maths, bounds, config, errors."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import ind_rnn
from ind_rnn import IndRNNCell
from tests import indrnn_numpy_reference as reference


def _golden_cell(recurrent_init, **kwargs):
    cell = IndRNNCell(4, recurrent_kernel_initializer=keras.initializers.Constant(recurrent_init),
                      input_kernel_initializer="ones", activation="linear", **kwargs)
    output, new_state = cell(tf.constant([[1.0, 0.0, 0.0, 0.0]]),
                             [tf.constant([[2.0, 2.0, 2.0, 2.0]])])
    return output.numpy(), new_state[0].numpy()


def test_golden_case_of_the_original():
    output, state = _golden_cell([-3.0, -2.0, 1.0, 3.0])
    np.testing.assert_allclose(output, [[-5.0, -3.0, 3.0, 7.0]])
    np.testing.assert_allclose(state, output)


def test_golden_case_with_bounds_of_the_original():
    output, _ = _golden_cell([-5.0, -2.0, 0.1, 5.0], recurrent_min_abs=1, recurrent_max_abs=3)
    np.testing.assert_allclose(output, [[-5.0, -3.0, 3.0, 7.0]])


def test_import_path_of_the_original_file():
    from ind_rnn.ind_rnn_cell import IndRNNCell as original_path_cell
    assert original_path_cell is ind_rnn.IndRNNCell


def test_tf1_positional_signature_and_defaults():
    cell = IndRNNCell(3, 0.5, 2.0, "zeros", "ones", "tanh", None, "my_cell")
    assert (cell.num_units, cell.recurrent_min_abs, cell.recurrent_max_abs) == (3, 0.5, 2.0)
    assert cell.activation is keras.activations.tanh and cell.name == "my_cell"
    default = IndRNNCell(3)
    assert default.activation is keras.activations.relu  # None means ReLU
    assert default.recurrent_max_abs is None and default.recurrent_min_abs == 0
    default.build((None, 5))
    assert [w.name for w in default.weights] == ["input_kernel", "recurrent_kernel", "bias"]
    assert [tuple(w.shape) for w in default.weights] == [(5, 3), (3,), (3,)]
    np.testing.assert_array_equal(default.recurrent_kernel.numpy(), np.ones(3))  # constant 1.0
    np.testing.assert_array_equal(default.bias.numpy(), np.zeros(3))


def test_default_input_kernel_is_normal_with_stddev_0_001():
    cell = IndRNNCell(256)
    cell.build((None, 64))
    kernel = cell.input_kernel.numpy()
    assert abs(kernel.mean()) < 1e-4 and 0.0009 < kernel.std() < 0.0011


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_cell_in_keras_rnn_matches_numpy(activation, rng):
    x = rng.randn(3, 9, 2).astype("float32")
    layer = keras.layers.RNN(IndRNNCell(5, 0.1, 1.2, activation=activation,
                                        recurrent_kernel_initializer=keras.initializers.RandomUniform(-1.5, 1.5),
                                        input_kernel_initializer=keras.initializers.RandomNormal(0, 0.5)),
                             return_sequences=True)
    outputs = layer(x).numpy()
    kernel, recurrent, bias = layer.get_weights()
    states, _ = reference.forward(x, kernel, recurrent, bias, np.zeros((3, 5)), activation, 0.1, 1.2)
    np.testing.assert_allclose(outputs, states, rtol=1e-5, atol=1e-6)


def test_bounds_hold_and_kernel_keeps_training(rng):
    """The bound is applied at every forward pass, not frozen at build time."""
    max_abs, min_abs = 1.05, 0.2
    model = keras.Sequential([
        keras.Input((20, 1)),
        keras.layers.RNN(IndRNNCell(8, min_abs, max_abs,
                                    recurrent_kernel_initializer=keras.initializers.RandomUniform(-1, 1))),
        keras.layers.Dense(1)])
    cell = model.layers[0].cell
    before = cell.recurrent_kernel.numpy().copy()
    model.compile(keras.optimizers.Adam(0.05), "mse")
    x, y = rng.rand(32, 20, 1).astype("float32"), rng.rand(32, 1).astype("float32") * 5
    model.fit(x, y, epochs=5, verbose=0)
    after = cell.recurrent_kernel.numpy()
    assert np.abs(after - before).max() > 1e-3, "the recurrent kernel did not train"
    used = cell.effective_recurrent_weight().numpy()
    assert np.all(np.abs(used) <= max_abs + 1e-7)
    assert np.all((np.abs(used) >= min_abs - 1e-7) | (used == 0))
    # The forward pass uses the bounded weight: compare with NumPy on the trained weights.
    kernel, recurrent, bias = model.layers[0].get_weights()
    states, _ = reference.forward(x[:4], kernel, recurrent, bias, np.zeros((4, 8)),
                                  "relu", min_abs, max_abs)
    np.testing.assert_allclose(model.layers[0](x[:4]).numpy(), states[:, -1], rtol=1e-5, atol=1e-6)


def test_bounds_let_zero_stay_zero():
    weight = ind_rnn.effective_recurrent_weight(tf.constant([0.0, 0.01, -0.01, 5.0, -5.0]), 0.5, 2.0)
    np.testing.assert_allclose(weight.numpy(), [0.0, 0.5, -0.5, 2.0, -2.0])


def test_get_config_round_trip_keeps_initializer_objects():
    cell = IndRNNCell(7, 0.1, 1.5, keras.initializers.RandomUniform(-0.3, 0.9, seed=3),
                      keras.initializers.Orthogonal(gain=2.0), "tanh",
                      input_kernel_regularizer=keras.regularizers.L2(0.01), dropout=0.25)
    clone = IndRNNCell.from_config(cell.get_config())
    assert clone.get_config() == cell.get_config()
    assert isinstance(clone.recurrent_kernel_initializer, keras.initializers.RandomUniform)
    assert clone.recurrent_kernel_initializer.maxval == 0.9
    assert clone.input_kernel_initializer.gain == 2.0
    assert clone.dropout == 0.25 and clone.activation is keras.activations.tanh


@pytest.mark.parametrize("kwargs, error, words", [
    ({"num_units": 0}, ValueError, "num_units"),
    ({"num_units": -3}, ValueError, "num_units"),
    ({"num_units": 2.5}, TypeError, "num_units"),
    ({"num_units": True}, TypeError, "num_units"),
    ({"num_units": 4, "recurrent_min_abs": -1}, ValueError, "recurrent_min_abs"),
    ({"num_units": 4, "recurrent_max_abs": -0.5}, ValueError, "recurrent_max_abs"),
    ({"num_units": 4, "recurrent_max_abs": "big"}, TypeError, "recurrent_max_abs"),
    ({"num_units": 4, "recurrent_min_abs": 2, "recurrent_max_abs": 1}, ValueError,
     "recurrent_min_abs"),
    ({"num_units": 4, "activation": "no_such_activation"}, ValueError, "activation"),
    ({"num_units": 4, "activation": 3}, TypeError, "activation"),
    ({"num_units": 4, "dropout": 1.0}, ValueError, "dropout"),
])
def test_bad_constructor_arguments_name_the_argument(kwargs, error, words):
    with pytest.raises(error, match=words):
        IndRNNCell(**kwargs)


def test_bad_input_shapes_name_the_argument():
    with pytest.raises(ValueError, match="rank 2"):
        IndRNNCell(3).build((None, 4, 5))
    with pytest.raises(ValueError, match="known last"):
        IndRNNCell(3).build((None, None))
