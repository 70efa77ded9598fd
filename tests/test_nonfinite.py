"""NaN and +-inf: every engine gives the reference's answer, forward and backward.

A NaN that one engine turns into a number hides a diverged model or corrupt
data (issue 11, item 5). On random shapes (seeded), NaN, inf and -inf are put
at random steps and positions of the inputs, the initial states and the
weights; the native, XLA and TF engines of `IndRNN` and of every DilatedRNN
cell must then give what an independent reference gives, values and NaN
positions alike, for the outputs and for the gradients w.r.t. the inputs,
the initial state and every weight:

* IndRNN: the NumPy loops of `tests/indrnn_numpy_reference.py` (whose
  products, `0 * inf` included, are the ones TF's autodiff computes: checked
  against `keras.layers.RNN(IndRNNCell)` below);
* DilatedRNN: TF's autodiff of the plain per-step loops of
  `tests/drnn_reference.py`.

Masked steps follow the masking both packages document (see
`drnn_reference.masked_stack_loop`): the state passes through, the local
derivative is exactly zero, and that zero still enters the products of the
linear parts (so `0 @ W^T` is NaN where W is not finite).

The cotangents have exact zeros (whole late steps, scattered entries), as a
loss on the last output gives: a zero gradient meeting an inf or NaN value
must give NaN, as `0 * inf` does in the reference.
"""
import keras
import numpy as np
import pytest
import tensorflow as tf

from dilated_rnn import BasicLSTMCell, BasicRNNCell, DilatedRNN, GRUCell
from ind_rnn import IndRNN, IndRNNCell, recurrence
from tests import drnn_reference
from tests import indrnn_numpy_reference as indrnn_reference

# NaN arithmetic is the point here: NumPy's warnings about it are expected.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

NONFINITE = (np.nan, np.inf, -np.inf)
SEEDS = range(6)


def _tolerances(dtype, want):
    """Rounding: relative, and absolute at the scale of the array's largest
    finite value (float32 sums of many terms, the weight gradients)."""
    finite = np.abs(want[np.isfinite(want)])
    scale = max(1.0, float(finite.max())) if finite.size else 1.0
    if dtype == np.float64:
        return dict(rtol=1e-9, atol=1e-10 * scale)
    return dict(rtol=2e-4, atol=2e-5 * scale)


