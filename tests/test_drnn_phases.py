"""Computing only the phases that a stack's last outputs depend on.

A classifier reads the top layer's last output(s) only; in a layer of
dilation d those depend on few of its d phases (`dilation.phases_read`), and
the C++ kernels skip the others. These tests check the phase sets against a
brute-force dependency closure, that the kernels really skip (the skipped
outputs are zeros) and that what is read is unchanged, outputs and
gradients, against the plain-loop reference: for `DilatedRNN` without
`return_sequences`, `DilatedRNNClassifier` and `drnn_classification`; and
that NaN and inf in a skipped phase still reach the gradients as in the
reference."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from dilated_rnn import BasicLSTMCell, BasicRNNCell, DilatedRNN, GRUCell
from dilated_rnn import DilatedRNNClassifier, dilation, drnn_classification, native
from dilated_rnn.layers import end_at_last_valid_steps
from tests import drnn_reference as reference
from tests.test_nonfinite import assert_same  # NaN positions too
from tests.test_nonfinite import drnn_outputs_and_grads as values_and_grads

CELLS = {"RNN": BasicRNNCell, "LSTM": BasicLSTMCell, "GRU": GRUCell}

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def _closure_phases(num_steps, dilations, last_steps):
    """Per layer, the phases of the (layer, time) nodes that the top layer's
    last outputs reach through the graph's edges: (k, t) reads (k, t - d_k)
    and (k - 1, t). None where every existing phase is reached."""
    top = len(dilations) - 1
    reached = {(top, t) for t in range(max(0, num_steps - last_steps), num_steps)}
    frontier = list(reached)
    while frontier:
        layer, t = frontier.pop()
        for node in ((layer, t - dilations[layer]), (layer - 1, t)):
            if node[0] >= 0 and node[1] >= 0 and node not in reached:
                reached.add(node)
                frontier.append(node)
    result = []
    for layer, rate in enumerate(dilations):
        phases = {t % rate for k, t in reached if k == layer}
        existing = {t % rate for t in range(num_steps)}
        result.append(None if phases == existing else sorted(phases))
    return result


def test_phases_read_matches_the_dependency_closure():
    rng = np.random.default_rng(7)
    for _ in range(300):
        dilations = [int(d) for d in rng.integers(1, 10, size=rng.integers(1, 6))]
        num_steps, last = int(rng.integers(1, 41)), int(rng.integers(1, 5))
        assert dilation.phases_read(num_steps, dilations, last) == \
            _closure_phases(num_steps, dilations, last), (num_steps, dilations, last)


def test_demo_stack_reads_one_phase_per_layer():
    phases = dilation.phases_read(784, [2 ** i for i in range(9)], 1)
    assert phases[0] is None
    assert all(len(p) == 1 for p in phases[1:])


def _layer(cell_type, units, dilations, depth, rng, **kwargs):
    layer = DilatedRNN(cells=[CELLS[cell_type](u, dtype="float64") for u in units],
                       dilations=dilations, dtype="float64", **kwargs)
    layer.build((None, None, depth))
    layer.set_weights([rng.normal(size=w.shape) * 0.5 for w in layer.get_weights()])
    return layer


@pytest.mark.parametrize("cell_type", list(CELLS))
def test_skipped_phases_are_zeros_and_read_phases_unchanged(cell_type):
    rng = np.random.default_rng(1)
    layer = _layer(cell_type, [3, 4], [1, 4], 2, rng, return_sequences=True,
                   implementation="native")
    x = rng.normal(size=(3, 10, 2))
    full = layer(x).numpy()
    pruned = layer(x, phases=[None, [1, 2]]).numpy()
    read = np.isin(np.arange(10) % 4, [1, 2])
    np.testing.assert_array_equal(pruned[:, ~read], 0.0)  # really skipped
    np.testing.assert_allclose(pruned[:, read], full[:, read], rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("cell_type", list(CELLS))
def test_a_skipped_phase_with_nan_inputs_is_computed(cell_type):
    """Skipping a phase whose inputs hold NaN would drop the reference's
    0 * NaN = NaN from the weight gradients: such a phase is computed."""
    rng = np.random.default_rng(2)
    layer = _layer(cell_type, [3], [4], 2, rng, return_sequences=True,
                   implementation="native")
    x = rng.normal(size=(2, 11, 2))
    x[1, 6, 0] = np.nan  # phase 2
    full = layer(x).numpy()
    pruned = layer(x, phases=[[3]]).numpy()
    computed = np.isin(np.arange(11) % 4, [2, 3])
    np.testing.assert_array_equal(pruned[:, ~computed], 0.0)
    np.testing.assert_array_equal(np.isnan(pruned), np.isnan(full))
    np.testing.assert_allclose(pruned[:, computed], full[:, computed], rtol=1e-12)


CASES = [([1, 2, 4, 8], 37, 3), ([1, 3, 2, 5], 23, 2), ([2, 4], 9, 3), ([3, 3, 6], 20, 2),
         ([1, 16], 12, 2)]


@pytest.mark.parametrize("dilations, steps, batch", CASES)
@pytest.mark.parametrize("cell_type", list(CELLS))
def test_last_output_matches_the_reference(cell_type, dilations, steps, batch):
    rng = np.random.default_rng(steps)
    units = [int(u) for u in rng.integers(2, 6, size=len(dilations))]
    layer = _layer(cell_type, units, dilations, 2, rng, implementation="native")
    x = rng.normal(size=(batch, steps, 2))
    cotangent = rng.normal(size=(batch, units[-1]))
    got = values_and_grads(layer, x, layer.trainable_weights, cotangent)
    want = values_and_grads(
        lambda inputs: reference.stack_loop(layer.cells, dilations, inputs)[:, -1],
        x, layer.trainable_weights, cotangent)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-9, atol=1e-11)


def _mixed_mask(rng, batch, steps):
    """Rows of every kind a user's padding makes: whole, padded after,
    padded before, with holes, and empty."""
    mask = np.ones((batch, steps), bool)
    for b in range(batch):
        kind = b % 5
        cut = int(rng.integers(1, steps))
        if kind == 1:
            mask[b, cut:] = False
        elif kind == 2:
            mask[b, :cut] = False
        elif kind == 3:
            mask[b] = rng.random(steps) < 0.6
        elif kind == 4:
            mask[b] = False
    return mask


def _masked_window_reference(cells, dilations, x, mask, count):
    """Each row's outputs at the `count` steps ending at its last valid step,
    oldest first, side by side (zeros before the start and for an empty
    row), from the masked plain loop."""
    outputs = reference.masked_stack_loop(cells, dilations, x, mask)
    zeros = tf.zeros_like(outputs[0, 0])
    rows = []
    for b in range(mask.shape[0]):
        valid = np.flatnonzero(mask[b])
        last = valid[-1] if valid.size else -1
        rows.append(tf.concat([outputs[b, s] if s >= 0 else zeros
                               for s in range(last - count + 1, last + 1)], 0))
    return tf.stack(rows)


@pytest.mark.parametrize("cell_type", list(CELLS))
@pytest.mark.parametrize("seed", range(3))
def test_with_a_mask_the_last_valid_steps_match_the_reference(cell_type, seed):
    """Each sequence's last valid step is another: the layer moves the steps
    after it to the start, and then skips phases. Junk, NaN and inf in the
    padding (seed 2: at valid steps too) reach what they reach in the
    reference, outputs and gradients."""
    rng = np.random.default_rng(30 + seed)
    dilations = [1, 2, 4] if seed != 1 else [2, 3]
    layer = _layer(cell_type, [3, 4, 2][:len(dilations)], dilations, 2, rng,
                   implementation="native")
    batch, steps = 10, int(rng.integers(9, 17))
    x = rng.normal(size=(batch, steps, 2))
    mask = _mixed_mask(rng, batch, steps)
    x[~mask] = 99.0
    if seed == 2:
        x[1, -1, 0], x[2, 0, 1], x[0, 3, 0] = np.nan, np.inf, np.nan
    cotangent = rng.normal(size=(batch, layer.units))
    got = values_and_grads(lambda inputs: layer(inputs, mask=mask), x,
                           layer.trainable_weights, cotangent)
    want = values_and_grads(
        lambda inputs: _masked_window_reference(layer.cells, dilations, inputs, mask, 1),
        x, layer.trainable_weights, cotangent)
    with np.errstate(invalid="ignore", over="ignore"):
        for index, (g, w) in enumerate(zip(got, want)):
            assert_same(g.numpy(), w.numpy(), np.float64, f"value {index}")


@pytest.mark.parametrize("cell_type", list(CELLS))
def test_masked_classifier_reads_its_fused_window_as_the_reference(cell_type):
    rng = np.random.default_rng(6)
    dilations, steps, batch = [2, 4], 15, 10
    model = DilatedRNNClassifier([3, 4], dilations, 5, cell_type=cell_type,
                                 implementation="native", dtype="float64")
    model.build((None, steps, 2))
    model.set_weights([rng.normal(size=w.shape) * 0.5 for w in model.get_weights()])
    x = rng.normal(size=(batch, steps, 2))
    mask = _mixed_mask(rng, batch, steps)
    cotangent = rng.normal(size=(batch, 5))
    got = values_and_grads(lambda inputs: model(inputs, mask=mask), x,
                           model.trainable_weights, cotangent)
    want = values_and_grads(
        lambda inputs: model.output_layer(_masked_window_reference(
            model.drnn.cells, dilations, inputs, mask, dilations[0])),
        x, model.trainable_weights, cotangent)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-9, atol=1e-11)


def test_with_a_mask_the_kernels_are_asked_for_few_phases(monkeypatch):
    """The speed-up itself: with a mask, the last-output layer and the
    classifier pass the kernels the phases `phases_read` gives for the
    whole length (one per layer above the first here), not every phase."""
    asked = []
    original = native.sequence

    def recording(*args, phases=None, **kwargs):
        asked.append(phases)
        return original(*args, phases=phases, **kwargs)

    monkeypatch.setattr(native, "sequence", recording)
    x = np.random.default_rng(0).normal(size=(3, 16, 1)).astype("float32")
    mask = np.arange(16)[None, :] < np.array([16, 9, 4])[:, None]
    DilatedRNN([4] * 3, [1, 2, 4], cell_type="LSTM", implementation="native")(x, mask=mask)
    DilatedRNNClassifier([4] * 3, [1, 2, 4], 2, implementation="native")(x, mask=mask)
    expected = dilation.phases_read(16, [1, 2, 4], 1)
    assert expected[1:] == [[1], [3]]
    assert asked == expected + expected


def test_rolling_to_the_last_valid_step_is_a_per_row_roll():
    rng = np.random.default_rng(8)
    sequence = rng.normal(size=(11, 10, 3))
    mask = _mixed_mask(rng, 10, 11).T
    rolled, rolled_mask = end_at_last_valid_steps(tf.constant(sequence), tf.constant(mask))
    for b in range(10):
        valid = np.flatnonzero(mask[:, b])
        shift = 11 - 1 - valid[-1] if valid.size else 0
        np.testing.assert_array_equal(rolled[:, b].numpy(), np.roll(sequence[:, b], shift, 0))
        np.testing.assert_array_equal(rolled_mask[:, b].numpy(), np.roll(mask[:, b], shift))


@pytest.mark.parametrize("cell_type", list(CELLS))
@pytest.mark.parametrize("seed", range(4))
def test_last_output_with_nonfinite_values_matches_the_reference(cell_type, seed):
    rng = np.random.default_rng(100 + seed)
    dilations = [int(d) for d in rng.choice([1, 2, 3, 4, 8], size=2)]
    steps, batch = int(rng.integers(6, 17)), int(rng.integers(1, 4))
    layer = _layer(cell_type, [3, 2], dilations, 2, rng, implementation="native")
    x = rng.normal(size=(batch, steps, 2))
    for _ in range(int(rng.integers(1, 3))):
        x[rng.integers(batch), rng.integers(steps), rng.integers(2)] = \
            rng.choice([np.nan, np.inf, -np.inf])
    if seed == 3:  # a weight too: every phase is then computed
        weights = layer.get_weights()
        weights[0].reshape(-1)[0] = np.inf
        layer.set_weights(weights)
    cotangent = rng.normal(size=(batch, 2))
    got = values_and_grads(layer, x, layer.trainable_weights, cotangent)
    want = values_and_grads(
        lambda inputs: reference.stack_loop(layer.cells, dilations, inputs)[:, -1],
        x, layer.trainable_weights, cotangent)
    with np.errstate(invalid="ignore", over="ignore"):
        for index, (g, w) in enumerate(zip(got, want)):
            assert_same(g.numpy(), w.numpy(), np.float64,
                        f"value {index}, dilations {dilations}, steps {steps}")


def _classifier_reference(cells, dilations, x, dense):
    """The original's classifier: the stack's last dilations[0] outputs,
    oldest first, side by side, then the affine layer."""
    top = reference.stack_loop(cells, dilations, x)[:, -dilations[0]:]
    return dense(tf.reshape(top, (x.shape[0], -1)))


@pytest.mark.parametrize("cell_type", list(CELLS))
def test_classifier_reading_fused_last_steps_matches_the_reference(cell_type):
    rng = np.random.default_rng(4)
    dilations, steps = [2, 4, 8], 27
    model = DilatedRNNClassifier([3, 3, 4], dilations, 5, cell_type=cell_type,
                                 implementation="native", dtype="float64")
    model.build((None, steps, 2))
    model.set_weights([rng.normal(size=w.shape) * 0.5 for w in model.get_weights()])
    x = rng.normal(size=(3, steps, 2))
    cotangent = rng.normal(size=(3, 5))
    got = values_and_grads(model, x, model.trainable_weights, cotangent)
    want = values_and_grads(
        lambda inputs: _classifier_reference(model.drnn.cells, dilations, inputs,
                                             model.output_layer),
        x, model.trainable_weights, cotangent)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("cell_type", list(CELLS))
def test_drnn_classification_matches_the_reference_and_reloads(cell_type, tmp_path):
    rng = np.random.default_rng(5)
    dilations, steps = [2, 4, 8], 27
    keras.utils.set_random_seed(0)
    inputs = keras.Input((steps, 2))
    model = keras.Model(inputs, drnn_classification(inputs, [3, 3, 4], dilations, steps, 5,
                                                    input_dims=2, cell_type=cell_type))
    model.set_weights([rng.normal(size=w.shape).astype("float32") * 0.5
                       for w in model.get_weights()])
    cells = [layer.cells[0] for layer in model.layers if isinstance(layer, DilatedRNN)]
    x = rng.normal(size=(3, steps, 2)).astype("float32")
    cotangent = rng.normal(size=(3, 5)).astype("float32")
    got = values_and_grads(model, x, model.trainable_weights, cotangent)
    want = values_and_grads(
        lambda inputs: _classifier_reference(cells, dilations, inputs, model.layers[-1]),
        x, model.trainable_weights, cotangent)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=2e-4, atol=2e-5)
    path = str(tmp_path / "model.keras")
    model.save(path)
    reloaded = keras.models.load_model(path)
    np.testing.assert_allclose(reloaded(x).numpy(), got[0].numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("phases", [[[1]], [None, [4]], [None, [-1]], [None, [1.5]],
                                    "all", [None, 1]])
def test_bad_phases_name_the_argument(phases):
    layer = DilatedRNN([3, 3], [1, 4])
    with pytest.raises(ValueError, match="`phases`.*dilations \\[1, 4\\]"):
        layer(np.zeros((1, 8, 2), "float32"), phases=phases)


def test_last_steps_reads_the_last_valid_window_and_refuses_bad_counts():
    rng = np.random.default_rng(9)
    layer = _layer("GRU", [3, 4], [2, 4], 2, rng, return_sequences=True,
                   implementation="native")
    x = rng.normal(size=(5, 12, 2))
    mask = _mixed_mask(rng, 5, 12)
    got = layer(x, mask=mask, last_steps=3).numpy()
    want = _masked_window_reference(layer.cells, [2, 4], tf.constant(x), mask, 3).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    for bad in (0, -1, 1.5, "2"):
        with pytest.raises(ValueError, match="`last_steps`"):
            layer(x, last_steps=bad)
