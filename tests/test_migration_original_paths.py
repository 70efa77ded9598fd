"""TF1 code with two lines changed: the original module paths under tf-keras and graph mode.

The programs run in subprocesses, one per group (tests/migration_original_paths.py:
`graph`; tests/migration_combinations.py: `tf_keras`, `keras3_graph`), because `TF_USE_LEGACY_KERAS` and graph mode are fixed per process:
`graph` and `tf_keras` with TF_USE_LEGACY_KERAS=1, `keras3_graph` without it.
This process (Keras 3) checks the default side of the switch.
"""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import dilated_rnn
import ind_rnn
from ind_rnn import flavour, ind_rnn_cell, keras_cell
from tests import migration_support

SCRIPTS = {"graph": ("migration_original_paths.py", migration_support.GUIDE),
           "tf_keras": ("migration_combinations.py",),
           "keras3_graph": ("migration_combinations.py",)}
UNSUPPORTED = "Unsupported combination: "


def _run(group, directory, legacy):
    env = migration_support.legacy_environment()
    if not legacy:
        env.pop("TF_USE_LEGACY_KERAS")
    out = os.path.join(directory, f"{group}.json")
    script, *extra = SCRIPTS[group]
    result = subprocess.run(
        [sys.executable, os.path.join(migration_support.ROOT, "tests", script), group, out,
         *extra], capture_output=True, text=True, env=env, cwd=migration_support.ROOT,
        timeout=900)
    if result.returncode != 0:
        raise RuntimeError(f"The `{group}` programs failed (the graph and tf_keras groups need "
                           f"tf-keras, in the `legacy` extra):\n{result.stderr[-6000:]}")
    with open(out, encoding="utf-8") as results:
        return json.load(results)


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    return _run("graph", str(tmp_path_factory.mktemp("graph")), legacy=True)


@pytest.fixture(scope="module")
def tf_keras(tmp_path_factory):
    return _run("tf_keras", str(tmp_path_factory.mktemp("tf_keras")), legacy=True)


@pytest.fixture(scope="module")
def keras3_graph(tmp_path_factory):
    return _run("keras3_graph", str(tmp_path_factory.mktemp("keras3_graph")),
                legacy=False)["keras3_graph"]


def _assert_unsupported(text, *phrases):
    assert text is not None, "no error was raised"
    # Keras prefixes errors raised inside a layer's call with its own line.
    assert text.startswith("KerasFlavourError: ") and UNSUPPORTED in text, text
    for phrase in phrases:
        assert phrase in text, (phrase, text)


# -- Keras 3 (this process) -------------------------------------------------
def test_keras3_side_of_the_switch():
    assert flavour.keras_flavour() == "keras_3" == ind_rnn.keras_flavour()
    assert ind_rnn.IndRNNCell is ind_rnn_cell.IndRNNCell is keras_cell.IndRNNCell
    assert ind_rnn_cell.flavour_cell() is keras_cell.IndRNNCell
    assert not flavour.graph_mode()
    assert issubclass(ind_rnn.KerasFlavourError, TypeError)


def test_graph_mode_is_a_graph_context_not_a_traced_function():
    seen = []

    @tf.function
    def traced():
        seen.append(flavour.graph_mode())
        return tf.constant(0)

    traced()
    with tf.Graph().as_default():
        seen.append(flavour.graph_mode())
    assert seen == [False, True]


def test_a_graph_context_without_tf_keras_says_what_to_install_and_set():
    with tf.Graph().as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 4, 1])
        for call in (lambda: dilated_rnn.drnn_classification(x, [3], [1], 4, 2),
                     lambda: dilated_rnn.dRNN(dilated_rnn.BasicRNNCell(3), x, 2),
                     lambda: dilated_rnn._contruct_cells([3], "GRU")):
            with pytest.raises(ImportError, match=r"graph mode.*drnn-indrnn-tf2\[legacy\].*"
                                                  r"TF_USE_LEGACY_KERAS=1"):
                call()
        assert len(dilated_rnn._rnn_reformat(x, 1, 4)) == 4  # reshapes need no TF1 cells


def test_keras3_cell_refuses_the_tf1_api():
    cell = ind_rnn.IndRNNCell(3)
    with pytest.raises(flavour.KerasFlavourError, match="ind_rnn.legacy.IndRNNCell"):
        cell.zero_state(2, tf.float32)
    with pytest.raises(flavour.KerasFlavourError, match="tf.compat.v1.nn.dynamic_rnn"):
        cell.get_initial_state(inputs=None, batch_size=2, dtype=tf.float32)
    assert cell.get_initial_state(batch_size=2)[0].shape == (2, 3)


