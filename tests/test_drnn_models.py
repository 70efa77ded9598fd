"""DilatedRNNClassifier (the Keras twin of drnn_classification) and the
mean recurrent length, on cases worked by hand."""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from dilated_rnn import DilatedRNNClassifier, drnn_classification
from dilated_rnn import last_valid_steps, mean_recurrent_length
from tests import drnn_reference as reference

DEMO_DILATIONS = [2 ** i for i in range(9)]


@pytest.mark.parametrize("cell_type,params", [
    ("RNN", 7210), ("LSTM", 28210), ("GRU", 21210)])
def test_paper_parameter_counts(cell_type, params):
    model = DilatedRNNClassifier([20] * 9, DEMO_DILATIONS, 10,
                                 cell_type=cell_type)
    model.build((None, 784, 1))
    assert model.count_params() == params


@pytest.mark.parametrize("dilations", [[1, 2], [3, 6]])
def test_same_numbers_as_drnn_classification(dilations, rng):
    inputs = keras.Input((9, 2))
    legacy = keras.Model(inputs, drnn_classification(
        inputs, [4, 5], dilations, 9, 3, input_dims=2, cell_type="LSTM"))
    model = DilatedRNNClassifier([4, 5], dilations, 3, cell_type="LSTM")
    model.build((None, 9, 2))
    model.set_weights(legacy.get_weights())
    x = rng.normal(size=(2, 9, 2)).astype("float32")
    np.testing.assert_allclose(model(x).numpy(), legacy(x).numpy(), atol=1e-5)


def test_masked_sequences_use_their_last_valid_steps(rng):
    model = DilatedRNNClassifier([4, 4], [2, 4], 3, cell_type="GRU")
    x = rng.normal(size=(2, 9, 1)).astype("float32")
    mask = np.ones((2, 9), bool)
    mask[1, 6:] = False  # second sequence: 6 steps, then padding
    with_padding = model(x, mask=tf.constant(mask)).numpy()
    alone = model(x[1:, :6]).numpy()
    np.testing.assert_allclose(with_padding[1], alone[0], atol=1e-5)
    np.testing.assert_allclose(with_padding[0], model(x[:1]).numpy()[0],
                               atol=1e-5)


def test_last_valid_steps_by_hand():
    # time-major [4 steps, 2 sequences, 1 unit], values 10 * t + b
    sequence = tf.constant([[[10.0 * t + b] for b in range(2)]
                            for t in range(4)])
    np.testing.assert_array_equal(last_valid_steps(sequence, None, 2),
                                  [[20, 30], [21, 31]])
    mask = tf.constant([[True, True], [True, False], [True, False],
                        [False, False]])
    np.testing.assert_array_equal(last_valid_steps(sequence, mask, 2),
                                  [[10, 20], [0, 1]])
    # A window longer than the sequence starts with zeros.
    np.testing.assert_array_equal(last_valid_steps(sequence, None, 5),
                                  [[0, 0, 10, 20, 30], [0, 1, 11, 21, 31]])


def test_trains_saves_and_loads(tmp_path, rng):
    model = DilatedRNNClassifier([6, 6], [1, 2], 2, cell_type="RNN")
    model.compile(keras.optimizers.Adam(0.01),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = rng.normal(size=(32, 10, 1)).astype("float32")
    y = (x[:, -1, 0] > 0).astype("int32")
    history = model.fit(x, y, epochs=10, batch_size=32, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    path = str(tmp_path / "classifier.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    assert isinstance(restored, DilatedRNNClassifier)
    assert restored.get_config() == model.get_config()
    np.testing.assert_allclose(restored(x).numpy(), model(x).numpy(),
                               atol=1e-5)


def test_classifier_top_layer_matches_the_reference(rng):
    model = DilatedRNNClassifier([3, 4], [1, 3], 2, cell_type="GRU")
    x = rng.normal(size=(2, 7, 1)).astype("float32")
    logits = model(x).numpy()
    top = reference.stack_loop(model.drnn.cells, [1, 3], tf.constant(x))
    kernel, bias = model.output_layer.get_weights()
    np.testing.assert_allclose(logits, top[:, -1].numpy() @ kernel + bias,
                               atol=1e-5)


def test_bad_classifier_arguments():
    with pytest.raises(ValueError, match="`n_classes`"):
        DilatedRNNClassifier([3], [1], 0)
    with pytest.raises(ValueError, match="`dilations`"):
        DilatedRNNClassifier([3], [1, 2], 2)


@pytest.mark.parametrize("dilations,period,expected", [
    # A plain RNN: span n takes n hops; the mean over 1..m is (m + 1) / 2.
    ([1], 4, 2.5),
    ([1], 1, 1.0),
    # 1, 2, 4: spans 1, 2, 3, 4 take 1, 1, 2 (2 + 1), 1 hops.
    ([1, 2, 4], None, 1.25),
    # 1, 3: spans 1, 2, 3 take 1, 2 (1 + 1), 1.
    ([3, 1], None, 4 / 3),
    # 1, 3, 4 over 6: 1, 2, 1, 1, 2 (4 + 1), 2 (3 + 3, not greedy 4 + 1 + 1).
    ([1, 3, 4], 6, 1.5),
    # 1, 2, 4, 8: spans 1..8 take 1, 1, 2, 1, 2, 2, 3, 1.
    ([1, 2, 4, 8], None, 13 / 8),
    # Equal dilations change nothing.
    ([1, 2, 2, 4], None, 1.25),
])
def test_mean_recurrent_length_by_hand(dilations, period, expected):
    assert mean_recurrent_length(dilations, period) == pytest.approx(expected)


def test_mean_recurrent_length_of_the_demo_stack():
    # 1..256, spans 1..256: the fewest powers of two that sum to n is the
    # number of one bits of n; their mean over 1..256 is 1025 / 256.
    expected = sum(bin(n).count("1") for n in range(1, 257)) / 256
    assert mean_recurrent_length(DEMO_DILATIONS) == pytest.approx(expected)
    assert expected == pytest.approx(1025 / 256)


def test_mean_recurrent_length_without_bottom_dilation_one_is_infinite():
    assert mean_recurrent_length([2, 4]) == math.inf  # span 1 unreachable
    assert mean_recurrent_length([3], period=6) == math.inf


@pytest.mark.parametrize("kwargs,argument", [
    (dict(dilations=[]), "dilations"), (dict(dilations=[0, 1]), "dilations"),
    (dict(dilations=[1], period=0), "period"),
    (dict(dilations=[1], period=2.5), "period"),
])
def test_mean_recurrent_length_bad_arguments(kwargs, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        mean_recurrent_length(**kwargs)
