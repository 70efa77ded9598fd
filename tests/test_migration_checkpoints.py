"""TF1 migration: the legacy graph-mode API and TF1 checkpoints in the TF2 models.

The TF1 side (tests/migration_tf1_graphs.py) runs once, in a subprocess with
TF_USE_LEGACY_KERAS=1 and graph mode: it builds the original graphs with
`ind_rnn.legacy.IndRNNCell`, TF's own TF1 cells, an independent list-based
DilatedRNN reference and `dilated_rnn.legacy`, trains or randomises them,
and saves real checkpoints with `tf.compat.v1.train.Saver`. Here, in the
normal TF2 process, those checkpoints are loaded into the Keras 3 models,
which must reproduce the TF1 session's outputs (<= 1e-5); the TF1 IndRNN
graph itself is checked against the NumPy reference.
"""
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import dilated_rnn
import ind_rnn
from ind_rnn.models import LastStep
from tests import indrnn_numpy_reference as reference
from tests import migration_support

ATOL = 1e-5
INDRNN_VARIABLES = ("input_kernel", "recurrent_kernel", "bias")
DRNN_CASES = ("demo_RNN", "demo_LSTM", "demo_GRU", "fused_GRU")


@pytest.fixture(scope="module")
def tf1(tmp_path_factory):
    return migration_support.tf1_artifacts(str(tmp_path_factory.getbasetemp() / "tf1_graphs"))


def _close(actual, expected):
    np.testing.assert_allclose(np.asarray(actual), expected, rtol=0, atol=ATOL)


def _sources(report, path_end):
    """The TF1 names the variable whose path ends with `path_end` was loaded from."""
    (names,) = [names for path, names in report.loaded if path.endswith(path_end)]
    return names


def _weights(model):
    return [weight.numpy().copy() for weight in model.weights]


# --------------------------------------------------------------------------
# Legacy graph mode (built in the subprocess)
# --------------------------------------------------------------------------
def test_legacy_indrnn_cell_has_the_original_variable_names(tf1):
    addition = set(tf1.manifest["addition"]["variables"])
    assert {f"rnn/multi_rnn_cell/cell_{layer}/ind_rnn_cell/{name}"
            for layer in (0, 1) for name in INDRNN_VARIABLES} <= addition
    mnist = set(tf1.manifest["sequential_mnist"]["variables"])
    assert {f"rnn{layer}/ind_rnn_cell/{name}"
            for layer in (1, 2, 3) for name in INDRNN_VARIABLES} <= mnist
    # Alone in dynamic_rnn, under the full TF1 behaviour (v1 shapes, ref variables).
    assert tf1.manifest["v1_single_cell"]["variables"] == [
        f"rnn/ind_rnn_cell/{name}" for name in INDRNN_VARIABLES]


def _numpy_indrnn_stack(checkpoint, scopes, bounds, x):
    reader = tf.train.load_checkpoint(checkpoint)
    states = x.astype(np.float64)
    for scope, (min_abs, max_abs) in zip(scopes, bounds):
        weights = [reader.get_tensor(f"{scope}/ind_rnn_cell/{name}").astype(np.float64)
                   for name in INDRNN_VARIABLES]
        states, _ = reference.forward(states, *weights, np.zeros((len(x), weights[2].size)),
                                      min_abs=min_abs, max_abs=max_abs)
    return states


def test_legacy_indrnn_graph_matches_numpy(tf1):
    arrays = tf1.arrays("addition")
    bounds = [(0.0, tf1.manifest["addition"]["recurrent_max"]), (0.5, 1.1)]
    expected = _numpy_indrnn_stack(tf1.checkpoint("addition"),
                                   ["rnn/multi_rnn_cell/cell_0", "rnn/multi_rnn_cell/cell_1"],
                                   bounds, arrays["x"])
    _close(arrays["sequence"], expected)
    single = tf1.arrays("v1_single_cell")
    _close(single["sequence"], _numpy_indrnn_stack(
        tf1.checkpoint("v1_single_cell"), ["rnn"], [(0.0, 1.0)], single["x"]))


