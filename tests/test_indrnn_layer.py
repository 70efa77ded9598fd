"""The fast IndRNN layer against NumPy and against keras.layers.RNN(IndRNNCell)."""
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from ind_rnn import IndRNN, IndRNNCell, recurrence
from tests import indrnn_numpy_reference as reference

UNITS, FEATURES, STEPS, BATCH = 6, 3, 11, 4
IMPLEMENTATIONS = ["native", "xla", "tf"]
# The native kernels project inputs of at most MAX_DEPTH_PROJECTED_IN_KERNEL
# features inside the recurrence, wider ones before it: both paths are run.
WIDE_FEATURES = 20
IMPLEMENTATIONS_AND_WIDTHS = [
    pytest.param("native", FEATURES, id="native-projected-in-kernel"),
    pytest.param("native", WIDE_FEATURES, id="native-projections-precomputed"),
    pytest.param("xla", FEATURES, id="xla"),
    pytest.param("tf", FEATURES, id="tf"),
]


def test_widths_cover_both_native_input_paths():
    assert FEATURES <= recurrence.MAX_DEPTH_PROJECTED_IN_KERNEL < WIDE_FEATURES


def _random_init(seed):
    return dict(
        recurrent_kernel_initializer=keras.initializers.RandomUniform(-1.3, 1.3, seed=seed),
        input_kernel_initializer=keras.initializers.RandomNormal(0.0, 0.6, seed=seed + 1),
        bias_initializer=keras.initializers.RandomNormal(0.0, 0.2, seed=seed + 2))


def _mask(batch=BATCH, steps=STEPS):
    mask = np.ones((batch, steps), bool)
    mask[1, 7:] = False    # right padding
    mask[2, :3] = False    # left padding
    mask[3, [2, 5, 6]] = False  # holes
    return mask


def _pair(activation=None, seed=0, min_abs=0.1, max_abs=1.2, features=FEATURES,
          **layer_kwargs):
    """A fast layer and a keras.layers.RNN(IndRNNCell) with the same weights."""
    fast = IndRNN(UNITS, min_abs, max_abs, activation=activation, **_random_init(seed),
                  **layer_kwargs)
    layer_kwargs.pop("implementation", None)
    slow = keras.layers.RNN(IndRNNCell(UNITS, min_abs, max_abs, activation=activation),
                            **layer_kwargs)
    fast.build((None, None, features))
    slow.build((None, None, features))
    slow.set_weights(fast.get_weights())
    return fast, slow


def _outputs_and_grads(layer, x, weights_of, **call_kwargs):
    """Outputs, and gradients w.r.t. the weights, the initial state and `x`."""
    initial_state = call_kwargs.get("initial_state")
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        if initial_state is not None:
            tape.watch(initial_state)
        result = layer(x, **call_kwargs)
        outputs = list(result) if isinstance(result, (list, tuple)) else [result]
        # A loss that weighs every unit differently, so no gradient is trivial.
        loss = sum(tf.reduce_sum(o * np.linspace(-1, 2, o.shape[-1]).astype("float32"))
                   for o in outputs)
    sources = list(weights_of.trainable_weights) + [x] + (
        [initial_state] if initial_state is not None else [])
    return [o.numpy() for o in outputs], [g.numpy() for g in tape.gradient(loss, sources)]


@pytest.mark.parametrize("implementation, features", IMPLEMENTATIONS_AND_WIDTHS)
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_forward_and_gradients_match_numpy(implementation, features, activation, rng):
    x = tf.constant(rng.randn(BATCH, STEPS, features).astype("float32"))
    h0 = rng.randn(BATCH, UNITS).astype("float32")
    layer = IndRNN(UNITS, 0.1, 1.2, activation=activation, return_sequences=True,
                   implementation=implementation, **_random_init(7))
    upstream = rng.randn(BATCH, STEPS, UNITS).astype("float32")
    initial_state = tf.constant(h0)
    with tf.GradientTape() as tape:
        tape.watch([initial_state, x])
        outputs = layer(x, initial_state=initial_state)
        loss = tf.reduce_sum(outputs * upstream)
    grads = tape.gradient(loss, layer.trainable_weights + [initial_state, x])

    x = x.numpy()
    kernel, recurrent, bias = [w.astype(np.float64) for w in layer.get_weights()]
    states, _ = reference.forward(x, kernel, recurrent, bias, h0, activation, 0.1, 1.2)
    expected = reference.backward(upstream, x, kernel, recurrent, bias, h0, activation, 0.1, 1.2)
    np.testing.assert_allclose(outputs.numpy(), states, rtol=1e-5, atol=1e-5)
    for got, name in zip(grads, ["input_kernel", "recurrent_kernel", "bias", "h0", "inputs"]):
        np.testing.assert_allclose(got.numpy(), expected[name], rtol=1e-4, atol=1e-4,
                                   err_msg=name)


