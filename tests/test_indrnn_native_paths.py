"""Every loop variant of the native IndRNN kernels against the NumPy reference.

Also `return_states=False` (what a layer without return_sequences asks for):
the scan then returns the last state only, for every implementation.

The forward kernel has one fused pass per step for the input depths it
projects itself (1, 2 and 4 features, with and without a bias) and a general
path for the others; the backward kernel has one per combination of a
per-step incoming gradient (return_sequences) and a bias. Each is selected by
the shapes of the call, so each is run here, float64 (exact to rounding) and
float32 with a width that leaves a partial vector (37 units), masked and not.
"""
import keras
import numpy as np
import pytest
import tensorflow as tf

from ind_rnn import native, recurrence
from tests import indrnn_numpy_reference as reference

NATIVE = pytest.mark.skipif(native.load() is None, reason="no native kernels here")
BATCH, STEPS = 3, 9
TOLERANCE = {"float64": dict(rtol=1e-9, atol=1e-9), "float32": dict(rtol=2e-4, atol=2e-4)}


def _mask(rng):
    mask = rng.rand(BATCH, STEPS) > 0.3
    mask[0, -2:] = False  # padding at the end of a row
    return mask


def _upstream(rng, units, per_step):
    """dL/dstates: every step (the layer returns sequences) or the last only."""
    upstream = np.zeros((BATCH, STEPS, units))
    if per_step:
        upstream = rng.randn(BATCH, STEPS, units)
    else:
        upstream[:, -1] = rng.randn(BATCH, units)
    return upstream


def _run(scan, tensors, upstream, per_step, dtype):
    """States and gradients; without `per_step`, the scan returns the last state
    only (return_states=False), so no per-step gradient reaches the kernel."""
    with tf.GradientTape() as tape:
        tape.watch(tensors)
        states, last_state = scan(*tensors, return_states=per_step)
        if per_step:
            loss = tf.reduce_sum(states * tf.constant(upstream, dtype))
        else:
            assert states is None
            loss = tf.reduce_sum(last_state * tf.constant(upstream[:, -1], dtype))
    return last_state.numpy(), states, [g.numpy() for g in tape.gradient(loss, tensors)]


def _check(got, expected_states, expected, names, dtype):
    last_state, states, grads = got
    np.testing.assert_allclose(last_state, expected_states[:, -1], **TOLERANCE[dtype])
    if states is not None:
        np.testing.assert_allclose(states.numpy(), expected_states, **TOLERANCE[dtype])
    for grad, name in zip(grads, names):
        np.testing.assert_allclose(grad, expected[name], err_msg=name, **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype, units", [("float64", 6), ("float32", 37)])
@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("per_step", [True, False], ids=["per-step-grad", "last-grad"])
@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
@NATIVE
def test_inputs_projected_in_the_kernel(dtype, units, depth, per_step, masked, activation,
                                        monkeypatch):
    """Through `project_and_scan`, as the layer calls it."""
    monkeypatch.setattr(recurrence, "MAX_DEPTH_PROJECTED_IN_KERNEL", 5)  # all in the kernel
    rng = np.random.RandomState(depth * 10 + units)
    values = [rng.randn(BATCH, STEPS, depth), rng.randn(depth, units) * 0.5,
              rng.randn(units) * 0.2, rng.uniform(-1.1, 1.1, units), rng.randn(BATCH, units)]
    mask = _mask(rng) if masked else None
    upstream = _upstream(rng, units, per_step)
    function = getattr(keras.activations, activation)

    def scan(x, kernel, bias, weight, h0, return_states):
        return recurrence.project_and_scan(x, kernel, bias, weight, h0, function, mask=mask,
                                           implementation="native",
                                           return_states=return_states)

    got = _run(scan, [tf.constant(v.astype(dtype)) for v in values], upstream, per_step, dtype)
    x, kernel, bias, weight, h0 = values
    args = [x, kernel, weight, bias, h0, activation, 0.0, None, mask]
    _check(got, reference.forward(*args)[0], reference.backward(upstream, *args),
           ["inputs", "input_kernel", "bias", "recurrent_kernel", "h0"], dtype)


@pytest.mark.parametrize("dtype, units", [("float64", 6), ("float32", 37)])
@pytest.mark.parametrize("per_step", [True, False], ids=["per-step-grad", "last-grad"])
@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
@pytest.mark.parametrize("implementation", [pytest.param("native", marks=NATIVE), "xla", "tf"])
def test_projections_without_a_bias(dtype, units, per_step, masked, implementation):
    """`indrnn_scan` over given projections: the native kernels' no-bias loops,
    and every implementation with and without `return_states`."""
    rng = np.random.RandomState(units)
    values = [rng.randn(BATCH, STEPS, units), rng.uniform(-1.1, 1.1, units),
              rng.randn(BATCH, units)]
    mask = _mask(rng) if masked else None
    upstream = _upstream(rng, units, per_step)

    def scan(projected, weight, h0, return_states):
        return recurrence.indrnn_scan(projected, weight, h0, keras.activations.relu,
                                      mask=mask, implementation=implementation,
                                      return_states=return_states)

    got = _run(scan, [tf.constant(v.astype(dtype)) for v in values], upstream, per_step, dtype)
    projected, weight, h0 = values
    args = [projected, np.eye(units), weight, np.zeros(units), h0, "relu", 0.0, None, mask]
    _check(got, reference.forward(*args)[0], reference.backward(upstream, *args),
           ["inputs", "recurrent_kernel", "h0"], dtype)
