"""SavedModel export (`model.export`) of models running the fast layers.

An exported graph that ran the C++ kernels names their ops, so the loading
process must register them first (`ind_rnn.native.load()`,
`dilated_rnn.native.load()`); one exported with a portable implementation
loads in plain TensorFlow. Each load runs in a fresh Python process, as
serving would.
"""
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import dilated_rnn
from dilated_rnn import native as drnn_native
from ind_rnn import IndRNN
from ind_rnn import native as indrnn_native

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LOAD_AND_RUN = textwrap.dedent("""
    import sys
    import numpy as np
    {registration}
    import tensorflow as tf
    served = tf.saved_model.load(sys.argv[1])
    np.save(sys.argv[3], served.serve(np.load(sys.argv[2])).numpy())
""")


def _serve_in_fresh_process(export_dir, x, tmp_path, registration=""):
    """Loads the SavedModel in a new interpreter and returns its outputs for `x`."""
    inputs, outputs = str(tmp_path / "x.npy"), str(tmp_path / "served.npy")
    np.save(inputs, x)
    script = LOAD_AND_RUN.format(registration=registration)
    result = subprocess.run([sys.executable, "-c", script, export_dir, inputs, outputs],
                            capture_output=True, text=True, cwd=ROOT, timeout=300,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    return result, (np.load(outputs) if result.returncode == 0 else None)


def _indrnn_model(implementation):
    return keras.Sequential([
        keras.Input((None, 2)),
        IndRNN(8, recurrent_max_abs=1.0, return_sequences=True, implementation=implementation),
        IndRNN(8, implementation=implementation),  # 8 inputs: projected by a matmul first
        keras.layers.Dense(1)])


def test_indrnn_export_with_native_kernels_loads_once_they_are_registered(tmp_path):
    if indrnn_native.load() is None:
        pytest.skip("the C++ kernels cannot be built here")
    model = _indrnn_model("native")
    x = np.random.RandomState(0).rand(3, 7, 2).astype("float32")
    export_dir = str(tmp_path / "indrnn_native")
    model.export(export_dir, verbose=False)

    unregistered, _ = _serve_in_fresh_process(export_dir, x, tmp_path)
    assert unregistered.returncode != 0
    assert "IndRNN" in unregistered.stderr and "not registered" in unregistered.stderr

    registered, served = _serve_in_fresh_process(
        export_dir, x, tmp_path, registration="from ind_rnn import native; native.load()")
    assert registered.returncode == 0, registered.stderr[-3000:]
    np.testing.assert_allclose(served, model(x).numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("implementation", ["xla", "tf"])
def test_indrnn_export_with_a_portable_loop_loads_in_plain_tensorflow(implementation, tmp_path):
    model = _indrnn_model(implementation)
    x = np.random.RandomState(1).rand(2, 5, 2).astype("float32")
    export_dir = str(tmp_path / f"indrnn_{implementation}")
    model.export(export_dir, verbose=False)
    result, served = _serve_in_fresh_process(export_dir, x, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ind_rnn" not in result.stderr  # nothing of this package was needed
    np.testing.assert_allclose(served, model(x).numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("implementation", ["native", "xla"])
def test_dilated_rnn_export_loads(implementation, tmp_path):
    if implementation == "native" and drnn_native.load() is None:
        pytest.skip("the C++ kernels cannot be built here")
    model = keras.Sequential([
        keras.Input((12, 1)),
        dilated_rnn.DilatedRNN([5, 6], [1, 4], "GRU", implementation=implementation),
        keras.layers.Dense(3)])
    x = np.random.RandomState(2).rand(2, 12, 1).astype("float32")
    export_dir = str(tmp_path / f"drnn_{implementation}")
    model.export(export_dir, verbose=False)
    registration = ("from dilated_rnn import native; native.load()"
                    if implementation == "native" else "")
    result, served = _serve_in_fresh_process(export_dir, x, tmp_path, registration)
    assert result.returncode == 0, result.stderr[-3000:]
    np.testing.assert_allclose(served, model(x).numpy(), rtol=1e-5, atol=1e-5)
