"""Argument checks shared by the IndRNN cell and layers.

Every check raises with the Keras wording: the argument's name, what is
allowed, and the value received.
"""
import numbers

import keras
import numpy as np


def invalid(name, expected, value):
    """The Keras-worded message for a bad argument: its name, what is allowed, the value."""
    return f"Received an invalid value for argument `{name}`, expected {expected}, got {value!r}."


def positive_int(name, value):
    """Returns `value` if it is a positive integer (not a bool), else raises."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(invalid(name, "a positive integer", value))
    if value < 1:
        raise ValueError(invalid(name, "a positive integer", value))
    return int(value)


def non_negative_number(name, value, allow_none=False):
    """Returns `value` as a float if it is a real number >= 0 (or None)."""
    if value is None and allow_none:
        return None
    expected = "a number >= 0" + (" or None" if allow_none else "")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(invalid(name, expected, value))
    if not value >= 0:  # also catches NaN
        raise ValueError(invalid(name, expected, value))
    return float(value)


def boolean(name, value):
    """Returns `value` if it is a bool (Python's or NumPy's), else raises TypeError."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(invalid(name, "True or False", value))
    return bool(value)


def rate(name, value):
    """Returns `value` if it is a float in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(invalid(name, "a float in [0, 1)", value))
    if not 0 <= value < 1:
        raise ValueError(invalid(name, "a float in [0, 1)", value))
    return float(value)


def activation(value):
    """Resolves `value` with `keras.activations.get`; None means ReLU."""
    if value is None:
        return keras.activations.relu
    if not (isinstance(value, str) or callable(value)):
        raise TypeError(invalid("activation", "None, an activation name or a callable", value))
    try:
        return keras.activations.get(value)
    except (ValueError, TypeError) as error:
        raise ValueError(
            invalid("activation", "None (ReLU), a known Keras activation name "
                    "(e.g. 'relu', 'tanh', 'linear') or a callable", value)) from error


def known_feature_size(name, shape, rank):
    """Checks that `shape` has `rank` dimensions and a known last one."""
    shape = tuple(shape)
    if len(shape) != rank:
        raise ValueError(invalid(name, f"a shape of rank {rank}", shape))
    if shape[-1] is None:
        raise ValueError(invalid(name, "a known last (feature) dimension", shape))
    return int(shape[-1])


def projection_shapes(inputs_shape, input_kernel_shape, bias_shape):
    """Checks `[batch, time, depth]` inputs against a `[depth, units]` kernel and `[units]` bias.

    Dimensions not known while tracing (e.g. a loop's output) are not compared.
    """
    inputs, kernel, bias = (tuple(shape) for shape in
                            (inputs_shape, input_kernel_shape, bias_shape))
    if len(inputs) != 3:
        raise ValueError(invalid("inputs", "a shape of rank 3 [batch, time, depth]", inputs))
    depth = inputs[-1]
    if len(kernel) != 2 or None not in (depth, kernel[0]) and kernel[0] != depth:
        raise ValueError(invalid("input_kernel", f"a shape [{depth}, units] (depth of `inputs`)",
                                 kernel))
    if len(bias) != 1 or None not in (bias[0], kernel[1]) and bias[0] != kernel[1]:
        raise ValueError(invalid("bias", f"a shape [{kernel[1]}] (units of `input_kernel`)",
                                 bias))