@pytest.mark.parametrize("implementation, features", IMPLEMENTATIONS_AND_WIDTHS)
def test_masked_gradients_match_numpy(implementation, features, rng):
    x = tf.constant(rng.randn(BATCH, STEPS, features).astype("float32"))
    mask = _mask()
    layer = IndRNN(UNITS, 0, 1.2, return_state=True, implementation=implementation, **_random_init(3))
    upstream = rng.randn(BATCH, UNITS).astype("float32")
    with tf.GradientTape() as tape:
        tape.watch(x)
        _, final_state = layer(x, mask=mask)
        loss = tf.reduce_sum(final_state * upstream)
    grads = tape.gradient(loss, layer.trainable_weights + [x])
    x = x.numpy()
    kernel, recurrent, bias = [w.astype(np.float64) for w in layer.get_weights()]
    grad_states = np.zeros((BATCH, STEPS, UNITS))
    grad_states[:, -1] = upstream
    states, _ = reference.forward(x, kernel, recurrent, bias, np.zeros((BATCH, UNITS)),
                                  "relu", 0, 1.2, mask)
    expected = reference.backward(grad_states, x, kernel, recurrent, bias,
                                  np.zeros((BATCH, UNITS)), "relu", 0, 1.2, mask)
    np.testing.assert_allclose(final_state.numpy(), states[:, -1], rtol=1e-5, atol=1e-5)
    for got, name in zip(grads, ["input_kernel", "recurrent_kernel", "bias", "inputs"]):
        np.testing.assert_allclose(got.numpy(), expected[name], rtol=1e-4, atol=1e-4,
                                   err_msg=name)


CASES = {
    "last": dict(),
    "sequences": dict(return_sequences=True),
    "state": dict(return_state=True),
    "backwards": dict(go_backwards=True, return_sequences=True, return_state=True),
    "zero_output": dict(return_sequences=True, zero_output_for_mask=True),
}


@pytest.mark.parametrize("implementation, features", IMPLEMENTATIONS_AND_WIDTHS)
@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
@pytest.mark.parametrize("case", list(CASES))
def test_fast_layer_equals_keras_rnn_of_the_cell(case, masked, implementation, features, rng):
    fast, slow = _pair(activation="tanh" if case == "state" else None, implementation=implementation,
                       features=features, **CASES[case])
    x = rng.randn(BATCH, STEPS, features).astype("float32")
    kwargs = {"initial_state": tf.constant(rng.randn(BATCH, UNITS).astype("float32"))}
    if masked:
        kwargs["mask"] = _mask()
    fast_out, fast_grads = _outputs_and_grads(fast, x, fast, **kwargs)
    slow_out, slow_grads = _outputs_and_grads(slow, x, slow, **kwargs)
    assert len(fast_out) == len(slow_out)
    for got, want in zip(fast_out, slow_out):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    for got, want in zip(fast_grads, slow_grads):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_unknown_time_length_and_mask_from_embedding(rng):
    inputs = keras.Input((None,), dtype="int32")
    embedded = keras.layers.Embedding(10, FEATURES, mask_zero=True)(inputs)
    fast = IndRNN(UNITS, recurrent_max_abs=1.0, **_random_init(1))
    model = keras.Model(inputs, fast(embedded))
    tokens = rng.randint(1, 10, size=(BATCH, 9))
    padded = np.concatenate([tokens, np.zeros((BATCH, 4), int)], axis=1)
    # Padding must not change the output: the last output is the last valid step's.
    np.testing.assert_allclose(model(padded).numpy(), model(tokens).numpy(), rtol=1e-6, atol=1e-6)
    assert model(rng.randint(1, 10, size=(2, 30))).shape == (2, UNITS)


def test_bidirectional_matches_keras_rnn(rng):
    fast = keras.layers.Bidirectional(IndRNN(UNITS, 0, 1.1, return_sequences=True, **_random_init(2)))
    slow = keras.layers.Bidirectional(
        keras.layers.RNN(IndRNNCell(UNITS, 0, 1.1), return_sequences=True))
    x = rng.randn(BATCH, STEPS, FEATURES).astype("float32")
    fast(x), slow(x)
    slow.set_weights(fast.get_weights())
    for mask in (None, _mask()):
        np.testing.assert_allclose(fast(x, mask=mask).numpy(), slow(x, mask=mask).numpy(),
                                   rtol=1e-5, atol=1e-5)