def test_keras3_functions_refuse_tf1_cells_by_name():
    class FakeTF1Cell:  # what flavour.is_tf_keras_object looks for: a tf_keras class
        state_size = output_size = 3
    FakeTF1Cell.__module__ = "tf_keras.src.layers.rnn.legacy_cells"
    with pytest.raises(flavour.KerasFlavourError, match="FakeTF1Cell.*outside graph mode"):
        dilated_rnn.dRNN(FakeTF1Cell(), np.zeros((2, 4, 1), "float32"), 2)


# -- graph mode under tf-keras -----------------------------------------------
def test_original_names_are_the_tf1_cell(graph):
    assert graph["flavour"] == {"keras_flavour": "tf_keras", "top_level_is_legacy": True,
                                "module_path_is_legacy": True,
                                "fast_layer_cell_is_keras3": True}


def test_golden_cases_through_the_original_module_path(graph):
    assert graph["golden"]["cell_class"] == "ind_rnn.legacy.IndRNNCell"
    for case in graph["golden"]["cases"]:
        # x = [1, 0, 0, 0] through an all-ones kernel adds 1; u * 2 with
        # u = [-3, -2, 1, 3] (given, or bounded into [1, 3] in magnitude).
        assert case["output"] == case["state"] == [[-5.0, -3.0, 3.0, 7.0]]
        assert case["variables"] == ["root/ind_rnn_cell/input_kernel",
                                     "root/ind_rnn_cell/recurrent_kernel",
                                     "root/ind_rnn_cell/bias"]


def test_static_and_bidirectional_rnn(graph):
    found = graph["static_bidirectional"]
    assert found["variables"] == sorted(
        f"{scope}/ind_rnn_cell/{name}"
        for scope in ("static", "bidirectional_rnn/fw", "bidirectional_rnn/bw")
        for name in ("input_kernel", "recurrent_kernel", "bias"))
    for key in ("static_error", "forward_error", "backward_error"):
        assert found[key] < 1e-5, key


def test_adding_problem_program_is_solved(graph):
    found = graph["adding"]
    assert found["history"][-1] < 0.01, found["history"]
    assert found["history"][0] > found["history"][-1]
    assert found["variables"] == sorted(
        ["global_step", "softmax_weight", "softmax_bias"]
        + [f"rnn/multi_rnn_cell/cell_{k}/ind_rnn_cell/{name}" for k in (0, 1)
           for name in ("input_kernel", "recurrent_kernel", "bias")])


def test_dilated_rnn_demo_graph_learns_digits(graph):
    history = graph["digits"]["history"]
    (first_cost, first_accuracy), (last_cost, last_accuracy) = history[0], history[-1]
    assert last_cost < 0.6 * first_cost, history
    assert last_accuracy > 0.6 and first_accuracy < 0.3, history  # 10 classes
    assert graph["digits"]["variables"] == sorted(
        ["global_step", "Variable", "Variable_1"]
        + [f"multi_dRNN_dilation_{d}/basic_rnn_cell/{name}" for d in (1, 2, 4, 8, 16, 32)
           for name in ("kernel", "bias")])


def test_list_api_under_the_original_paths(graph):
    found = graph["list_api"]
    assert all(found["top_level_is_original"])
    assert found["cell_classes"] == ["tf_keras.src.layers.rnn.legacy_cells.BasicRNNCell"] * 2
    assert found["lengths"] == [7, 7, 7, 7]
    assert found["variables"] == sorted(
        [f"{scope}/basic_rnn_cell/{name}" for scope in
         ("default", "multi_dRNN_dilation_1", "multi_dRNN_dilation_2", "top")
         for name in ("kernel", "bias")])
    for key in ("reformat_error", "drnn_error", "multi_error", "top_level_error"):
        assert found[key] < 1e-5, key


def test_keras3_cells_in_graph_mode_are_refused(graph):
    errors = graph["graph_errors"]
    _assert_unsupported(errors["keras3_cell_in_dRNN"], "dilated_rnn.cells.BasicRNNCell",
                        "graph mode", "tf.compat.v1.nn.rnn_cell.BasicRNNCell")
    _assert_unsupported(errors["keras3_indrnn_in_multi_dRNN"],
                        "ind_rnn.keras_cell.IndRNNCell", "ind_rnn.legacy.IndRNNCell")
    _assert_unsupported(errors["keras3_cell_in_dynamic_rnn"],
                        "tf.compat.v1.nn.dynamic_rnn", "ind_rnn.legacy.IndRNNCell")


