"""Keras 3 and tf-keras objects combined, and graph mode without tf-keras.

Run by tests/test_migration_original_paths.py in subprocesses:

    python tests/migration_combinations.py GROUP OUT.json

* `tf_keras` (TF_USE_LEGACY_KERAS=1, eager): `tf.keras.Sequential` with
  `RNN(IndRNNCell)` from the original module path, trained with `fit`,
  checked against a NumPy loop, saved and loaded (.keras and HDF5), and the
  error of every combination that cannot work;
* `keras3_graph` (no TF_USE_LEGACY_KERAS): graph mode without tf-keras.

Every case writes what it observed into OUT.json; the test module asserts.
"""
import os
import sys

import numpy as np

if __name__ == "__main__":  # run as a script from anywhere in the repository
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.migration_original_paths import error_text, write_results  # noqa: E402

RESULTS = {}


# --------------------------------------------------------------------------
# tf_keras: tf.keras is tf-keras, eager
# --------------------------------------------------------------------------
def tf_keras_group(directory):
    import tensorflow as tf

    import ind_rnn
    from ind_rnn.ind_rnn_cell import IndRNNCell
    rng = np.random.RandomState(7)
    x = rng.uniform(-1, 1, (64, 8, 2)).astype(np.float32)
    y = (x[:, :, 0].sum(1, keepdims=True) / 4.0).astype(np.float32)
    model = tf.keras.Sequential([
        tf.keras.Input((8, 2)),
        tf.keras.layers.RNN(IndRNNCell(16, recurrent_max_abs=1.0, activation="tanh",
                                       input_kernel_initializer="glorot_uniform")),
        tf.keras.layers.Dense(1),
    ])
    model.compile(tf.keras.optimizers.Adam(0.01), "mse")
    history = model.fit(x, y, epochs=15, batch_size=32, verbose=0).history["loss"]
    predicted = model.predict(x, verbose=0)
    input_kernel, recurrent_kernel, bias, dense_kernel, dense_bias = model.get_weights()
    h = np.zeros((len(x), 16))
    for t in range(x.shape[1]):  # by hand: tanh IndRNN, |u| <= 1, then the Dense layer
        h = np.tanh(x[:, t] @ input_kernel + np.clip(recurrent_kernel, -1, 1) * h + bias)
    found = {"loss": history, "weights": [w.name for w in model.weights],
             "hand_error": float(np.abs(predicted - (h @ dense_kernel + dense_bias)).max())}
    for extension in ("keras", "h5"):
        path = os.path.join(directory, f"indrnn.{extension}")
        model.save(path)
        restored = tf.keras.models.load_model(path)
        found[f"{extension}_error"] = float(np.abs(restored.predict(x, verbose=0)
                                                   - predicted).max())
        found[f"{extension}_cell"] = type(restored.layers[0].cell).__name__
        found[f"{extension}_max_abs"] = restored.layers[0].cell.get_config()["recurrent_max_abs"]
    RESULTS["tf_keras_fit"] = found
    RESULTS["tf_keras_errors"] = tf_keras_errors(tf, ind_rnn, x)