def test_stateful_carries_state_between_batches(rng):
    x = rng.randn(2, 12, FEATURES).astype("float32")
    stateful = IndRNN(UNITS, 0, 1.1, stateful=True, return_sequences=True, **_random_init(4))
    whole = IndRNN(UNITS, 0, 1.1, return_sequences=True, **_random_init(4))
    first, second = stateful(x[:, :5]).numpy(), stateful(x[:, 5:]).numpy()
    np.testing.assert_allclose(np.concatenate([first, second], 1), whole(x).numpy(),
                               rtol=1e-5, atol=1e-6)
    stateful.reset_state()
    np.testing.assert_allclose(stateful(x[:, :5]).numpy(), first, rtol=1e-6)


def test_dropout_mask_is_shared_over_time():
    sequences = IndRNN(64, recurrent_max_abs=1.0, dropout=0.5, seed=1, return_sequences=True,
                       recurrent_kernel_initializer="zeros", input_kernel_initializer="identity")
    x = np.ones((3, 7, 64), "float32")
    outputs = sequences(x, training=True).numpy()
    # u == 0 and constant inputs: every step must see the same dropped inputs.
    np.testing.assert_allclose(outputs, np.broadcast_to(outputs[:, :1], outputs.shape))
    dropped = (outputs[:, 0] == 0).mean()
    assert 0.3 < dropped < 0.7, dropped  # about half the inputs dropped, the others scaled
    np.testing.assert_allclose(outputs[:, 0][outputs[:, 0] > 0], 2.0, rtol=1e-6)
    np.testing.assert_allclose(sequences(x, training=False).numpy(), 1.0)


def test_fit_learns_and_bounds_hold(rng):
    steps = 30
    x = rng.rand(256, steps, 2).astype("float32")
    y = x[:, :, 0].mean(1, keepdims=True).astype("float32")
    model = keras.Sequential([keras.Input((steps, 2)),
                              IndRNN(16, recurrent_max_abs=2 ** (1 / steps)),
                              keras.layers.Dense(1)])
    model.compile(keras.optimizers.Adam(0.01), "mse")
    first = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=15, batch_size=32, verbose=0)
    assert model.evaluate(x, y, verbose=0) < 0.5 * first
    used = model.layers[0].cell.effective_recurrent_weight().numpy()
    assert np.abs(used).max() <= 2 ** (1 / steps) + 1e-7


