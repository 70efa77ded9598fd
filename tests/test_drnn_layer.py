"""DilatedRNN against a plain-loop reference: outputs and gradients, every
cell type and loop engine, uneven lengths, masks, shapes, config, saving."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from dilated_rnn import BasicLSTMCell, BasicRNNCell, DilatedRNN, GRUCell
from dilated_rnn import dilation
from tests import drnn_reference as reference

ENGINES = ("auto", "native", "xla", "while", "unrolled", "cell")


def _randomise(layer, rng, scale=0.5):
    """Non-default weights, so that biases and every gate matter."""
    for weight in layer.weights:
        weight.assign(rng.normal(size=weight.shape) * scale)


def _layer(cells, dilations, rng, inputs, **kwargs):
    layer = DilatedRNN(cells=cells, dilations=dilations, dtype="float64",
                       **kwargs)
    layer.build(inputs.shape)
    _randomise(layer, rng)
    return layer


def _outputs_and_grads(fn, inputs, weights, cotangent):
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        outputs = fn(inputs)
        loss = tf.reduce_sum(outputs * cotangent)
    return [outputs] + tape.gradient(loss, [inputs] + list(weights))


def _assert_matches_reference(layer, inputs, rng, atol=1e-10, cotangent=None):
    """Outputs and gradients (of sum(outputs * cotangent), a random cotangent
    by default) against the plain-loop reference; returns ours."""
    if cotangent is None:
        expected_out = reference.stack_loop(layer.cells, layer.dilations,
                                            inputs)
        cotangent = tf.constant(rng.normal(size=expected_out.shape))
    weights = layer.trainable_weights
    got = _outputs_and_grads(layer, inputs, weights, cotangent)
    expected = _outputs_and_grads(
        lambda x: reference.stack_loop(layer.cells, layer.dilations, x),
        inputs, weights, cotangent)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g.numpy(), e.numpy(), atol=atol, rtol=1e-8)
    return got


def _cells(cell_type, units):
    if cell_type == "keras_lstm":  # a cell without a fused kernel
        return [keras.layers.LSTMCell(u, dtype="float64") for u in units]
    if cell_type == "IndRNN":
        ind_rnn = pytest.importorskip("ind_rnn")
        return [ind_rnn.IndRNNCell(u, dtype="float64") for u in units]
    classes = {"RNN": BasicRNNCell, "LSTM": BasicLSTMCell, "GRU": GRUCell}
    return [classes[cell_type](u, dtype="float64") for u in units]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("cell_type", ["RNN", "LSTM", "GRU", "keras_lstm",
                                       "IndRNN"])
def test_matches_plain_loop_for_every_cell_and_engine(cell_type, engine, rng):
    # 7 steps: neither dilation divides it, and the bottom dilation is 2.
    inputs = tf.constant(rng.normal(size=(3, 7, 2)))
    layer = _layer(_cells(cell_type, [4, 3]), [2, 3], rng, inputs,
                   return_sequences=True, implementation=engine)
    _assert_matches_reference(layer, inputs, rng)


@pytest.mark.parametrize("cell_type,engine", [
    (cell_type, engine) for cell_type in ("RNN", "LSTM", "GRU")
    for engine in ("auto", "native", "while", "cell")] + [("GRU", "xla")])
def test_graph_mode_with_unknown_shapes_matches_eager(cell_type, engine, rng):
    inputs = tf.constant(rng.normal(size=(3, 7, 2)))
    layer = _layer(_cells(cell_type, [4, 3]), [1, 3], rng, inputs,
                   return_sequences=True, implementation=engine)
    mask = tf.constant(rng.random((3, 7)) > 0.2)

    @tf.function(input_signature=[tf.TensorSpec([None, None, 2], tf.float64),
                                  tf.TensorSpec([None, None], tf.bool)])
    def graph(x, mask):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x, mask=mask) ** 2)
        return [loss] + tape.gradient(loss, [x] + layer.trainable_weights)

    with tf.GradientTape() as tape:
        tape.watch(inputs)
        loss = tf.reduce_sum(layer(inputs, mask=mask) ** 2)
    eager = [loss] + tape.gradient(loss, [inputs] + layer.trainable_weights)
    for g, e in zip(graph(inputs, mask), eager):
        np.testing.assert_allclose(g.numpy(), e.numpy(), atol=1e-10)


@pytest.mark.parametrize("steps,dilations", [
    (1, [1]), (3, [8]), (5, [2, 7, 1]), (12, [1, 2, 4]), (9, [3, 3]),
    (40, [1, 4, 16]),
])
@pytest.mark.parametrize("cell_type", ["RNN", "LSTM", "GRU"])
def test_matches_plain_loop_for_uneven_and_short_sequences(
        cell_type, steps, dilations, rng):
    # Covers T < rate (one padded dilated step), T == 1, equal dilations.
    inputs = tf.constant(rng.normal(size=(2, steps, 3)))
    layer = _layer(_cells(cell_type, [3] * len(dilations)), dilations, rng,
                   inputs, return_sequences=True)
    _assert_matches_reference(layer, inputs, rng)


def test_lstm_carries_the_cell_state_along_each_phase(rng):
    # Guards the bug of dropping c: a loop that restarts c from zero at
    # every step must disagree, the full (c, h) loop must agree.
    inputs = tf.constant(rng.normal(size=(2, 9, 2)))
    layer = _layer(_cells("LSTM", [4]), [2], rng, inputs, return_sequences=True)
    cell = layer.cells[0]
    full = reference.dilated_loop(reference.basic_lstm_step(cell), inputs, 2,
                                  reference.zero_state(cell, 2, tf.float64))

    def forgetful(x, state):
        output, (_, h) = reference.basic_lstm_step(cell)(x, state)
        return output, (tf.zeros_like(h), h)

    dropped = reference.dilated_loop(forgetful, inputs, 2,
                                     reference.zero_state(cell, 2, tf.float64))
    got = layer(inputs).numpy()
    np.testing.assert_allclose(got, full.numpy(), atol=1e-10)
    assert np.abs(got - dropped.numpy()).max() > 1e-3


def test_last_output_is_the_top_layers_last_step(rng):
    inputs = tf.constant(rng.normal(size=(3, 10, 2)))
    layer = _layer(_cells("GRU", [4, 5]), [1, 4], rng, inputs)
    full = reference.stack_loop(layer.cells, layer.dilations, inputs)
    np.testing.assert_allclose(layer(inputs).numpy(), full[:, -1].numpy(),
                               atol=1e-10)


@pytest.mark.parametrize("padding", ["post", "pre"])
@pytest.mark.parametrize("cell_type", ["RNN", "LSTM", "GRU", "keras_lstm"])
def test_padding_never_changes_valid_outputs(cell_type, padding, rng):
    lengths = [9, 4, 1, 6]
    steps = max(lengths)
    sequences = [rng.normal(size=(n, 2)) for n in lengths]
    padded = np.zeros((len(lengths), steps, 2))
    mask = np.zeros((len(lengths), steps), bool)
    for b, seq in enumerate(sequences):
        where = slice(0, len(seq)) if padding == "post" else slice(
            steps - len(seq), steps)
        padded[b, where], mask[b, where] = seq, True
    padded[~mask] = 99.0  # junk that must not leak
    inputs = tf.constant(padded)
    layer = _layer(_cells(cell_type, [3, 4]), [1, 3], rng, inputs,
                   return_sequences=True)
    sequence_out = layer(inputs, mask=tf.constant(mask)).numpy()
    last_layer = DilatedRNN(cells=layer.cells, dilations=[1, 3],
                            dtype="float64")
    last_out = last_layer(inputs, mask=tf.constant(mask)).numpy()
    for b, seq in enumerate(sequences):
        alone = reference.stack_loop(layer.cells, [1, 3],
                                     tf.constant(seq[None])).numpy()[0]
        np.testing.assert_allclose(sequence_out[b][mask[b]], alone, atol=1e-10)
        np.testing.assert_array_equal(sequence_out[b][~mask[b]], 0.0)
        np.testing.assert_allclose(last_out[b], alone[-1], atol=1e-10)


@pytest.mark.parametrize("engine", ["native", "xla", "while", "unrolled"])
def test_masked_gradients_match_per_sequence_reference(engine, rng):
    lengths = [7, 3]
    inputs_np = rng.normal(size=(2, 7, 2))
    mask = np.arange(7)[None, :] < np.array(lengths)[:, None]
    inputs = tf.constant(inputs_np)
    layer = _layer(_cells("LSTM", [3, 3]), [2, 3], rng, inputs,
                   implementation=engine)
    weights = layer.trainable_weights
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        loss = tf.reduce_sum(layer(inputs, mask=tf.constant(mask)) ** 2)
    got = tape.gradient(loss, [inputs] + weights)
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        loss = sum(tf.reduce_sum(reference.stack_loop(
            layer.cells, [2, 3], inputs[b:b + 1, :n])[:, -1] ** 2)
                   for b, n in enumerate(lengths))
    expected = tape.gradient(loss, [inputs] + weights)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g.numpy(), e.numpy(), atol=1e-10)
    np.testing.assert_array_equal(got[0].numpy()[~mask], 0.0)


@pytest.mark.parametrize("read", ["last", "scattered", "early"])
@pytest.mark.parametrize("cell_type", ["RNN", "LSTM", "GRU"])
def test_gradients_when_the_loss_reads_few_outputs(cell_type, read, rng):
    # The native backward skips a tile's steps until a nonzero gradient
    # reaches it. Batch 8 and dilation 8 give 64 rows, several tiles, so
    # that some tiles are skipped and others not, and some start mid-way.
    inputs = tf.constant(rng.normal(size=(8, 29, 2)))
    layer = _layer(_cells(cell_type, [4, 3, 5]), [1, 4, 8], rng, inputs,
                   return_sequences=True, implementation="native")
    cotangent = np.zeros((8, 29, 5))
    if read == "last":  # a classifier's loss
        cotangent[:, -1] = rng.normal(size=(8, 5))
    elif read == "scattered":
        for b, t in [(0, 28), (3, 17), (5, 9), (7, 0)]:
            cotangent[b, t] = rng.normal(size=5)
    else:  # nothing after step 5: the late steps of every tile are skipped
        cotangent[2:4, 3:6] = rng.normal(size=(2, 3, 5))
    got = _assert_matches_reference(layer, inputs, rng,
                                    cotangent=tf.constant(cotangent))
    if read == "early":  # the inputs' gradient is exactly zero after step 5
        np.testing.assert_array_equal(got[1].numpy()[:, 6:], 0.0)


def test_fully_masked_sequence_outputs_zeros(rng):
    inputs = tf.constant(rng.normal(size=(2, 5, 2)))
    mask = tf.constant([[True] * 5, [False] * 5])
    layer = _layer(_cells("GRU", [3]), [2], rng, inputs)
    np.testing.assert_array_equal(layer(inputs, mask=mask).numpy()[1], 0.0)


def test_keras_masking_layer_propagates(rng):
    inputs = keras.Input((None, 2))
    masked = keras.layers.Masking(0.0)(inputs)
    sequences = DilatedRNN([3], [2], cell_type="RNN",
                           return_sequences=True)(masked)
    last = DilatedRNN([4], [1], cell_type="LSTM")(sequences)
    model = keras.Model(inputs, last)
    data = rng.normal(size=(2, 6, 2)).astype("float32")
    data[1, 4:] = 0.0
    np.testing.assert_allclose(model(data[1:, :4]).numpy(),
                               model(data[1:]).numpy(), atol=1e-6)


def test_keras_dropout_cells(rng):
    cells = [keras.layers.LSTMCell(4, dropout=0.5, recurrent_dropout=0.5),
             keras.layers.GRUCell(3, dropout=0.5)]
    layer = DilatedRNN(cells=cells, dilations=[1, 2], return_sequences=True)
    data = tf.constant(rng.normal(size=(2, 6, 2)), tf.float32)
    inference = layer(data, training=False)
    expected = reference.stack_loop(cells, [1, 2], data)
    np.testing.assert_allclose(inference.numpy(), expected.numpy(), atol=1e-5)
    dropped = layer(data, training=True)
    assert np.abs(dropped.numpy() - inference.numpy()).max() > 1e-3
    assert all(getattr(c, "_dropout_mask", None) is None for c in cells)


def test_unknown_time_length(rng):
    inputs = keras.Input((None, 2))
    model = keras.Model(inputs, DilatedRNN([4, 4], [1, 4], "LSTM")(inputs))
    for steps in (3, 9):
        data = rng.normal(size=(2, steps, 2)).astype("float32")
        expected = reference.stack_loop(model.layers[1].cells, [1, 4],
                                        tf.constant(data))[:, -1]
        np.testing.assert_allclose(model(data).numpy(), expected.numpy(),
                                   atol=1e-5)


def test_time_major_and_shapes(rng):
    data = tf.constant(rng.normal(size=(6, 2, 3)), tf.float32)
    layer = DilatedRNN([4, 5], [1, 2], return_sequences=True,
                       time_major=True)
    assert layer(data).shape == (6, 2, 5)
    assert layer.compute_output_shape((6, 2, 3)) == (6, 2, 5)
    batch_major = DilatedRNN(cells=layer.cells, dilations=[1, 2],
                             return_sequences=True)
    np.testing.assert_allclose(
        batch_major(tf.transpose(data, [1, 0, 2])).numpy(),
        tf.transpose(layer(data), [1, 0, 2]).numpy(), atol=1e-6)
    last = DilatedRNN([4], [3])
    assert last(tf.transpose(data, [1, 0, 2])).shape == (2, 4)
    assert last.compute_output_shape((2, 6, 3)) == (2, 4)
    mask = tf.ones((2, 6), bool)
    assert batch_major.compute_mask(data, mask) is mask
    assert last.compute_mask(data, mask) is None


def test_equal_dilations_get_distinct_weights():
    layer = DilatedRNN([3, 3, 3], [2, 2, 2], cell_type="GRU")
    layer.build((None, 5, 1))
    paths = [w.path for w in layer.weights]
    assert len(paths) == 12 and len(set(paths)) == 12


def test_parameter_count_and_tf1_layout():
    layer = DilatedRNN([20] * 9, [2 ** i for i in range(9)], "LSTM")
    layer.build((None, 784, 1))
    # BasicLSTMCell: kernel [in + 20, 80] and bias [80] per layer.
    assert layer.count_params() == (21 * 80 + 80) + 8 * (40 * 80 + 80)
    assert [tuple(w.shape) for w in layer.cells[0].weights] == [(21, 80), (80,)]


def test_config_round_trip():
    layer = DilatedRNN([3, 4], [1, 5], cell_type="GRU", return_sequences=True,
                       implementation="while", name="stack")
    clone = DilatedRNN.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    assert [type(c) for c in clone.cells] == [GRUCell, GRUCell]
    custom = DilatedRNN(cells=[keras.layers.SimpleRNNCell(3),
                               BasicLSTMCell(2, forget_bias=0.5)],
                        dilations=[1, 2])
    clone = DilatedRNN.from_config(custom.get_config())
    assert isinstance(clone.cells[0], keras.layers.SimpleRNNCell)
    assert clone.cells[1].forget_bias == 0.5
    assert clone.hidden_structs == [3, 2]


def test_saved_model_round_trip(tmp_path, rng):
    inputs = keras.Input((None, 2))
    outputs = DilatedRNN([4, 3], [1, 2], "LSTM")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(outputs))
    _randomise(model, rng)
    data = rng.normal(size=(3, 7, 2)).astype("float32")
    path = str(tmp_path / "drnn.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_allclose(restored(data).numpy(), model(data).numpy(),
                               atol=1e-6)


def test_trains_with_fit(rng):
    inputs = keras.Input((12, 1))
    outputs = keras.layers.Dense(1)(DilatedRNN([8, 8], [1, 4], "GRU")(inputs))
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(0.01), "mse")
    x = rng.normal(size=(32, 12, 1)).astype("float32")
    y = x[:, -1, :] - x[:, -2, :]  # needs the state as well as the input
    history = model.fit(x, y, epochs=25, batch_size=32, verbose=0)
    assert history.history["loss"][-1] < 0.8 * history.history["loss"][0]


def test_mixed_precision(rng):
    data = rng.normal(size=(2, 9, 3)).astype("float32")
    full = DilatedRNN([4, 4], [1, 3], "GRU")
    half = DilatedRNN([4, 4], [1, 3], "GRU", dtype="mixed_float16")
    full.build((None, 9, 3))
    half.build((None, 9, 3))
    _randomise(full, rng)
    half.set_weights(full.get_weights())
    out = half(data)
    assert out.dtype == tf.float16
    assert all(w.dtype == "float32" for w in half.weights)
    np.testing.assert_allclose(out.numpy(), full(data).numpy(), atol=1e-2)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.cast(half(data), tf.float32))
    grads = tape.gradient(loss, half.trainable_weights)
    assert all(np.isfinite(g.numpy()).all() for g in grads)


def test_mixed_precision_model_fits(rng):
    keras.mixed_precision.set_global_policy("mixed_float16")
    inputs = keras.Input((8, 1))
    features = DilatedRNN([6, 6], [1, 2], "LSTM")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1, dtype="float32")(features))
    model.compile(keras.optimizers.Adam(0.01), "mse")
    x = rng.normal(size=(16, 8, 1)).astype("float32")
    history = model.fit(x, x[:, 0], epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


def test_inside_an_xla_compiled_function_the_layer_avoids_native_kernels(
        rng):
    # XLA has no kernel for the C++ ops: under tf.function(jit_compile=True)
    # the layer must pick loops XLA can compile (here a 20-step XLA loop
    # and a 5-step unrolled one), with the same numbers.
    layer = DilatedRNN([5, 5], [1, 4], "GRU", return_sequences=True)
    x = tf.constant(rng.normal(size=(3, 20, 1)), tf.float32)
    layer.build(x.shape)

    def loss_and_grads(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(x) ** 2)
        return [loss] + tape.gradient(loss, layer.trainable_weights)

    # (XLA would fail to compile a graph holding the C++ ops.)
    compiled = tf.function(loss_and_grads, jit_compile=True)
    for got, expected in zip(compiled(x), loss_and_grads(x)):
        np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-4,
                                   atol=1e-5)


def test_default_compile_does_not_xla_compile_the_step():
    inputs = keras.Input((10, 1))
    model = keras.Model(inputs, DilatedRNN([3], [2])(inputs))
    model.compile("sgd", "mse")
    assert model.jit_compile is False


@pytest.mark.parametrize("kwargs,argument", [
    (dict(hidden_structs=[3, 3], dilations=[1]), "dilations"),
    (dict(hidden_structs=[3], dilations=[0]), "dilations"),
    (dict(hidden_structs=[3], dilations=[-2]), "dilations"),
    (dict(hidden_structs=[3], dilations=[1.5]), "dilations"),
    (dict(hidden_structs=[3], dilations=[True]), "dilations"),
    (dict(hidden_structs=[3], dilations=[]), "dilations"),
    (dict(hidden_structs=[0], dilations=[1]), "hidden_structs"),
    (dict(hidden_structs=[3], dilations=[1], cell_type="CNN"), "cell_type"),
    (dict(dilations=[1]), "hidden_structs"),
    (dict(hidden_structs=[3], dilations=[1], cells=[BasicRNNCell(3)]),
     "hidden_structs"),
    (dict(cells=["not a cell"], dilations=[1]), "cells"),
    (dict(hidden_structs=[3], dilations=[1], implementation="gpu"),
     "implementation"),
])
def test_bad_arguments_name_the_argument(kwargs, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        DilatedRNN(**kwargs)


def test_bad_dilation_message_shows_value_and_expectation():
    with pytest.raises(ValueError) as error:
        DilatedRNN([3], [0])
    message = str(error.value)
    assert "Received an invalid value for argument `dilations`" in message
    assert "positive integers" in message and "[0]" in message


@pytest.mark.parametrize("shape", [(4, 3), (2, 4, 3, 1), (2, 4, None)])
def test_wrong_input_rank_is_refused(shape):
    with pytest.raises(ValueError, match="rank 3"):
        DilatedRNN([3], [1]).build(shape)


def test_unrolled_needs_a_known_length():
    layer = DilatedRNN([3], [2], implementation="unrolled")
    graph = tf.function(layer, input_signature=[
        tf.TensorSpec([None, None, 2], tf.float32)])
    with pytest.raises(ValueError, match="`implementation`"):
        graph.get_concrete_function()


def test_engine_choice(monkeypatch):
    assert dilation.resolve_engine("while", 100, True) == "while"
    assert dilation.resolve_engine("xla", 100, False) == "while"
    assert dilation.resolve_engine("cell", 5, True) == "unrolled"
    assert dilation.resolve_engine("cell", None, True) == "while"
    monkeypatch.setattr(dilation.native, "available", lambda _: False)
    assert dilation.resolve_engine("auto", 5, True) == "unrolled"
    assert dilation.resolve_engine("auto", 500, True) == "xla"
    assert dilation.resolve_engine("native", 500, True) == "xla"
    monkeypatch.setattr(dilation, "xla_available", lambda: False)
    assert dilation.resolve_engine("auto", 500, True) == "while"
