"""The TF1 cells: maths against the spec, TF1 layouts and initialisation,
the fused kernels against stepping `call`, config and errors."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from dilated_rnn import BasicLSTMCell, BasicRNNCell, GRUCell
from dilated_rnn import _contruct_cells, construct_cells
from dilated_rnn import kernels, native
from dilated_rnn.dilation import cell_sequence
from tests import drnn_reference as reference

CELLS = (BasicRNNCell, BasicLSTMCell, GRUCell)


def _built(cls, units, depth, rng, **kwargs):
    cell = cls(units, dtype="float64", **kwargs)
    cell.build((None, depth))
    for weight in cell.weights:
        weight.assign(rng.normal(size=weight.shape) * 0.5)
    return cell


@pytest.mark.parametrize("cls", CELLS)
def test_one_step_matches_the_tf1_formulas(cls, rng):
    cell = _built(cls, 4, 3, rng)
    x = tf.constant(rng.normal(size=(5, 3)))
    state = tuple(tf.constant(rng.normal(size=(5, 4)))
                  for _ in reference.zero_state(cell, 5, tf.float64))
    output, new_state = cell(x, list(state))
    expected_output, expected_state = reference.reference_step(cell)(x, state)
    np.testing.assert_allclose(output.numpy(), expected_output.numpy(),
                               atol=1e-12)
    for got, expected in zip(new_state, expected_state):
        np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-12)


def test_lstm_state_is_c_then_h_and_forget_bias_applies_at_run_time(rng):
    cell = _built(BasicLSTMCell, 3, 2, rng)
    assert cell.state_size == [3, 3]
    x = tf.constant(rng.normal(size=(2, 2)))
    zeros = [tf.zeros((2, 3), tf.float64)] * 2
    output, (c, h) = cell(x, zeros)
    np.testing.assert_array_equal(output.numpy(), h.numpy())
    assert not np.allclose(c.numpy(), h.numpy())
    other = _built(BasicLSTMCell, 3, 2, rng, forget_bias=0.0)
    other.set_weights(cell.get_weights())
    # With a zero state the forget gate multiplies zero: same first step...
    np.testing.assert_allclose(other(x, zeros)[0].numpy(), output.numpy())
    # ...but not once there is a cell state to forget.
    assert not np.allclose(other(x, [c, h])[0].numpy(), cell(x, [c, h])[0].numpy())


def test_weight_layouts_and_names_are_tf1s():
    shapes = {}
    for cls in CELLS:
        cell = cls(5)
        cell.build((None, 3))
        shapes[cls.__name__] = [(w.name, tuple(w.shape)) for w in cell.weights]
    assert shapes == {
        "BasicRNNCell": [("kernel", (8, 5)), ("bias", (5,))],
        "BasicLSTMCell": [("kernel", (8, 20)), ("bias", (20,))],
        "GRUCell": [("gates_kernel", (8, 10)), ("gates_bias", (10,)),
                    ("candidate_kernel", (8, 5)), ("candidate_bias", (5,))],
    }
    assert [c.name.rstrip("_0123456789") for c in
            (BasicRNNCell(2), BasicLSTMCell(2), GRUCell(2))] == [
                "basic_rnn_cell", "basic_lstm_cell", "gru_cell"]


@pytest.mark.parametrize("cls", CELLS)
def test_default_initialisation_is_tf1s(cls):
    # TF1: glorot_uniform over the whole concatenated kernel, zero biases,
    # GRU gate bias 1.0.
    cell = cls(40)
    cell.build((None, 60))
    for weight in cell.weights:
        values = weight.numpy()
        if "kernel" in weight.name:
            fan_in, fan_out = values.shape
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            assert np.abs(values).max() <= limit
            # Uniform on [-limit, limit] has std limit / sqrt(3).
            assert abs(values.std() - limit / np.sqrt(3)) < 0.05 * limit
        elif weight.name == "gates_bias":
            np.testing.assert_array_equal(values, 1.0)
        else:
            np.testing.assert_array_equal(values, 0.0)


@pytest.mark.parametrize("engine", kernels.ENGINES)
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("cls", CELLS)
def test_fused_kernels_match_stepping_call(cls, masked, engine, rng):
    """Every engine against `call` stepped by a loop TF differentiates."""
    if engine == "native" and not native.available(tf.float64):
        pytest.skip("the C++ kernels cannot be built here")
    cell = _built(cls, 5, 3, rng)
    inputs = tf.constant(rng.normal(size=(6, 70, 3)))  # 70 rows: 2 tiles
    mask = None if not masked else tf.constant(rng.random((6, 70)) > 0.3)
    cotangent = tf.constant(rng.normal(size=(6, 70, 5)))

    def run(fn):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            outputs = fn()
            if masked:  # only valid steps' outputs are specified
                outputs = tf.where(mask[..., None], outputs, 0.0)
            loss = tf.reduce_sum(outputs * cotangent)
        return [outputs] + tape.gradient(loss, [inputs] + cell.trainable_weights)

    fused = run(lambda: cell.fused_sequence(inputs, mask, engine))
    stepped = run(lambda: cell_sequence(cell, inputs, mask, engine="while"))
    for got, expected in zip(fused, stepped):
        np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-11)


@pytest.mark.parametrize("cls", CELLS)
def test_cells_work_in_keras_rnn(cls, rng):
    layer = keras.layers.RNN(cls(3), return_sequences=True)
    data = rng.normal(size=(2, 4, 2)).astype("float32")
    got = layer(data).numpy()
    expected = reference.dilated_loop(
        reference.reference_step(layer.cell), tf.constant(data), 1,
        reference.zero_state(layer.cell, 2, tf.float32))
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-6)


def test_non_tanh_activation_falls_back_to_stepping(rng):
    cell = BasicRNNCell(3, activation="relu")
    assert not cell.supports_fused_sequence
    assert BasicRNNCell(3).supports_fused_sequence


@pytest.mark.parametrize("cls", CELLS)
def test_config_round_trip_and_registration(cls):
    cell = cls(7, kernel_initializer="ones", name="my_cell")
    clone = cls.from_config(cell.get_config())
    assert clone.get_config() == cell.get_config()
    assert keras.saving.get_registered_object(
        f"dilated_rnn>{cls.__name__}") is cls
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(cell))
    assert type(restored) is cls and restored.num_units == 7


@pytest.mark.parametrize("units", [0, -3, 2.5, "4", None, True])
def test_bad_num_units(units):
    with pytest.raises(ValueError, match="`num_units`"):
        BasicRNNCell(units)


def test_cells_take_the_tf1_constructor_arguments_positionally():
    """TF1 order: BasicRNNCell(num_units, activation, reuse, name, dtype),
    BasicLSTMCell(num_units, forget_bias, state_is_tuple, activation, reuse, name, dtype),
    GRUCell(num_units, activation, reuse, kernel_initializer, bias_initializer, name, dtype)."""
    rnn = BasicRNNCell(3, "relu", True, "rnn", "float64")
    lstm = BasicLSTMCell(3, 0.5, True, "relu", None, "lstm", "float64")
    gru = GRUCell(3, "relu", True, "ones", keras.initializers.Constant(0.25), "gru", "float64")
    for cell, name in [(rnn, "rnn"), (lstm, "lstm"), (gru, "gru")]:
        assert cell.name == name and cell.dtype == "float64"
        assert cell.activation is keras.activations.relu
    assert lstm.forget_bias == 0.5
    gru.build((None, 2))
    np.testing.assert_array_equal(gru.gates_kernel.numpy(), 1.0)
    np.testing.assert_array_equal(gru.gates_bias.numpy(), 0.25)
    # Keyword-only initializers for the cells whose TF1 signature has none.
    rnn = BasicRNNCell(3, kernel_initializer="zeros", bias_initializer="ones")
    rnn.build((None, 2))
    assert not rnn.kernel.numpy().any() and rnn.bias.numpy().all()
    clone = BasicLSTMCell.from_config(lstm.get_config())
    assert clone.get_config() == lstm.get_config()


def test_lstm_refuses_a_concatenated_state():
    with pytest.raises(ValueError, match="state_is_tuple"):
        BasicLSTMCell(3, state_is_tuple=False)


def test_cell_refuses_inputs_without_features():
    with pytest.raises(ValueError, match=r"\[batch, features\]"):
        GRUCell(3).build((None, None))


def test_construct_cells():
    assert construct_cells is _contruct_cells
    cells = _contruct_cells([20, 30], "LSTM")
    assert [type(c) for c in cells] == [BasicLSTMCell, BasicLSTMCell]
    assert [c.num_units for c in cells] == [20, 30]
    assert cells[0].forget_bias == 1.0
    assert type(_contruct_cells([4], "RNN")[0]) is BasicRNNCell
    assert type(_contruct_cells([4], "GRU")[0]) is GRUCell


def test_construct_indrnn_cells():
    ind_rnn = pytest.importorskip("ind_rnn")
    cells = _contruct_cells([5, 6], "IndRNN")
    assert all(isinstance(c, ind_rnn.IndRNNCell) for c in cells)


@pytest.mark.parametrize("cell_type", ["CNN", "rnn", None])
def test_unknown_cell_type_keeps_the_original_message(cell_type):
    with pytest.raises(ValueError) as error:
        _contruct_cells([3], cell_type)
    assert str(error.value).startswith(
        "The cell type is not currently supported.")
    assert "`cell_type`" in str(error.value)


def test_native_kernels_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("DILATED_RNN_NATIVE", "0")
    native.load.cache_clear()
    try:
        assert native.load() is None
        assert not native.available(tf.float32)
    finally:
        native.load.cache_clear()
