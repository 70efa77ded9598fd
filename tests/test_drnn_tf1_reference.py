"""drnn_classification against the TF1 original built with TensorFlow's own
legacy cells (tests/drnn_tf1_reference.py, run in a subprocess): the same
weights give the same logits (within 1e-5) and the same gradients."""
import importlib.util
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from dilated_rnn import drnn_classification
from tests import drnn_tf1_reference as tf1_reference

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("tf_keras") is None,
    reason="the TF1 reference needs tf-keras (the `test` extra)")

# Our weights of a cell, in order, and the TF1 variable names they come from.
TF1_NAMES = {
    "RNN": ["basic_rnn_cell/kernel", "basic_rnn_cell/bias"],
    "LSTM": ["basic_lstm_cell/kernel", "basic_lstm_cell/bias"],
    "GRU": ["gru_cell/gates/kernel", "gru_cell/gates/bias",
            "gru_cell/candidate/kernel", "gru_cell/candidate/bias"],
}


@pytest.fixture(scope="module")
def tf1_results(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("tf1") / "reference.npz")
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    script = tf1_reference.__file__
    done = subprocess.run([sys.executable, script, path], env=env,
                          capture_output=True, text=True, timeout=900,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(np.load(path))


def _our_model(cell_type, hidden, dilations, n_steps):
    inputs = keras.Input((n_steps, 1))
    logits = drnn_classification(inputs, hidden, dilations, n_steps, 10,
                                 cell_type=cell_type)
    return keras.Model(inputs, logits)


def _tf1_name_of_each_weight(model, cell_type, dilations):
    """Pairs our variables with the TF1 variable names, in order."""
    names = []
    for dilation in dilations:
        layer = model.get_layer("multi_dRNN_dilation_%d" % dilation)
        names += [(weight, "multi_dRNN_dilation_%d/%s:0" % (dilation, name))
                  for weight, name in zip(layer.cells[0].weights,
                                          TF1_NAMES[cell_type])]
    kernel, bias = model.layers[-1].weights
    return names + [(kernel, "Variable:0"), (bias, "Variable_1:0")]


@pytest.mark.parametrize("config", list(tf1_reference.CONFIGS))
def test_same_weights_give_tf1s_logits_and_gradients(tf1_results, config):
    cell_type, hidden, dilations, n_steps = tf1_reference.CONFIGS[config]
    model = _our_model(cell_type, hidden, dilations, n_steps)
    pairs = _tf1_name_of_each_weight(model, cell_type, dilations)
    assert len(pairs) == len([k for k in tf1_results
                              if k.startswith(f"{config}/var/")])
    for weight, name in pairs:
        weight.assign(tf1_results[f"{config}/var/{name}"])

    x = tf1_results[f"{config}/x"]
    with tf.GradientTape() as tape:
        logits = model(x)
        loss = tf.reduce_sum(logits * tf1_results[f"{config}/cotangent"])
    grads = tape.gradient(loss, [weight for weight, _ in pairs])

    # float32 rounding of 300 steps through nine layers, scaled like the
    # gradients' below: 1e-5 of the largest logit (a fixed 1e-5 failed once
    # at 1.4e-5 on a logit of 2.5).
    expected_logits = tf1_results[f"{config}/logits"]
    np.testing.assert_allclose(logits.numpy(), expected_logits, rtol=0,
                               atol=1e-5 * max(np.abs(expected_logits).max(), 1.0))
    for (weight, name), grad in zip(pairs, grads):
        expected = tf1_results[f"{config}/grad/{name}"]
        scale = np.abs(expected).max()
        np.testing.assert_allclose(grad.numpy(), expected, rtol=0,
                                   atol=1e-4 * max(scale, 1.0),
                                   err_msg=name)
