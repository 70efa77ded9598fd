"""An independent NumPy IndRNN: forward loop and hand-derived backprop.

Used by the tests as the reference the TensorFlow code is checked against;
it shares no code with the package.
"""
import numpy as np

ACTIVATIONS = {
    # name: (function, derivative as a function of the pre-activation)
    "relu": (lambda a: np.maximum(a, 0.0), lambda a: (a > 0).astype(a.dtype)),
    "tanh": (np.tanh, lambda a: 1.0 - np.tanh(a) ** 2),
}


def bounded_weight(kernel, min_abs, max_abs):
    """The recurrent weight used, and d(weight)/d(kernel) elementwise."""
    weight, slope = kernel.copy(), np.ones_like(kernel)
    if min_abs:
        raised = np.abs(weight) < min_abs
        weight = np.where(raised, np.sign(weight) * min_abs, weight)
        slope = np.where(raised, 0.0, slope)
    if max_abs:
        clipped = np.abs(weight) > max_abs
        weight = np.clip(weight, -max_abs, max_abs)
        slope = np.where(clipped, 0.0, slope)
    return weight, slope


def forward(x, input_kernel, recurrent_kernel, bias, h0, activation="relu",
            min_abs=0.0, max_abs=None, mask=None):
    """x [B, T, D] -> (states [B, T, U], pre-activations [B, T, U]).

    A masked step keeps the previous state.
    """
    act, _ = ACTIVATIONS[activation]
    weight, _ = bounded_weight(recurrent_kernel, min_abs, max_abs)
    batch, steps, _ = x.shape
    states = np.zeros((batch, steps, input_kernel.shape[1]))
    pre = np.zeros_like(states)
    h = h0.astype(np.float64)
    for t in range(steps):
        pre[:, t] = x[:, t] @ input_kernel + weight * h + bias
        new_h = act(pre[:, t])
        if mask is not None:
            new_h = np.where(mask[:, t, None], new_h, h)
        h = new_h
        states[:, t] = h
    return states, pre


def backward(grad_states, x, input_kernel, recurrent_kernel, bias, h0,
             activation="relu", min_abs=0.0, max_abs=None, mask=None):
    """Backprop of sum(grad_states * states) by hand, one step at a time.

    Returns a dict of gradients for inputs, input_kernel, recurrent_kernel,
    bias, h0.
    """
    _, derivative = ACTIVATIONS[activation]
    weight, slope = bounded_weight(recurrent_kernel, min_abs, max_abs)
    states, pre = forward(x, input_kernel, recurrent_kernel, bias, h0, activation,
                          min_abs, max_abs, mask)
    batch, steps, _ = x.shape
    grads = {"input_kernel": np.zeros_like(input_kernel, dtype=np.float64),
             "recurrent_kernel": np.zeros_like(recurrent_kernel, dtype=np.float64),
             "bias": np.zeros_like(bias, dtype=np.float64),
             "inputs": np.zeros(x.shape, dtype=np.float64)}
    carried = np.zeros_like(h0, dtype=np.float64)  # dL/dh_t from step t+1
    for t in reversed(range(steps)):
        total = grad_states[:, t] + carried
        previous = states[:, t - 1] if t > 0 else h0
        grad_pre = total * derivative(pre[:, t])
        if mask is not None:
            valid = mask[:, t, None]
            grad_pre = np.where(valid, grad_pre, 0.0)
            carried = np.where(valid, grad_pre * weight, total)
        else:
            carried = grad_pre * weight
        grads["input_kernel"] += x[:, t].T @ grad_pre
        grads["inputs"][:, t] = grad_pre @ input_kernel.T
        grads["recurrent_kernel"] += (grad_pre * previous).sum(0)
        grads["bias"] += grad_pre.sum(0)
    grads["recurrent_kernel"] *= slope
    grads["h0"] = carried
    return grads
