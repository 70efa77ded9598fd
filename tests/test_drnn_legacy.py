"""The TF1-named API: dRNN, multi_dRNN_with_dilations, _rnn_reformat and
drnn_classification, against plain-loop references and hand computations."""
import logging

import keras
import numpy as np
import pytest
import tensorflow as tf

from dilated_rnn import BasicLSTMCell, BasicRNNCell, GRUCell
from dilated_rnn import _contruct_cells, _rnn_reformat, dRNN
from dilated_rnn import drnn_classification, multi_dRNN_with_dilations
from dilated_rnn import classification_models, drnn
from tests import drnn_reference as reference

DEMO_DILATIONS = [2 ** i for i in range(9)]


def _steps(rng, n_steps, batch=2, dims=2):
    return [tf.constant(rng.normal(size=(batch, dims)), tf.float32)
            for _ in range(n_steps)]


def test_modules_named_as_the_original():
    assert drnn.dRNN is dRNN
    assert drnn.multi_dRNN_with_dilations is multi_dRNN_with_dilations
    assert classification_models._contruct_cells is _contruct_cells
    assert classification_models.drnn_classification is drnn_classification
    assert classification_models._rnn_reformat is _rnn_reformat


@pytest.mark.parametrize("cell_cls", [BasicRNNCell, BasicLSTMCell, GRUCell,
                                      keras.layers.LSTMCell])
def test_drnn_on_a_list_matches_the_plain_loop(cell_cls, rng):
    steps = _steps(rng, 7)
    cell = cell_cls(3)
    outputs = dRNN(cell, steps, rate=3)
    assert isinstance(outputs, list) and len(outputs) == 7
    expected = reference.dilated_loop(
        reference.reference_step(cell), tf.stack(steps, 1), 3,
        reference.zero_state(cell, 2, tf.float32))
    np.testing.assert_allclose(np.stack(outputs, 1), expected.numpy(),
                               atol=1e-5)


def test_drnn_on_a_tensor_returns_a_tensor(rng):
    x = tf.constant(rng.normal(size=(2, 5, 1)), tf.float32)
    cell = GRUCell(4)
    outputs = dRNN(cell, x, rate=2)
    assert outputs.shape == (2, 5, 4)
    as_list = dRNN(cell, [x[:, t] for t in range(5)], rate=2)  # same weights
    np.testing.assert_allclose(outputs.numpy(), np.stack(as_list, 1),
                               atol=1e-6)


def test_drnn_does_not_touch_the_callers_list(rng):
    steps = _steps(rng, 5)
    before = list(steps)
    dRNN(BasicRNNCell(2), steps, rate=2)  # 5 % 2 != 0: the original padded
    assert len(steps) == 5 and all(a is b for a, b in zip(steps, before))


@pytest.mark.parametrize("rate", [0, -1, 1.5, True, "2", 5, 6])
def test_drnn_refuses_bad_rates(rate, rng):
    with pytest.raises(ValueError, match="`rate`") as error:
        dRNN(BasicRNNCell(2), _steps(rng, 5), rate=rate)
    assert "The 'rate' variable needs to be adjusted." in str(error.value)


def test_drnn_logs_instead_of_printing(rng, caplog, capsys):
    with caplog.at_level(logging.INFO, logger="dilated_rnn"):
        dRNN(BasicRNNCell(2), _steps(rng, 5), rate=2, scope="layer_a")
    text = caplog.text
    assert "Building layer: layer_a, input length: 5, dilation rate: 2" in text
    assert "1 time points need to be padded" in text
    assert "Input length for sub-RNN: 3" in text
    assert capsys.readouterr().out == ""


def test_drnn_refuses_other_inputs():
    with pytest.raises(ValueError, match="`inputs`"):
        dRNN(BasicRNNCell(2), tf.zeros((3, 4)), rate=1)
    with pytest.raises(ValueError, match="`inputs`"):
        dRNN(BasicRNNCell(2), [], rate=1)


def test_multi_drnn_matches_the_plain_loop_and_names_layers_uniquely(rng):
    steps = _steps(rng, 9)
    cells = _contruct_cells([3, 4, 2], "LSTM")
    symbolic = [keras.Input((2,), name=f"step_{t}") for t in range(9)]
    model_out = multi_dRNN_with_dilations(cells, symbolic, [2, 2, 4])
    model = keras.Model(symbolic, model_out[-1])
    names = [layer.name for layer in model.layers if "dRNN" in layer.name]
    assert names == ["multi_dRNN_dilation_2", "multi_dRNN_dilation_2_1",
                     "multi_dRNN_dilation_4"]
    paths = [w.path for w in model.weights]
    assert len(paths) == len(set(paths)) == 6
    expected = reference.stack_loop(cells, [2, 2, 4], tf.stack(steps, 1))
    np.testing.assert_allclose(model(steps).numpy(), expected[:, -1].numpy(),
                               atol=1e-5)