def test_every_step_one_snippet_runs(graph):
    with open(migration_support.GUIDE, encoding="utf-8") as guide:
        count = len(re.findall(r"^```python step1\n", guide.read(), re.M))
    assert count == len(graph["step1"]) >= 3
    for block in graph["step1"]:
        assert block["first_lines"][0].startswith(
            "import tensorflow.compat.v1 as tf; tf.disable_v2_behavior()")
        assert re.match(r"from (ind_rnn\.ind_rnn_cell|dilated_rnn\.(drnn|classification_models))"
                        r" import ", block["first_lines"][1]), block["first_lines"]
        assert block["variables"], "the snippet built no graph"


# -- tf-keras, eager --------------------------------------------------------
def test_tf_keras_rnn_trains_saves_and_loads(tf_keras):
    found = tf_keras["tf_keras_fit"]
    assert found["loss"][-1] < 0.5 * found["loss"][0], found["loss"]
    assert found["hand_error"] < 1e-5
    assert found["weights"][:3] == ["ind_rnn_cell/input_kernel:0",
                                    "ind_rnn_cell/recurrent_kernel:0", "ind_rnn_cell/bias:0"]
    for extension in ("keras", "h5"):
        assert found[f"{extension}_error"] < 1e-6
        assert found[f"{extension}_cell"] == "IndRNNCell"
        assert found[f"{extension}_max_abs"] == 1.0


def test_unsupported_combinations_under_tf_keras(tf_keras):
    errors = tf_keras["tf_keras_errors"]
    _assert_unsupported(errors["keras3_cell_in_tf_keras_rnn"], "ind_rnn.keras_cell.IndRNNCell",
                        "tf.keras.layers.RNN", "ind_rnn.legacy.IndRNNCell")
    # IndRNN.call checks its inputs first (flavour.check_keras3_layer_inputs).
    _assert_unsupported(errors["keras3_indrnn_layer_on_tf_keras_input"], "`ind_rnn.IndRNN`",
                        "tf-keras tensor", "tf.keras.layers.RNN(ind_rnn.IndRNNCell(...))")
    for key in ("tf_keras_cell_in_keras3_rnn", "tf_keras_cell_in_keras3_model_fit"):
        _assert_unsupported(errors[key], "ind_rnn.legacy.IndRNNCell", "inside a Keras 3 layer",
                            "ind_rnn.keras_cell.IndRNNCell")
    for key, function in (("drnn_classification_on_tf_keras_input", "drnn_classification"),
                          ("multi_drnn_on_tf_keras_input", "multi_dRNN_with_dilations")):
        _assert_unsupported(errors[key], function, "tf-keras tensor", "keras.Input",
                            "graph mode")
    _assert_unsupported(errors["tf1_cell_in_eager_drnn"], "BasicRNNCell",
                        "outside graph mode", "dilated_rnn.BasicRNNCell")
    _assert_unsupported(errors["check_indrnn_layer_inputs"], "`ind_rnn.IndRNN`",
                        "tf.keras.layers.RNN(ind_rnn.IndRNNCell(...))")
    _assert_unsupported(errors["check_dilated_rnn_layer_inputs"], "`dilated_rnn.DilatedRNN`",
                        "graph mode", "keras.Input")
    assert errors["check_keras3_inputs_pass"] is None
    # tf-keras' own check, before our code runs: it names the layer, not the fix.
    assert errors["keras3_indrnn_in_tf_keras_sequential"].startswith(
        "TypeError: The added layer must be an instance of class Layer")
    assert errors["keras3_throughout"] is None


# -- graph mode without tf-keras ----------------------------------------------
def test_graph_mode_without_tf_keras_says_what_to_install_and_set(keras3_graph):
    assert keras3_graph["keras_flavour"] == "keras_3"
    assert keras3_graph["module_path_is_keras3"] and keras3_graph["top_level_is_keras3"]
    for key in ("drnn_classification", "top_level_drnn_classification", "dRNN",
                "multi_dRNN_with_dilations", "_contruct_cells"):
        text = keras3_graph[key]
        assert text.startswith("ImportError: `dilated_rnn."), text
        for phrase in ("graph mode", "drnn-indrnn-tf2[legacy]", "TF_USE_LEGACY_KERAS=1",
                       "TF_USE_LEGACY_KERAS=None"):
            assert phrase in text, (phrase, text)
    assert keras3_graph["import_legacy"].startswith("ImportError: ")
    assert "TF_USE_LEGACY_KERAS=1" in keras3_graph["import_legacy"]
    assert keras3_graph["rnn_reformat_length"] == 6  # plain reshapes need no TF1 cells
