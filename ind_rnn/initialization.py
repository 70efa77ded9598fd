"""The recurrent weights' bound and initialisation that keep IndRNN stacks trainable.

* `recurrent_bound(time_steps, value)`: the bound on `|u|` the models use,
  `2 ** (1 / T)` by default (a unit cannot grow more than 2x over T steps).
* `recommended_recurrent_initializers`: uniform(0, max) for hidden layers,
  near 1 for the last one, as in the original sequential MNIST script.
"""
import numbers

import keras

from ind_rnn import _checks
from ind_rnn._checks import invalid


def optional_time_steps(value):
    """`time_steps` checked: a positive int, or None for any length."""
    if value is None:
        return None
    return _checks.positive_int("time_steps", value)


def recurrent_bound(time_steps, value):
    """The bound on |u|: `value`, or 2 ** (1 / time_steps) by default."""
    if value is None:
        if time_steps is None:
            raise ValueError(invalid(
                "recurrent_max_abs", "a number > 0 when `time_steps` is None "
                "(e.g. 2 ** (1 / T) for sequences of about T steps)", value))
        return 2.0 ** (1.0 / time_steps)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(invalid("recurrent_max_abs", "a number > 0 or None", value))
    if not value > 0:
        raise ValueError(invalid("recurrent_max_abs", "a number > 0 or None", value))
    return float(value)


def recommended_recurrent_initializers(time_steps=None, recurrent_max_abs=None):
    """Initialisers of the recurrent weights `u` that keep deep IndRNNs trainable.

    As in the original sequential MNIST script: hidden layers draw `u` from
    uniform(0, max), so every unit starts with a memory between none and the
    longest the bound allows; the last layer draws it from
    uniform(0.5 ** (1 / T), max), near 1, so that the layer feeding the
    classifier keeps information from the whole sequence. `max` is
    `recurrent_max_abs`, by default `2 ** (1 / T)`: a unit cannot grow more
    than 2x over T steps, so neither activations nor gradients explode.
    With `time_steps` None, the last layer's lower end is `1 / max`.

    Args:
        time_steps: positive int T, the sequence length, or None.
        recurrent_max_abs: float > 0, bound on `|u|`; None: `2 ** (1 / T)`.

    Returns:
        `(hidden, last, recurrent_max_abs)`: two `keras.initializers.RandomUniform`
        and the bound used.

    Raises:
        TypeError / ValueError: for a bad `time_steps` or `recurrent_max_abs`,
            or both None.

    Example:

    >>> from ind_rnn import recommended_recurrent_initializers
    >>> hidden, last, bound = recommended_recurrent_initializers(784)
    >>> round(last.minval, 5), round(bound, 5)
    (0.99912, 1.00088)
    """
    time_steps = optional_time_steps(time_steps)
    bound = recurrent_bound(time_steps, recurrent_max_abs)
    near_one = 0.5 ** (1.0 / time_steps) if time_steps else 1.0 / bound
    hidden = keras.initializers.RandomUniform(0.0, bound)
    last = keras.initializers.RandomUniform(min(near_one, bound), bound)
    return hidden, last, bound