def test_multi_drnn_tensor_form_and_length_check(rng):
    x = tf.constant(rng.normal(size=(2, 6, 1)), tf.float32)
    cells = _contruct_cells([4, 4], "RNN")
    out = multi_dRNN_with_dilations(cells, x, [1, 2])
    expected = reference.stack_loop(cells, [1, 2], x)
    np.testing.assert_allclose(out.numpy(), expected.numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="`dilations`"):
        multi_dRNN_with_dilations(cells, x, [1])


def test_rnn_reformat(rng):
    x = rng.normal(size=(4, 3, 2)).astype("float32")
    steps = _rnn_reformat(x, 2, 3)
    assert len(steps) == 3
    for t, step in enumerate(steps):
        np.testing.assert_array_equal(np.asarray(step), x[:, t, :])


@pytest.mark.parametrize("cell_type,params", [
    ("RNN", 7210), ("LSTM", 28210), ("GRU", 21210)])
def test_paper_parameter_counts(cell_type, params):
    inputs = keras.Input((784, 1))
    logits = drnn_classification(inputs, [20] * 9, DEMO_DILATIONS, 784, 10,
                                 cell_type=cell_type)
    assert keras.Model(inputs, logits).count_params() == params


def _top_layer_outputs(model, dilations, x):
    cells = [layer.cells[0] for layer in model.layers
             if layer.name.startswith("multi_dRNN")]
    return reference.stack_loop(cells, dilations, tf.constant(x))


@pytest.mark.parametrize("dilations", [[1, 2], [3, 6]])
def test_logits_fuse_the_last_bottom_dilation_outputs(dilations, rng):
    inputs = keras.Input((8, 2))
    logits = drnn_classification(inputs, [4, 5], dilations, 8, 3,
                                 input_dims=2, cell_type="GRU")
    model = keras.Model(inputs, logits)
    x = rng.normal(size=(2, 8, 2)).astype("float32")
    top = _top_layer_outputs(model, dilations, x).numpy()
    fused = np.concatenate([top[:, t] for t in range(8 - dilations[0], 8)], 1)
    kernel, bias = model.layers[-1].get_weights()
    assert kernel.shape == (5 * dilations[0], 3)
    np.testing.assert_allclose(model(x).numpy(), fused @ kernel + bias,
                               atol=1e-5)


def test_output_layer_starts_standard_normal():
    inputs = keras.Input((4, 1))
    model = keras.Model(inputs, drnn_classification(
        inputs, [100], [1], 4, 50))
    kernel, bias = model.layers[-1].get_weights()
    assert abs(kernel.std() - 1.0) < 0.05 and abs(kernel.mean()) < 0.05
    assert 0.6 < bias.std() < 1.4


def test_drnn_classification_trains_and_saves(tmp_path, rng):
    inputs = keras.Input((10, 1))
    model = keras.Model(inputs, drnn_classification(
        inputs, [6, 6], [1, 2], 10, 2, cell_type="LSTM"))
    model.compile(keras.optimizers.Adam(0.01),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = rng.normal(size=(32, 10, 1)).astype("float32")
    y = (x[:, 0, 0] > 0).astype("int32")
    history = model.fit(x, y, epochs=20, batch_size=32, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    path = str(tmp_path / "legacy.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_allclose(restored(x).numpy(), model(x).numpy(),
                               atol=1e-5)


def test_drnn_classification_on_an_eager_tensor(rng):
    x = rng.normal(size=(3, 6, 1)).astype("float32")
    assert drnn_classification(tf.constant(x), [3], [2], 6, 4).shape == (3, 4)


@pytest.mark.parametrize("kwargs,argument", [
    (dict(hidden_structs=[3, 3], dilations=[1]), "dilations"),
    (dict(hidden_structs=[3], dilations=[0]), "dilations"),
    (dict(hidden_structs=[3], dilations=[2.0]), "dilations"),
    (dict(hidden_structs=[3], dilations=[1], cell_type="Transformer"),
     "cell_type"),
    (dict(hidden_structs=[3], dilations=[8]), "rate"),
    (dict(hidden_structs=[3], dilations=[1], n_classes=0), "n_classes"),
    (dict(hidden_structs=[3], dilations=[1], n_steps=7), "x"),
    (dict(hidden_structs=[3], dilations=[1], input_dims=2), "x"),
])
def test_drnn_classification_bad_arguments(kwargs, argument):
    arguments = dict(x=keras.Input((8, 1)), n_steps=8, n_classes=2)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=f"`{argument}`"):
        drnn_classification(**arguments)
