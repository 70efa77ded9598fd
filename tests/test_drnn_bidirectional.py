"""DilatedRNN's `go_backwards` and `keras.layers.Bidirectional` around it:
outputs and gradients against the plain-loop reference run over reversed
sequences, Keras' own GRU(go_backwards=True) as the reference for the
semantics (reversed outputs, masks), saving and `fit`."""
import doctest

import keras
import numpy as np
import pytest
import tensorflow as tf

from dilated_rnn import BasicLSTMCell, BasicRNNCell, DilatedRNN, GRUCell
from dilated_rnn import layers as layers_module
from tests import drnn_reference as reference

CELLS = {"RNN": BasicRNNCell, "LSTM": BasicLSTMCell, "GRU": GRUCell}


def _randomise(layer, rng, scale=0.5):
    for weight in layer.weights:
        weight.assign(rng.normal(size=weight.shape) * scale)


def _backward_layer(cell_type, rng, inputs, **kwargs):
    layer = DilatedRNN(cells=[CELLS[cell_type](u, dtype="float64") for u in (3, 4)],
                       dilations=[1, 3], dtype="float64", go_backwards=True,
                       **kwargs)
    layer.build(inputs.shape)
    _randomise(layer, rng)
    return layer


def _reversed_reference(layer, inputs):
    """The plain loop over the time-reversed inputs, outputs in that order."""
    return reference.stack_loop(layer.cells, layer.dilations, inputs[:, ::-1])


@pytest.mark.parametrize("engine", ["native", "xla", "while"])
@pytest.mark.parametrize("cell_type", ["RNN", "LSTM", "GRU"])
def test_go_backwards_matches_the_loop_over_reversed_inputs(cell_type, engine,
                                                            rng):
    inputs = tf.constant(rng.normal(size=(3, 11, 2)))
    layer = _backward_layer(cell_type, rng, inputs, return_sequences=True,
                            implementation=engine)
    cotangent = tf.constant(rng.normal(size=(3, 11, 4)))
    weights = layer.trainable_weights

    def outputs_and_grads(fn):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            outputs = fn(inputs)
            loss = tf.reduce_sum(outputs * cotangent)
        return [outputs] + tape.gradient(loss, [inputs] + weights)

    got = outputs_and_grads(layer)
    expected = outputs_and_grads(lambda x: _reversed_reference(layer, x))
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g.numpy(), e.numpy(), atol=1e-10, rtol=1e-8)
    # Without return_sequences: the last step processed, the first in time.
    last = DilatedRNN(cells=layer.cells, dilations=layer.dilations,
                      dtype="float64", go_backwards=True,
                      implementation=engine)(inputs)
    np.testing.assert_allclose(last.numpy(), expected[0].numpy()[:, -1],
                               atol=1e-10)


@pytest.mark.parametrize("return_sequences", [True, False])
def test_keras_gru_is_the_reference_for_the_semantics(return_sequences, rng):
    """One layer of Keras' GRUCell at dilation 1 is Keras' GRU: the same
    reversed outputs and the same last output, with a mask of right-padded
    sequences (zero outputs at masked steps, as Bidirectional asks of it)."""
    inputs = rng.normal(size=(4, 9, 2)).astype("float32")
    mask = np.arange(9)[None, :] < np.array([9, 5, 1, 7])[:, None]
    ours = DilatedRNN(cells=[keras.layers.GRUCell(5)], dilations=[1],
                      go_backwards=True, return_sequences=return_sequences)
    keras_gru = keras.layers.GRU(5, go_backwards=True,
                                 return_sequences=return_sequences,
                                 zero_output_for_mask=True)
    ours.build(inputs.shape)
    keras_gru.build(inputs.shape)
    _randomise(ours, rng)
    keras_gru.set_weights(ours.get_weights())
    for m in (None, tf.constant(mask)):
        np.testing.assert_allclose(ours(inputs, mask=m).numpy(),
                                   keras_gru(inputs, mask=m).numpy(),
                                   atol=1e-5)
        assert (ours.compute_mask(inputs, m) is None) == (
            keras_gru.compute_mask(inputs, m) is None)