def tf_keras_errors(tf, ind_rnn, x):
    """What each combination of a Keras 3 object with a tf-keras one says."""
    import keras

    import dilated_rnn
    from ind_rnn import flavour
    from ind_rnn.keras_cell import IndRNNCell as Keras3IndRNNCell
    from ind_rnn.legacy import IndRNNCell as TFKerasIndRNNCell
    return {
        "keras3_cell_in_tf_keras_rnn": error_text(
            lambda: tf.keras.layers.RNN(Keras3IndRNNCell(3))(x)),
        "keras3_indrnn_layer_on_tf_keras_input": error_text(
            lambda: ind_rnn.IndRNN(3)(tf.keras.Input((8, 2)))),
        "tf_keras_cell_in_keras3_rnn": error_text(
            lambda: keras.layers.RNN(TFKerasIndRNNCell(3))(x)),
        "tf_keras_cell_in_keras3_model_fit": error_text(
            lambda: _fit_keras3_model_with(keras, TFKerasIndRNNCell(3), x)),
        "drnn_classification_on_tf_keras_input": error_text(
            lambda: dilated_rnn.drnn_classification(tf.keras.Input((8, 2)), [3], [1], 8, 2, 2)),
        "multi_drnn_on_tf_keras_input": error_text(
            lambda: dilated_rnn.multi_dRNN_with_dilations(
                dilated_rnn._contruct_cells([3], "GRU"), tf.keras.Input((8, 2)), [2])),
        "tf1_cell_in_eager_drnn": error_text(
            lambda: dilated_rnn.dRNN(tf.compat.v1.nn.rnn_cell.BasicRNNCell(3), x, 2)),
        # The check for the Keras 3 layers' call (ind_rnn.flavour), on the layers:
        "check_indrnn_layer_inputs": error_text(
            lambda: flavour.check_keras3_layer_inputs(ind_rnn.IndRNN(3),
                                                      tf.keras.Input((8, 2)))),
        "check_dilated_rnn_layer_inputs": error_text(
            lambda: flavour.check_keras3_layer_inputs(dilated_rnn.DilatedRNN([3], [1]),
                                                      [tf.keras.Input((8, 2))])),
        "check_keras3_inputs_pass": error_text(
            lambda: flavour.check_keras3_layer_inputs(ind_rnn.IndRNN(3), keras.Input((8, 2)))),
        # Raised by tf-keras itself, before any code of ours runs:
        "keras3_indrnn_in_tf_keras_sequential": error_text(
            lambda: tf.keras.Sequential([tf.keras.Input((8, 2)), ind_rnn.IndRNN(3)])),
        # Keras 3 throughout still works in this process:
        "keras3_throughout": error_text(
            lambda: keras.Sequential([keras.Input((8, 2)), ind_rnn.IndRNN(3),
                                      keras.layers.Dense(1)])(x)),
    }


def _fit_keras3_model_with(keras, cell, x):
    inputs = keras.Input((8, 2))
    model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.RNN(cell)(inputs)))
    model.compile("adam", "mse")
    model.fit(x, x[:, 0, :1], epochs=1, verbose=0)


# --------------------------------------------------------------------------
# keras3_graph: graph mode without tf-keras
# --------------------------------------------------------------------------
def keras3_graph_group():
    import tensorflow.compat.v1 as tf
    tf.disable_v2_behavior()
    import dilated_rnn
    import ind_rnn
    from dilated_rnn import classification_models, drnn
    from ind_rnn import ind_rnn_cell, keras_cell
    x = tf.placeholder(tf.float32, [None, 6, 1])
    steps = [tf.placeholder(tf.float32, [None, 1]) for _ in range(6)]
    RESULTS["keras3_graph"] = {
        "keras_flavour": ind_rnn.keras_flavour(),
        "module_path_is_keras3": ind_rnn_cell.IndRNNCell is keras_cell.IndRNNCell,
        "top_level_is_keras3": ind_rnn.IndRNNCell is keras_cell.IndRNNCell,
        "drnn_classification": error_text(
            lambda: classification_models.drnn_classification(x, [3], [1], 6, 2)),
        "top_level_drnn_classification": error_text(
            lambda: dilated_rnn.drnn_classification(x, [3], [1], 6, 2)),
        "dRNN": error_text(lambda: drnn.dRNN(dilated_rnn.BasicRNNCell(3), steps, 2)),
        "multi_dRNN_with_dilations": error_text(
            lambda: drnn.multi_dRNN_with_dilations([dilated_rnn.BasicRNNCell(3)], steps, [2])),
        "_contruct_cells": error_text(
            lambda: classification_models._contruct_cells([3], "RNN")),
        "import_legacy": error_text(lambda: __import__("ind_rnn.legacy")),
        "rnn_reformat_length": len(classification_models._rnn_reformat(x, 1, 6)),
    }


def main(group, out_path):
    groups = {"tf_keras": lambda: tf_keras_group(os.path.dirname(out_path)),
              "keras3_graph": keras3_graph_group}
    if group not in groups:
        raise ValueError(f"Received an invalid value for argument `group`, expected one of "
                         f"{sorted(groups)}, got {group!r}.")
    groups[group]()
    write_results(out_path, RESULTS)


if __name__ == "__main__":
    main(*sys.argv[1:])