def test_save_and_load_round_trip(tmp_path, rng):
    model = keras.Sequential([
        keras.Input((None, FEATURES)),
        IndRNN(UNITS, 0.05, 1.3, keras.initializers.RandomUniform(0, 1.3, seed=1),
               keras.initializers.HeNormal(seed=2), "tanh", return_sequences=True,
               input_kernel_regularizer=keras.regularizers.L2(1e-3), dropout=0.1),
        keras.layers.RNN(IndRNNCell(4, recurrent_max_abs=1.0)),
        keras.layers.Dense(2)])
    x = rng.randn(2, 8, FEATURES).astype("float32")
    path = str(tmp_path / "indrnn.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), rtol=1e-6)
    assert loaded.layers[0].get_config() == model.layers[0].get_config()
    assert isinstance(loaded.layers[0].recurrent_kernel_initializer, keras.initializers.RandomUniform)


def test_mixed_precision_policy(rng):
    keras.mixed_precision.set_global_policy("mixed_float16")
    layer = IndRNN(UNITS, 0, 1.1, return_sequences=True, **_random_init(5))
    x = rng.randn(BATCH, STEPS, FEATURES).astype("float32")
    with tf.GradientTape() as tape:
        outputs = layer(x)
        loss = tf.reduce_sum(tf.cast(outputs, "float32"))
    grads = tape.gradient(loss, layer.trainable_weights)
    assert outputs.dtype == tf.float16
    assert all(w.dtype == "float32" for w in layer.weights)
    assert all(g.dtype == tf.float32 and np.all(np.isfinite(g.numpy())) for g in grads)
    reference_layer = IndRNN(UNITS, 0, 1.1, return_sequences=True, dtype="float32")
    reference_layer.build(x.shape)
    reference_layer.set_weights(layer.get_weights())
    np.testing.assert_allclose(outputs.numpy().astype("float32"), reference_layer(x).numpy(),
                               rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("kwargs, error, words", [
    ({"units": 0}, ValueError, "num_units"),
    ({"units": 4, "recurrent_max_abs": -1.0}, ValueError, "recurrent_max_abs"),
    ({"units": 4, "activation": "nope"}, ValueError, "activation"),
    ({"units": 4, "implementation": "cuda"}, ValueError, "implementation"),
])
def test_bad_layer_arguments(kwargs, error, words):
    with pytest.raises(error, match=words):
        IndRNN(**kwargs)


def test_bad_input_shapes():
    with pytest.raises(ValueError, match="rank 3"):
        IndRNN(3)(np.ones((2, 5), "float32"))
    with pytest.raises(ValueError, match="known last"):
        IndRNN(3).build((None, None, None))


@pytest.mark.parametrize("dtype", ["int32", "int64", "bool"])
def test_integer_inputs_are_cast_to_the_compute_dtype(dtype):
    """As Keras' own layers (Dense, SimpleRNN) take them."""
    x = (np.arange(2 * 5 * 3).reshape(2, 5, 3) % 3).astype(dtype)
    for implementation in IMPLEMENTATIONS:
        layer = IndRNN(4, recurrent_max_abs=1.0, return_sequences=True,
                       implementation=implementation)
        outputs = layer(x)
        assert outputs.dtype == tf.float32
        np.testing.assert_allclose(outputs.numpy(), layer(x.astype("float32")).numpy())


MIRRORED_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np, tensorflow as tf, keras
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from ind_rnn import IndRNN

    def run(strategy):
        keras.utils.set_random_seed(0)
        with strategy.scope():
            model = keras.Sequential([keras.Input((12, 2)), IndRNN(8, recurrent_max_abs=1.0,
                recurrent_kernel_initializer=keras.initializers.RandomUniform(0, 1, seed=1)),
                keras.layers.Dense(1)])
            model.compile(keras.optimizers.SGD(0.1), "mse")
        rng = np.random.RandomState(0)
        x, y = rng.rand(16, 12, 2).astype("float32"), rng.rand(16, 1).astype("float32")
        history = model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
        return history.history["loss"], [w.tolist() for w in model.get_weights()]

    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    print(json.dumps({"devices": len(devices),
                      "one": run(tf.distribute.OneDeviceStrategy(devices[0])),
                      "mirrored": run(tf.distribute.MirroredStrategy(devices))}))
""")


def test_mirrored_strategy_on_two_logical_cpus_matches_one_device():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT], capture_output=True,
                            text=True, env=env, cwd=root, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    import json
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["devices"] == 2
    one_loss, one_weights = report["one"]
    mirrored_loss, mirrored_weights = report["mirrored"]
    np.testing.assert_allclose(mirrored_loss, one_loss, rtol=1e-5)
    for got, want in zip(mirrored_weights, one_weights):
        np.testing.assert_allclose(np.array(got), np.array(want), rtol=1e-5, atol=1e-6)


def test_auto_picks_the_native_kernels_on_cpu_when_a_compiler_exists():
    import shutil
    from ind_rnn import native
    from ind_rnn.recurrence import resolve_implementation
    if shutil.which("g++") is None:
        pytest.skip("no g++: the native kernels cannot be built here")
    assert native.load() is not None, "the C++ kernels failed to build (see the log warning)"
    projected = tf.zeros([2, 3, 4])
    assert resolve_implementation("auto", projected, keras.activations.relu) == "native"
    # float16 and activations without a kernel fall back to a loop.
    assert resolve_implementation("auto", tf.cast(projected, tf.float16),
                                  keras.activations.relu) in ("xla", "tf")
    assert resolve_implementation("auto", projected, keras.activations.gelu) in ("xla", "tf")
    with pytest.raises(ValueError, match="implementation"):
        resolve_implementation("cudnn", projected, keras.activations.relu)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_gelu_activation_without_a_native_kernel_matches_keras_rnn(implementation, rng):
    fast, slow = _pair(activation="gelu", implementation=implementation, return_sequences=True)
    x = rng.randn(BATCH, STEPS, FEATURES).astype("float32")
    fast_out, fast_grads = _outputs_and_grads(fast, x, fast)
    slow_out, slow_grads = _outputs_and_grads(slow, x, slow)
    np.testing.assert_allclose(fast_out[0], slow_out[0], rtol=1e-5, atol=1e-5)
    for got, want in zip(fast_grads, slow_grads):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("implementation, features", IMPLEMENTATIONS_AND_WIDTHS)
def test_float64_layer_matches_numpy_closely(implementation, features, rng):
    x = rng.randn(BATCH, STEPS, features)
    layer = IndRNN(UNITS, 0, 1.2, return_sequences=True, implementation=implementation,
                   dtype="float64", **_random_init(11))
    outputs = layer(x).numpy()
    kernel, recurrent, bias = layer.get_weights()
    states, _ = reference.forward(x, kernel, recurrent, bias, np.zeros((BATCH, UNITS)),
                                  "relu", 0, 1.2)
    assert outputs.dtype == np.float64
    np.testing.assert_allclose(outputs, states, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("implementation, features", IMPLEMENTATIONS_AND_WIDTHS)
@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
def test_project_and_scan_matches_numpy(implementation, features, masked, rng):
    """The function the layer calls, on its own, in float64, gradients included."""
    x = tf.constant(rng.randn(BATCH, STEPS, features))
    kernel = tf.constant(rng.randn(features, UNITS) * 0.5)
    bias = tf.constant(rng.randn(UNITS) * 0.2)
    weight = tf.constant(rng.uniform(-1.1, 1.1, UNITS))
    h0 = tf.constant(rng.randn(BATCH, UNITS))
    mask = _mask() if masked else None
    upstream = rng.randn(BATCH, STEPS, UNITS)
    with tf.GradientTape() as tape:
        tape.watch([x, kernel, bias, weight, h0])
        states, last_state = recurrence.project_and_scan(
            x, kernel, bias, weight, h0, keras.activations.relu, mask=mask,
            implementation=implementation)
        loss = tf.reduce_sum(states * upstream)
    grads = tape.gradient(loss, [x, kernel, bias, weight, h0])

    args = [a.numpy() for a in (x, kernel, weight, bias, h0)]
    expected_states, _ = reference.forward(*args, "relu", 0.0, None, mask)
    expected = reference.backward(upstream, *args, "relu", 0.0, None, mask)
    np.testing.assert_allclose(states.numpy(), expected_states, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(last_state.numpy(), expected_states[:, -1], rtol=1e-10)
    for got, name in zip(grads, ["inputs", "input_kernel", "bias", "recurrent_kernel", "h0"]):
        np.testing.assert_allclose(got.numpy(), expected[name], rtol=1e-9, atol=1e-9,
                                   err_msg=name)


@pytest.mark.parametrize("kernel_shape, bias_shape, argument", [
    ((4, UNITS), (UNITS,), "input_kernel"),   # depth 4, inputs have 3
    ((FEATURES, UNITS), (UNITS + 1,), "bias"),
])
def test_project_and_scan_refuses_mismatched_shapes(kernel_shape, bias_shape, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        recurrence.project_and_scan(tf.zeros([2, 5, FEATURES]), tf.zeros(kernel_shape),
                                    tf.zeros(bias_shape), tf.zeros([UNITS]),
                                    tf.zeros([2, UNITS]), keras.activations.relu)
    with pytest.raises(ValueError, match="`inputs`"):
        recurrence.project_and_scan(tf.zeros([2, FEATURES]), tf.zeros((FEATURES, UNITS)),
                                    tf.zeros((UNITS,)), tf.zeros([UNITS]),
                                    tf.zeros([2, UNITS]), keras.activations.relu)


@pytest.mark.parametrize("value", ["no", 0, None, 1.0])
def test_scans_refuse_a_return_states_that_is_not_a_bool(value):
    # 0 or None would silently mean False; the check names the argument instead.
    arguments = (tf.zeros([2, 5, UNITS]), tf.zeros([UNITS]), tf.zeros([2, UNITS]),
                 keras.activations.relu)
    with pytest.raises(TypeError, match="`return_states`.*True or False"):
        recurrence.indrnn_scan(*arguments, return_states=value)
    with pytest.raises(TypeError, match="`return_states`.*True or False"):
        recurrence.project_and_scan(tf.zeros([2, 5, FEATURES]), tf.zeros((FEATURES, UNITS)),
                                    tf.zeros((UNITS,)), *arguments[1:], return_states=value)


def test_scans_take_numpy_bools_for_return_states():
    states, last_state = recurrence.indrnn_scan(
        tf.ones([2, 5, UNITS]), tf.zeros([UNITS]), tf.zeros([2, UNITS]),
        keras.activations.relu, implementation="tf", return_states=np.bool_(False))
    assert states is None and last_state.shape == (2, UNITS)