def assert_same(got, want, dtype, what):
    """Equal within tolerance, with NaN exactly where the reference has NaN
    (and each inf where it has that inf)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    got_nan, want_nan = np.isnan(got), np.isnan(want)
    if not np.array_equal(got_nan, want_nan):
        only_ours = np.argwhere(got_nan & ~want_nan).tolist()[:8]
        only_reference = np.argwhere(want_nan & ~got_nan).tolist()[:8]
        raise AssertionError(
            f"{what}: NaN positions differ. NaN only in ours at {only_ours}, only in the "
            f"reference's at {only_reference}\nours:\n{got}\nreference:\n{want}")
    np.testing.assert_allclose(got, want, equal_nan=True, err_msg=what,
                               **_tolerances(dtype, want))


def _inject(rng, array, count):
    """Puts `count` values drawn from NaN, inf, -inf at random positions."""
    flat = array.reshape(-1)
    for position in rng.choice(flat.size, size=min(count, flat.size), replace=False):
        flat[position] = NONFINITE[rng.randint(len(NONFINITE))]
    return array


def _random_mask(rng, batch, steps):
    mask = rng.rand(batch, steps) > 0.3
    if steps > 2:
        mask[0, -rng.randint(1, steps):] = False  # padding at the end of a row
    return mask


def _cotangent(rng, shape):
    """Random, with exact zeros: sometimes whole late steps (a loss that
    reads early outputs only), always a few scattered entries."""
    cotangent = rng.randn(*shape)
    steps = shape[1]
    if rng.rand() < 0.5 and steps > 1:
        cotangent[:, rng.randint(1, steps):] = 0.0
    cotangent[rng.rand(*shape) < 0.2] = 0.0
    return cotangent


def _injection_plan(rng, targets):
    """Which targets get non-finite values, and how many: 1 to 3 in all."""
    plan = dict.fromkeys(targets, 0)
    for _ in range(rng.randint(1, 4)):
        plan[targets[rng.randint(len(targets))]] += 1
    return plan


# --------------------------------------------------------------------------
# IndRNN: project_and_scan (what the layer runs) against the NumPy loops.
# --------------------------------------------------------------------------
INDRNN_IMPLEMENTATIONS = ("native", "xla", "tf")


def _indrnn_case(seed):
    """A random problem: shapes, dtype, activation, mask, injected values."""
    rng = np.random.RandomState(1000 + seed)
    batch, steps, units = rng.randint(1, 4), rng.randint(1, 9), rng.randint(1, 10)
    # Both native input paths: projected inside the kernel (<= 4 features) or before it.
    depth = rng.randint(1, 5) if seed % 2 == 0 else rng.randint(5, 8)
    dtype = np.float64 if seed % 3 != 2 else np.float32
    arrays = dict(inputs=rng.randn(batch, steps, depth), input_kernel=rng.randn(depth, units) * 0.5,
                  bias=rng.randn(units) * 0.2, weight=rng.uniform(-1.2, 1.2, units),
                  h0=rng.randn(batch, units))
    plan = _injection_plan(rng, ["inputs", "inputs", "h0", "input_kernel", "bias", "weight"])
    for name, count in plan.items():
        _inject(rng, arrays[name], count)
    arrays = {name: value.astype(dtype) for name, value in arrays.items()}
    mask = _random_mask(rng, batch, steps) if seed % 4 in (1, 2) else None
    activation = ("relu", "tanh")[seed % 2 if seed < 4 else rng.randint(2)]
    return arrays, mask, activation, _cotangent(rng, (batch, steps, units)).astype(dtype), dtype


@pytest.mark.parametrize("implementation", INDRNN_IMPLEMENTATIONS)
@pytest.mark.parametrize("seed", SEEDS)
def test_indrnn_scan_matches_numpy_with_nonfinite_values(seed, implementation):
    arrays, mask, activation, cotangent, dtype = _indrnn_case(seed)
    tensors = {name: tf.constant(value) for name, value in arrays.items()}
    order = ["inputs", "input_kernel", "bias", "weight", "h0"]
    with tf.GradientTape() as tape:
        tape.watch([tensors[name] for name in order])
        states, last_state = recurrence.project_and_scan(
            tensors["inputs"], tensors["input_kernel"], tensors["bias"], tensors["weight"],
            tensors["h0"], keras.activations.get(activation), mask=mask,
            implementation=implementation)
        # The last state's own gradient too (the layer's path without return_sequences).
        loss = tf.reduce_sum(states * cotangent) + tf.reduce_sum(last_state * cotangent[:, -1])
    grads = tape.gradient(loss, [tensors[name] for name in order])

    args = [arrays[name].astype(np.float64) for name in
            ("inputs", "input_kernel", "weight", "bias", "h0")]
    expected_states, _ = indrnn_reference.forward(*args, activation, 0.0, None, mask)
    upstream = cotangent.astype(np.float64).copy()
    upstream[:, -1] *= 2  # the states' cotangent plus the last state's
    expected = indrnn_reference.backward(upstream, *args, activation, 0.0, None, mask)
    with np.errstate(invalid="ignore", over="ignore"):
        assert_same(states.numpy(), expected_states, dtype, "states")
        assert_same(last_state.numpy(), expected_states[:, -1], dtype, "last_state")
        for got, name in zip(grads, ["inputs", "input_kernel", "bias", "recurrent_kernel", "h0"]):
            assert_same(got.numpy(), expected[name], dtype, f"d/d{name}")


@pytest.mark.parametrize("implementation", INDRNN_IMPLEMENTATIONS)
@pytest.mark.parametrize("depth", [2, 6], ids=["projected-in-kernel", "projected-before"])
def test_indrnn_masked_steps_with_nonfinite_values(depth, implementation):
    """A masked step's zero gradient still meets its inputs, the input
    kernel and the carried state in the reference's products: NaN in dL/dW
    from a NaN input there, in dL/dx there from an inf in W, in dL/du from
    a NaN state carried through it (what the masked steps add is seen where
    the valid steps add nothing non-finite: relu, whose derivative at a NaN
    state is 0)."""
    rng = np.random.RandomState(depth)
    batch, steps, units = 3, 7, 5
    arrays = dict(inputs=rng.randn(batch, steps, depth), input_kernel=rng.randn(depth, units) * 0.5,
                  bias=rng.randn(units) * 0.2, weight=rng.uniform(-1.1, 1.1, units),
                  h0=rng.randn(batch, units))
    mask = np.ones((batch, steps), bool)
    mask[0, [2, 5, 6]] = False
    mask[1, 3:] = False
    mask[2, :2] = False
    arrays["inputs"][0, 2, 1] = np.nan  # at a masked step
    arrays["inputs"][1, 5, 0] = np.inf  # at a masked step
    arrays["inputs"][1, 2, 0] = np.nan  # row 1's last valid step: its NaN state is
    arrays["h0"][2, 3] = np.nan         # carried through masked steps, as row 2's h0
    cotangent = rng.randn(batch, steps, units)
    with_inf_kernel = dict(arrays, input_kernel=arrays["input_kernel"].copy())
    with_inf_kernel["input_kernel"][1, 2] = -np.inf
    for case, activation in [(arrays, "relu"), (arrays, "tanh"), (with_inf_kernel, "relu")]:
        tensors = {name: tf.constant(value) for name, value in case.items()}
        order = ["inputs", "input_kernel", "bias", "weight", "h0"]
        with tf.GradientTape() as tape:
            tape.watch([tensors[name] for name in order])
            states, _ = recurrence.project_and_scan(
                tensors["inputs"], tensors["input_kernel"], tensors["bias"], tensors["weight"],
                tensors["h0"], keras.activations.get(activation), mask=mask,
                implementation=implementation)
            loss = tf.reduce_sum(states * cotangent)
        grads = tape.gradient(loss, [tensors[name] for name in order])
        args = [case[name] for name in ("inputs", "input_kernel", "weight", "bias", "h0")]
        expected_states, _ = indrnn_reference.forward(*args, activation, 0.0, None, mask)
        expected = indrnn_reference.backward(cotangent, *args, activation, 0.0, None, mask)
        with np.errstate(invalid="ignore", over="ignore"):
            assert_same(states.numpy(), expected_states, np.float64, "states")
            for got, name in zip(grads, ["inputs", "input_kernel", "bias", "recurrent_kernel",
                                         "h0"]):
                assert_same(got.numpy(), expected[name], np.float64, f"d/d{name}")


def test_indrnn_issue_example_keeps_the_nan():
    """Issue 11: input [1, nan, 1], 3 units, input kernel of ones."""
    x = np.array([[[1.0], [np.nan], [1.0]]], "float32")
    expected = keras.layers.RNN(IndRNNCell(3, input_kernel_initializer="ones"),
                                return_sequences=True)(x).numpy()
    assert np.isnan(expected[0, 1:]).all() and np.isfinite(expected[0, 0]).all()
    for implementation in INDRNN_IMPLEMENTATIONS:
        layer = IndRNN(3, input_kernel_initializer="ones", return_sequences=True,
                       implementation=implementation)
        assert_same(layer(x).numpy(), expected, np.float32, implementation)


@pytest.mark.parametrize("implementation", INDRNN_IMPLEMENTATIONS)
def test_indrnn_layer_matches_keras_rnn_of_the_cell_with_nonfinite_values(implementation):
    """The whole layer (bounded recurrent weight, initial state, last output)
    against TF's autodiff of keras.layers.RNN(IndRNNCell), unmasked: this also
    checks that the NumPy reference's products are TF's."""
    rng = np.random.RandomState(7)
    units, depth, batch, steps = 5, 3, 2, 6
    for trial, (activation, sequences) in enumerate(
            [("relu", True), ("tanh", False), ("relu", False)]):
        fast = IndRNN(units, 0.1, 1.1, activation=activation, return_sequences=sequences,
                      implementation=implementation)
        slow = keras.layers.RNN(IndRNNCell(units, 0.1, 1.1, activation=activation),
                                return_sequences=sequences)
        fast.build((None, None, depth))
        slow.build((None, None, depth))
        weights = [rng.randn(*w.shape).astype("float32") for w in fast.get_weights()]
        _inject(rng, weights[rng.randint(len(weights))], 1)
        fast.set_weights(weights)
        slow.set_weights(weights)
        x = _inject(rng, rng.randn(batch, steps, depth).astype("float32"), rng.randint(3))
        h0 = _inject(rng, rng.randn(batch, units).astype("float32"), rng.randint(2))
        cotangent = _cotangent(rng, (batch, steps, units)).astype("float32")
        cotangent = cotangent if sequences else cotangent[:, 0]
        results = []
        for layer in (fast, slow):
            inputs, state = tf.constant(x), tf.constant(h0)
            with tf.GradientTape() as tape:
                tape.watch([inputs, state])
                loss = tf.reduce_sum(layer(inputs, initial_state=state) * cotangent)
            results.append([layer(inputs, initial_state=state)] + tape.gradient(
                loss, [inputs, state] + layer.trainable_weights))
        names = ["outputs", "d/dinputs", "d/dh0", "d/dinput_kernel", "d/drecurrent_kernel",
                 "d/dbias"]
        with np.errstate(invalid="ignore", over="ignore"):
            for got, want, name in zip(*results, names):
                assert_same(got.numpy(), want.numpy(), np.float32, f"trial {trial}: {name}")


# --------------------------------------------------------------------------
# DilatedRNN: every TF1 cell and engine against the plain-loop reference.
# --------------------------------------------------------------------------
DRNN_ENGINES = ("native", "xla", "while")
DRNN_CELLS = {"RNN": BasicRNNCell, "LSTM": BasicLSTMCell, "GRU": GRUCell}


def _drnn_case(seed, cell_type):
    rng = np.random.RandomState(2000 + seed)
    batch, steps, depth = rng.randint(1, 4), rng.randint(1, 11), rng.randint(1, 4)
    layers = 1 + seed % 2
    units = [int(u) for u in rng.randint(1, 7, size=layers)]
    dilations = [int(d) for d in rng.choice([1, 2, 3, 4], size=layers)]
    dtype = np.float64 if seed % 3 != 2 else np.float32
    mask = _random_mask(rng, batch, steps) if seed % 4 in (1, 2) else None
    cells = [DRNN_CELLS[cell_type](u, dtype=dtype.__name__) for u in units]
    layer = DilatedRNN(cells=cells, dilations=dilations, return_sequences=True,
                       dtype=dtype.__name__)
    layer.build((None, steps, depth))
    weights = [rng.normal(size=w.shape) * 0.5 for w in layer.get_weights()]
    x = rng.randn(batch, steps, depth)
    plan = _injection_plan(rng, ["inputs", "inputs", "weights"])
    _inject(rng, x, plan["inputs"])
    for _ in range(plan["weights"]):
        _inject(rng, weights[rng.randint(len(weights))], 1)
    layer.set_weights([w.astype(dtype) for w in weights])
    cotangent = _cotangent(rng, (batch, steps, units[-1])).astype(dtype)
    return layer, x.astype(dtype), mask, cotangent, dtype


def drnn_outputs_and_grads(run, x, weights, cotangent):
    """[outputs, dL/dx, dL/dweights...] of loss = sum(run(x) * cotangent)."""
    inputs = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        outputs = run(inputs)
        loss = tf.reduce_sum(outputs * cotangent)
    return [outputs] + tape.gradient(loss, [inputs] + list(weights))


@pytest.mark.parametrize("engine", DRNN_ENGINES)
@pytest.mark.parametrize("cell_type", list(DRNN_CELLS))
@pytest.mark.parametrize("seed", SEEDS)
def test_drnn_matches_plain_loop_with_nonfinite_values(seed, cell_type, engine):
    layer, x, mask, cotangent, dtype = _drnn_case(seed, cell_type)
    layer.implementation = engine
    weights = layer.trainable_weights
    def reference(inputs):
        return drnn_reference.masked_stack_loop(layer.cells, layer.dilations, inputs, mask)
    got = drnn_outputs_and_grads(lambda inputs: layer(inputs, mask=mask), x, weights, cotangent)
    want = drnn_outputs_and_grads(reference, x, weights, cotangent)
    names = ["outputs", "d/dinputs"] + [f"d/d{w.path}" for w in weights]
    with np.errstate(invalid="ignore", over="ignore"):
        for g, w, name in zip(got, want, names):
            assert_same(g.numpy(), w.numpy(), dtype, f"{name} (dilations {layer.dilations}, "
                        f"mask {None if mask is None else mask.astype(int).tolist()})")


@pytest.mark.parametrize("read", ["early", "last"])
@pytest.mark.parametrize("cell_type", list(DRNN_CELLS))
def test_drnn_loss_reading_few_outputs_with_nan_where_no_gradient_arrives(cell_type, read):
    """A NaN in an input that no nonzero gradient reaches: the reference's
    0 * NaN still gives NaN (in dL/dx at and before that step, in dL/dW).
    "early": the loss reads step 2, the NaN is at step 6 of a single layer.
    "last": the classifier's loss on the last output, 8 sequences, dilation
    8: the NaN is in phase 0, the gradient reaches phase 7 only."""
    rng = np.random.RandomState(5)
    if read == "early":
        batch, steps, dilations, nan_at, read_at = 3, 8, [1], (1, 6, 0), 2
    else:
        batch, steps, dilations, nan_at, read_at = 8, 16, [8], (2, 8, 1), 15
    cells = [DRNN_CELLS[cell_type](3, dtype="float64") for _ in dilations]
    layer = DilatedRNN(cells=cells, dilations=dilations, return_sequences=True, dtype="float64")
    layer.build((None, steps, 2))
    layer.set_weights([rng.normal(size=w.shape) * 0.5 for w in layer.get_weights()])
    x = rng.randn(batch, steps, 2)
    x[nan_at] = np.nan
    cotangent = np.zeros((batch, steps, 3))
    cotangent[:, read_at] = rng.randn(batch, 3)
    want = drnn_outputs_and_grads(
        lambda inputs: drnn_reference.stack_loop(layer.cells, layer.dilations, inputs),
        x, layer.trainable_weights, cotangent)
    assert np.isnan(want[2].numpy()).any()  # the case is the one described
    failures = []
    for engine in DRNN_ENGINES:
        layer.implementation = engine
        got = drnn_outputs_and_grads(layer, x, layer.trainable_weights, cotangent)
        with np.errstate(invalid="ignore"):
            for index, (g, w) in enumerate(zip(got, want)):
                try:
                    assert_same(g.numpy(), w.numpy(), np.float64, f"{engine}, value {index}")
                except AssertionError as error:
                    failures.append(str(error).splitlines()[0])
    assert not failures, "\n".join(failures)