@pytest.mark.parametrize("case", DRNN_CASES)
def test_legacy_drnn_classification_restores_the_original_graph(tf1, case):
    info = tf1.manifest[case]
    # Same variable names and shapes (the Saver restored them), same logits.
    assert info["legacy_variables"] == info["reference_variables"]
    assert {"Variable", "Variable_1", "global_step"} <= set(info["legacy_variables"])
    scopes = {name.split("/")[0] for name in info["legacy_variables"] if "/" in name}
    assert scopes == {f"multi_dRNN_dilation_{d}" for d in info["dilations"]}
    _close(tf1.arrays(case, "legacy")["logits"], tf1.arrays(case)["logits"])


def test_legacy_list_api(tf1):
    info = tf1.manifest["list_api"]
    _close(tf1.arrays("list_api", "legacy")["outputs"], tf1.arrays("list_api")["reference"])
    assert info["legacy_outputs"] == 7 and info["inputs_left_alone"]
    # dRNN's default scope; a repeated dilation gets its own scope.
    assert "default/basic_rnn_cell/kernel" in info["repeated_names"]
    assert {"multi_dRNN_dilation_2/basic_lstm_cell/kernel",
            "multi_dRNN_dilation_2_1/basic_lstm_cell/kernel"} <= set(info["repeated_names"])
    for rate, error in zip((0, 5), info["rate_errors"]):
        assert error.startswith("ValueError") and "`rate`" in error and f"got {rate}" in error


def test_legacy_indrnn_cell_in_the_legacy_dilated_layers(tf1):
    assert {f"multi_dRNN_dilation_3/ind_rnn_cell/{name}" for name in INDRNN_VARIABLES} <= set(
        tf1.manifest["list_api"]["repeated_names"])


@pytest.mark.parametrize("case, words", [
    ("num_units", ["ValueError", "`num_units`", "positive integer", "got 0"]),
    ("bounds", ["ValueError", "`recurrent_min_abs`", "recurrent_max_abs=1.0", "got 2.0"]),
    ("cell_type", ["ValueError", "The cell type is not currently supported", "'CNN'"]),
    ("dilations", ["ValueError", "`dilations`", "got 1"]),
    ("shape", ["ValueError", "`x`", "n_steps=7"]),
])
def test_legacy_argument_errors_name_the_argument(tf1, case, words):
    error = tf1.manifest["errors"][case]
    assert error is not None
    for word in words:
        assert word in error, error