@pytest.mark.parametrize("return_sequences", [True, False])
@pytest.mark.parametrize("cell_type", ["LSTM", "GRU"])
def test_bidirectional_with_masks_matches_per_sequence_reference(
        cell_type, return_sequences, rng):
    lengths = [8, 3, 6]
    inputs_np = rng.normal(size=(3, 8, 2))
    mask = np.arange(8)[None, :] < np.array(lengths)[:, None]
    inputs_np[~mask] = 99.0  # junk that must not leak
    inputs = tf.constant(inputs_np)
    both = keras.layers.Bidirectional(DilatedRNN(
        [3, 4], [1, 3], cell_type=cell_type, dtype="float64",
        return_sequences=return_sequences), dtype="float64")
    both.build(inputs.shape)
    _randomise(both, rng)
    forward, backward = both.forward_layer, both.backward_layer
    weights = both.trainable_weights
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        got = both(inputs, mask=tf.constant(mask))
        loss = tf.reduce_sum(got ** 2)
    got_grads = tape.gradient(loss, [inputs] + weights)

    with tf.GradientTape() as tape:
        tape.watch(inputs)
        loss, expected = 0.0, []
        for b, n in enumerate(lengths):
            alone = inputs[b:b + 1, :n]
            ahead = reference.stack_loop(forward.cells, [1, 3], alone)[0]
            behind = reference.stack_loop(backward.cells, [1, 3],
                                          alone[:, ::-1])[0][::-1]
            if return_sequences:
                row = tf.concat([ahead, behind], -1)
            else:  # each direction's last step processed
                row = tf.concat([ahead[-1], behind[0]], -1)
            expected.append(row)
            loss += tf.reduce_sum(row ** 2)
    expected_grads = tape.gradient(loss, [inputs] + weights)
    for b, n in enumerate(lengths):
        if return_sequences:
            np.testing.assert_allclose(got[b, :n].numpy(), expected[b].numpy(),
                                       atol=1e-10)
            np.testing.assert_array_equal(got[b, n:].numpy(), 0.0)
        else:
            np.testing.assert_allclose(got[b].numpy(), expected[b].numpy(),
                                       atol=1e-10)
    for g, e in zip(got_grads, expected_grads):
        np.testing.assert_allclose(g.numpy(), e.numpy(), atol=1e-10)
    np.testing.assert_array_equal(got_grads[0].numpy()[~mask], 0.0)


def test_bidirectional_saves_loads_and_fits(tmp_path, rng):
    inputs = keras.Input((None, 1))
    features = keras.layers.Bidirectional(
        DilatedRNN([8, 8], [1, 4], cell_type="GRU"), merge_mode="sum")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1)(features))
    model.compile(keras.optimizers.Adam(0.02), "mse")
    x = rng.normal(size=(32, 12, 1)).astype("float32")
    y = x[:, 0, :] - x[:, -1, :]  # the first step is what the backward layer ends on
    history = model.fit(x, y, epochs=25, batch_size=32, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    path = str(tmp_path / "bidirectional.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    backward = restored.layers[1].backward_layer
    assert isinstance(backward, DilatedRNN) and backward.go_backwards
    np.testing.assert_allclose(restored.predict(x, verbose=0),
                               model.predict(x, verbose=0), atol=1e-6)


def test_bidirectional_in_mixed_precision(rng):
    data = rng.normal(size=(4, 10, 2)).astype("float32")

    def bidirectional(dtype):
        return keras.layers.Bidirectional(DilatedRNN(
            [6, 6], [1, 2], cell_type="LSTM", return_sequences=True,
            dtype=dtype), dtype=dtype)

    full = bidirectional("float32")
    expected = full(data).numpy()
    half = bidirectional("mixed_float16")
    half.build(data.shape)
    half.set_weights(full.get_weights())
    got = half(data)
    assert got.dtype == tf.float16
    np.testing.assert_allclose(got.numpy().astype("float32"), expected,
                               atol=3e-3)


def test_config_keeps_go_backwards():
    layer = DilatedRNN([3], [2], cell_type="LSTM", go_backwards=True)
    assert layer.get_config()["go_backwards"] is True
    assert DilatedRNN.from_config(layer.get_config()).go_backwards


def test_time_major_last_output_goes_backwards_too(rng):
    data = rng.normal(size=(2, 7, 3)).astype("float32")
    batch_major = DilatedRNN([4], [2], go_backwards=True)
    expected = batch_major(data).numpy()
    time_major = DilatedRNN(cells=batch_major.cells, dilations=[2],
                            go_backwards=True, time_major=True)
    np.testing.assert_allclose(time_major(np.swapaxes(data, 0, 1)).numpy(),
                               expected, atol=1e-6)


def test_what_bidirectional_cannot_do_is_refused():
    with pytest.raises(ValueError, match="time_major=False"):
        DilatedRNN([3], [1], go_backwards=True, time_major=True,
                   return_sequences=True)
    layer = DilatedRNN([3], [1])
    with pytest.raises(ValueError, match="`initial_state`.*zero state"):
        layer(np.zeros((2, 4, 1), "float32"),
              initial_state=[np.zeros((2, 3), "float32")])


def test_docstring_examples_run():
    failures, tried = doctest.testmod(
        layers_module, extraglobs={"np": np, "keras": keras, "tf": tf},
        optionflags=doctest.NORMALIZE_WHITESPACE)
    assert tried >= 4 and failures == 0