def test_legacy_drnn_works_under_disable_v2_behavior(tf1):
    """TF1 shapes (Dimension objects) give the same graph and numbers as TF2 shapes."""
    info = tf1.manifest["v1_single_cell"]
    under_v1, under_v2 = info["drnn_v1_shapes"], info["drnn_v2_shapes"]
    assert under_v1["variables"] == under_v2["variables"]
    assert "multi_dRNN_dilation_4/gru_cell/gates/kernel" in under_v1["variables"]
    logits = np.array(under_v1["logits"])
    assert logits.shape == (3, 2) and np.all(np.isfinite(logits))
    assert np.ptp(logits, axis=0).min() > 0  # the examples differ: a real computation
    np.testing.assert_allclose(logits, np.array(under_v2["logits"]), rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------
# TF1 checkpoints into the TF2 models
# --------------------------------------------------------------------------
def _addition_model(recurrent_max, stacked_cells=False):
    """The addition script's network: two IndRNN layers, Dense on the last step."""
    inputs = keras.Input((12, 2))
    if stacked_cells:  # keras.layers.RNN over the cells
        sequence = keras.layers.RNN(
            [ind_rnn.IndRNNCell(6, recurrent_max_abs=recurrent_max),
             ind_rnn.IndRNNCell(6, recurrent_min_abs=0.5, recurrent_max_abs=1.1)],
            return_sequences=True)(inputs)
    else:
        sequence = ind_rnn.IndRNN(6, recurrent_max_abs=recurrent_max,
                                  return_sequences=True)(inputs)
        sequence = ind_rnn.IndRNN(6, recurrent_min_abs=0.5, recurrent_max_abs=1.1,
                                  return_sequences=True)(sequence)
    prediction = keras.layers.Dense(1)(LastStep()(sequence))
    return keras.Model(inputs, [sequence, prediction])


@pytest.mark.parametrize("stacked_cells", [False, True], ids=["IndRNN", "RNN_cells"])
def test_addition_checkpoint_into_indrnn_model(tf1, stacked_cells):
    model = _addition_model(tf1.manifest["addition"]["recurrent_max"], stacked_cells)
    report = ind_rnn.load_tf1_checkpoint(model, tf1.checkpoint("addition"))
    arrays = tf1.arrays("addition")
    sequence, prediction = model(arrays["x"])
    _close(sequence, arrays["sequence"])
    _close(prediction[:, 0], arrays["prediction"])

    assert report.layout == "multi_rnn_cell"
    loaded = dict(report.loaded)
    assert len(loaded) == 8 and report.unloaded_target_variables == ()
    assert ("softmax_weight",) in loaded.values() and ("softmax_bias",) in loaded.values()
    assert ("rnn/multi_rnn_cell/cell_1/ind_rnn_cell/recurrent_kernel",) in loaded.values()
    unused = set(report.unused_checkpoint_variables)
    assert {"global_step", "beta1_power", "softmax_weight/Adam"} <= unused
    assert not any(name in unused for names in loaded.values() for name in names)
    assert "8 variables loaded" in str(report) and "global_step" in str(report)


def test_tf1_names_of_tf_before_1_5_load_too(tf1):
    """`input_weights`, `recurrent_weights`, `biases` instead of *_kernel / bias."""
    assert "rnn/multi_rnn_cell/cell_0/ind_rnn_cell/input_weights" in tf.train.load_checkpoint(
        tf1.checkpoint("old_names")).get_variable_to_shape_map()
    model = _addition_model(tf1.manifest["addition"]["recurrent_max"])
    report = ind_rnn.load_tf1_checkpoint(model, tf1.checkpoint("old_names"))
    assert _sources(report, "ind_rnn_1/ind_rnn_cell/bias") == (
        "rnn/multi_rnn_cell/cell_1/ind_rnn_cell/biases",)
    arrays = tf1.arrays("addition")
    _close(model(arrays["x"])[1][:, 0], arrays["prediction"])


def test_single_cell_checkpoint_of_tf1_behaviour_into_indrnn(tf1):
    """Layout "rnn" (one cell in dynamic_rnn), saved with reference variables."""
    model = keras.Sequential([keras.Input((6, 2)),
                              ind_rnn.IndRNN(4, recurrent_max_abs=1.0, return_sequences=True)])
    assert ind_rnn.load_tf1_checkpoint(model, tf1.checkpoint("v1_single_cell")).layout == "rnn"
    arrays = tf1.arrays("v1_single_cell")
    _close(model(arrays["x"]), arrays["sequence"])


def test_explicit_scopes_instead_of_the_layout(tf1):
    model = _addition_model(tf1.manifest["addition"]["recurrent_max"])
    report = ind_rnn.load_tf1_checkpoint(
        model, os.path.dirname(tf1.checkpoint("addition")),  # a directory works too
        scopes=["rnn/multi_rnn_cell/cell_0", "rnn/multi_rnn_cell/cell_1/"],
        dense_variables=[])
    assert report.layout == "scopes"
    assert [path for path, _ in report.loaded] == [
        weight.path for weight in model.weights if "dense" not in weight.path]
    assert set(report.unloaded_target_variables) == {"dense/kernel", "dense/bias"}
    assert "softmax_weight" in report.unused_checkpoint_variables


def test_sequential_mnist_checkpoint_into_plain_classifier(tf1):
    """rnn<k> scopes, batch norm after every layer, softmax_weight / softmax_bias."""
    model = ind_rnn.build_sequence_classifier(
        10, 1, 4, model="plain", num_layers=3, units=5,
        recurrent_max_abs=tf1.manifest["sequential_mnist"]["recurrent_max"])
    report = ind_rnn.load_tf1_checkpoint(model, tf1.checkpoint("sequential_mnist"))
    assert report.layout == "rnn_k" and report.unloaded_target_variables == ()
    assert _sources(report, "norm_3/moving_variance") == (
        "batch_normalization_2/moving_variance",)
    assert _sources(report, "ind_rnn_1/ind_rnn_cell/input_kernel") == (
        "rnn1/ind_rnn_cell/input_kernel",)
    arrays = tf1.arrays("sequential_mnist")
    _close(model(arrays["x"], training=False), arrays["logits"])
    # The TF1 moving averages are taken as warmed up: a training batch then
    # moves them by (1 - momentum), not replaces them (debiased averages).
    norm = next(layer for layer in model.layers if hasattr(layer, "moving_weight"))
    before = np.asarray(norm.moving_mean)
    model(arrays["x"], training=True)
    moved = np.abs(np.asarray(norm.moving_mean) - before).max()
    assert np.asarray(norm.moving_weight) == 1.0
    assert 0 < moved <= (1 - norm.momentum) * (np.abs(before).max() + 10) + 1e-6


def _tf_cells_model(cells):
    return keras.Sequential([keras.Input((9, 2))] + cells)


def test_tf1_cells_into_keras_cells_convert_layouts(tf1):
    """BasicRNNCell / BasicLSTMCell(forget_bias=0.5) / GRUCell -> SimpleRNN / LSTM / GRU."""
    def build():
        return _tf_cells_model([keras.layers.SimpleRNN(5, return_sequences=True),
                                keras.layers.LSTM(4, return_sequences=True),
                                keras.layers.GRU(3, reset_after=False, return_sequences=True)])

    arrays = tf1.arrays("tf_cells")
    model = build()
    report = ind_rnn.load_tf1_checkpoint(model, tf1.checkpoint("tf_cells"), forget_bias=0.5)
    _close(model(arrays["x"]), arrays["sequence"])
    assert _sources(report, "gru_cell/kernel") == (
        "rnn/multi_rnn_cell/cell_2/gru_cell/gates/kernel",
        "rnn/multi_rnn_cell/cell_2/gru_cell/candidate/kernel")
    # The TF1 cells' forget_bias is not in the checkpoint: the option matters.
    wrong = build()
    ind_rnn.load_tf1_checkpoint(wrong, tf1.checkpoint("tf_cells"))  # forget_bias=1.0
    assert np.abs(np.asarray(wrong(arrays["x"])) - arrays["sequence"]).max() > 1e-3


def test_tf1_cells_into_dilated_rnn_tf1_cells(tf1):
    """The TF1-exact cells keep TF1's layouts; their own forget_bias is 1.0."""
    cells = [dilated_rnn.BasicRNNCell(5), dilated_rnn.BasicLSTMCell(4), dilated_rnn.GRUCell(3)]
    model = _tf_cells_model([keras.layers.RNN(cells, return_sequences=True)])
    ind_rnn.load_tf1_checkpoint(model, tf1.checkpoint("tf_cells"), forget_bias=0.5)
    arrays = tf1.arrays("tf_cells")
    _close(model(arrays["x"]), arrays["sequence"])


@pytest.mark.parametrize("case", DRNN_CASES)
def test_drnn_demo_checkpoint_into_classifier(tf1, case):
    info, arrays = tf1.manifest[case], tf1.arrays(case)
    model = dilated_rnn.DilatedRNNClassifier(info["hidden_structs"], info["dilations"], 4,
                                             cell_type=info["cell_type"])
    model(arrays["x"][:1])  # builds the weights
    report = dilated_rnn.load_tf1_checkpoint(model, tf1.checkpoint(case))
    assert report.layout == "drnn"
    assert report.unused_checkpoint_variables == ("global_step",)
    assert report.unloaded_target_variables == ()
    assert _sources(report, "logits/kernel") == ("Variable",)
    assert _sources(report, "logits/bias") == ("Variable_1",)
    _close(model(arrays["x"]), arrays["logits"])


def test_drnn_checkpoint_into_functional_drnn_classification(tf1):
    """The TF2 `drnn_classification` on a keras.Input: one DilatedRNN per layer."""
    info, arrays = tf1.manifest["fused_GRU"], tf1.arrays("fused_GRU")
    inputs = keras.Input(arrays["x"].shape[1:])
    logits = dilated_rnn.drnn_classification(inputs, info["hidden_structs"], info["dilations"],
                                             arrays["x"].shape[1], 4, 1, "GRU")
    model = keras.Model(inputs, logits)
    assert dilated_rnn.load_tf1_checkpoint(model, tf1.checkpoint("fused_GRU")).layout == "drnn"
    _close(model(arrays["x"]), arrays["logits"])


def test_load_tf1_checkpoint_is_one_function():
    assert dilated_rnn.load_tf1_checkpoint is ind_rnn.load_tf1_checkpoint


# --------------------------------------------------------------------------
# Errors: listed, and nothing half-loaded
# --------------------------------------------------------------------------
def _built_addition_model(tf1):
    return _addition_model(tf1.manifest["addition"]["recurrent_max"])


def test_missing_variable_is_listed_and_nothing_is_loaded(tf1):
    model = _built_addition_model(tf1)
    before = _weights(model)
    missing = tf1.manifest["broken"]["missing"]
    with pytest.raises(ValueError, match="nothing was loaded") as error:
        ind_rnn.load_tf1_checkpoint(model, tf1.checkpoint("missing"))
    message = str(error.value)
    assert "Missing from the checkpoint (1)" in message and missing in message
    assert "ind_rnn_1/ind_rnn_cell" in message  # which cell needed it
    for old, new in zip(before, _weights(model)):
        np.testing.assert_array_equal(old, new)


def test_wrong_shape_is_listed_and_nothing_is_loaded(tf1):
    model = _built_addition_model(tf1)
    before = _weights(model)
    name = tf1.manifest["broken"]["bad_shape"]
    with pytest.raises(ValueError, match=re.escape(f"{name}: checkpoint shape [5]")) as error:
        ind_rnn.load_tf1_checkpoint(model, tf1.checkpoint("bad_shape"))
    assert "needs [6]" in str(error.value) and "nothing was loaded" in str(error.value)
    for old, new in zip(before, _weights(model)):
        np.testing.assert_array_equal(old, new)


def test_target_shapes_that_do_not_fit_are_all_listed(tf1):
    model = keras.Sequential([keras.Input((12, 2)), ind_rnn.IndRNN(5, return_sequences=True),
                              ind_rnn.IndRNN(6)])
    with pytest.raises(ValueError) as error:
        ind_rnn.load_tf1_checkpoint(model, tf1.checkpoint("addition"), dense_variables=[])
    message = str(error.value)
    assert "Wrong shape (4)" in message  # cell_0's three, cell_1's input kernel
    assert "cell_1/ind_rnn_cell/input_kernel: checkpoint shape [6, 6]" in message


def test_more_layers_in_the_target_than_in_the_checkpoint(tf1):
    model = keras.Sequential([keras.Input((12, 2))] + [
        ind_rnn.IndRNN(6, return_sequences=True) for _ in range(3)])
    with pytest.raises(ValueError, match="cell_2/ind_rnn_cell/input_kernel"):
        ind_rnn.load_tf1_checkpoint(model, tf1.checkpoint("addition"))


def test_more_layers_in_the_checkpoint_than_in_the_target(tf1):
    model = keras.Sequential([keras.Input((12, 2)), ind_rnn.IndRNN(6)])
    with pytest.raises(ValueError, match=r"one recurrent cell per recurrent layer .*got 1"):
        ind_rnn.load_tf1_checkpoint(model, tf1.checkpoint("addition"))


def test_keras_gru_with_reset_after_cannot_take_tf1_weights(tf1):
    model = _tf_cells_model([keras.layers.SimpleRNN(5, return_sequences=True),
                             keras.layers.LSTM(4, return_sequences=True),
                             keras.layers.GRU(3, return_sequences=True)])  # reset_after=True
    before = _weights(model)
    with pytest.raises(ValueError, match="reset_after=False"):
        ind_rnn.load_tf1_checkpoint(model, tf1.checkpoint("tf_cells"), forget_bias=0.5)
    for old, new in zip(before, _weights(model)):
        np.testing.assert_array_equal(old, new)


@pytest.mark.parametrize("kwargs, error, words", [
    ({"layout": "dynamic"}, ValueError, "`layout`.*'dynamic'"),
    ({"layout": "rnn_k"}, ValueError, r"rnn1/ind_rnn_cell/input_kernel"),
    ({"scopes": ["rnn/multi_rnn_cell/cell_0"]}, ValueError, "`scopes`.*one scope per"),
    ({"scopes": "rnn"}, TypeError, "`scopes`"),
    ({"dense_variables": ["softmax_weight"]}, TypeError, "`dense_variables`"),
    ({"dense_variables": [("softmax_weight", "softmax_bias")] * 2}, ValueError,
     "`dense_variables`.*got 2"),
    ({"batch_norm_scopes": "batch_normalization"}, TypeError, "`batch_norm_scopes`"),
    ({"forget_bias": "1"}, TypeError, "`forget_bias`"),
])
def test_bad_options(tf1, kwargs, error, words):
    with pytest.raises(error, match=words):
        ind_rnn.load_tf1_checkpoint(_built_addition_model(tf1), tf1.checkpoint("addition"),
                                    **kwargs)


def test_bad_targets_and_paths(tf1, tmp_path):
    checkpoint = tf1.checkpoint("addition")
    with pytest.raises(ValueError, match="`checkpoint_path`.*no_such"):
        ind_rnn.load_tf1_checkpoint(_built_addition_model(tf1), str(tmp_path / "no_such"))
    with pytest.raises(TypeError, match="`checkpoint_path`"):
        ind_rnn.load_tf1_checkpoint(_built_addition_model(tf1), 3)
    with pytest.raises(TypeError, match="`target`.*Keras"):
        ind_rnn.load_tf1_checkpoint({"model": 1}, checkpoint)
    with pytest.raises(ValueError, match="built"):
        ind_rnn.load_tf1_checkpoint(ind_rnn.IndRNN(6), checkpoint)
    with pytest.raises(ValueError, match="at least one recurrent cell"):
        dense = keras.layers.Dense(2)
        dense.build((None, 3))
        ind_rnn.load_tf1_checkpoint(dense, checkpoint)
    with pytest.raises(ValueError, match="known kinds.*_OtherCell"):
        ind_rnn.load_tf1_checkpoint(_unknown_cell_model(), checkpoint)


class _OtherCell(keras.layers.Layer):
    """A cell of a kind with no TF1 counterpart."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.state_size = 2

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], 2), name="kernel")

    def call(self, inputs, states):
        output = inputs @ self.kernel + states[0]
        return output, [output]


def _unknown_cell_model():
    return keras.Sequential([keras.Input((12, 2)), keras.layers.RNN(_OtherCell())])


# --------------------------------------------------------------------------
# Normal TF2 mode is unaffected
# --------------------------------------------------------------------------
NORMAL_MODE_SCRIPT = """
import sys
import ind_rnn, dilated_rnn
assert "tf_keras" not in sys.modules, "importing the packages pulled in tf-keras"
assert ind_rnn.keras_flavour() == "keras_3"
assert ind_rnn.IndRNNCell is ind_rnn.ind_rnn_cell.IndRNNCell
assert ind_rnn.IndRNNCell.__module__ == "ind_rnn.keras_cell"
assert dilated_rnn.dRNN.__module__ == "dilated_rnn.drnn"
try:
    import ind_rnn.legacy
except ImportError as error:
    print("IMPORT-ERROR:", error)
"""


def test_normal_mode_does_not_load_tf_keras_and_legacy_says_what_it_needs():
    env = {key: value for key, value in os.environ.items() if key != "TF_USE_LEGACY_KERAS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    result = subprocess.run([sys.executable, "-c", NORMAL_MODE_SCRIPT], capture_output=True,
                            text=True, env=env, cwd=migration_support.ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    message = result.stdout.split("IMPORT-ERROR:", 1)[1]
    assert "TF_USE_LEGACY_KERAS=1" in message and "legacy" in message
