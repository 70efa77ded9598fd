"""The TF1 original's `drnn` module: `dRNN` and `multi_dRNN_with_dilations`.

Same names, arguments and results as the original graph builders. What they
build depends on how they are called (`ind_rnn.flavour.graph_mode()`):

* In TF1 graph mode (`tf.compat.v1.disable_eager_execution()` or
  `disable_v2_behavior()`, placeholders, `Session`): the original TF1 graph,
  with TF's TF1 cells and the original variable scopes
  (`multi_dRNN_dilation_<d>/...`), by `dilated_rnn.legacy` (needs tf-keras
  and TF_USE_LEGACY_KERAS=1; without them an ImportError says what to install
  and set).
* Otherwise (eager tensors, `keras.Input`): thin adapters over the Keras 3
  `DilatedRNN` layer, each layer named after the original's variable scope;
  the cell keeps its weights, so passing the same cell again reuses them, as
  `reuse=True` did.

Inputs may be the original list of `n_steps` tensors `[batch, input_dims]` (a
list comes back) or one `[batch, n_steps, input_dims]` tensor (a tensor comes
back). Mixing the two Keras (a TF1 cell outside graph mode, a Keras 3 cell in
graph mode, a `tf.keras.Input`) raises `ind_rnn.flavour.KerasFlavourError`
naming what to use instead.
"""
import collections
import logging

import keras

from ind_rnn import flavour
from dilated_rnn._validation import check_same_length
from dilated_rnn._validation import is_positive_int
from dilated_rnn.dilation import phases_read
from dilated_rnn.layers import DilatedRNN

_LOG = logging.getLogger(__name__)


def dRNN(cell, inputs, rate, scope='default'):  # pylint: disable=invalid-name
    """Builds one dilated recurrent layer (the original's `drnn.dRNN`).

    `output_t = cell(x_t, state_{t-rate})`, with a zero state for
    `t < rate`: the inputs are zero-padded at the end to a multiple of
    `rate`, every `rate` consecutive steps are stacked on the batch axis
    (phase-major), the cell runs over the `ceil(n_steps / rate)` dilated
    steps, and the outputs are split, put back in time order and the padding
    dropped.

    Args:
        cell: a Keras RNN cell, e.g. from `_contruct_cells`. Any state
            structure works (LSTM's `(c, h)` is carried whole).
        inputs: list of `n_steps` tensors `[batch, input_dims]`, or one
            tensor `[batch, n_steps, input_dims]`.
        rate: the dilation, an int with `1 <= rate < n_steps`.
        scope: name of the layer (the original's variable scope).

    Returns:
        The outputs: a list of `n_steps` tensors `[batch, units]` for a list
        input, else a `[batch, n_steps, units]` tensor.

    Raises:
        ValueError: if `rate` is not an int, is < 1 or is >= `n_steps` (the
            original's refusal), or `inputs` is neither form.
        ImportError: in graph mode without tf-keras / TF_USE_LEGACY_KERAS=1.
        ind_rnn.flavour.KerasFlavourError: for a cell or inputs of the other
            Keras (see the module docstring).

    Example:

    >>> steps = [np.ones((2, 1), "float32")] * 5
    >>> outputs = dRNN(BasicRNNCell(3), steps, rate=2)
    >>> len(outputs), tuple(outputs[0].shape)
    (5, (2, 3))
    """
    if flavour.graph_mode():
        return graph_api("dilated_rnn.drnn.dRNN").dRNN(cell, inputs, rate, scope)
    return _stack_layers([cell], inputs, [rate], [scope], "dilated_rnn.drnn.dRNN")


def multi_dRNN_with_dilations(cells, inputs, dilations):  # pylint: disable=invalid-name
    """Builds a stack of dilated recurrent layers, returns the top outputs.

    Layer `k` is `dRNN(cells[k], ..., dilations[k])`, named
    `"multi_dRNN_dilation_<d>"` as in the original; a repeated dilation gets
    a suffix (`"multi_dRNN_dilation_<d>_1"`, ...) so every layer has its own
    name (in the original the two scopes collided).

    Args:
        cells: list of Keras RNN cells, one per layer.
        inputs: list of `n_steps` tensors `[batch, input_dims]`, or one
            tensor `[batch, n_steps, input_dims]`.
        dilations: list of ints, one per cell, each `1 <= d < n_steps`.

    Returns:
        The top layer's outputs, in the form of `inputs` (list or tensor).

    Raises:
        ValueError: if `len(cells) != len(dilations)` or a dilation is bad.
        ImportError: in graph mode without tf-keras / TF_USE_LEGACY_KERAS=1.
        ind_rnn.flavour.KerasFlavourError: for cells or inputs of the other
            Keras (see the module docstring).

    Example:

    >>> cells = _contruct_cells([4, 4], "LSTM")
    >>> x = np.ones((2, 6, 1), "float32")
    >>> multi_dRNN_with_dilations(cells, x, [1, 2]).shape
    TensorShape([2, 6, 4])
    """
    name = "dilated_rnn.drnn.multi_dRNN_with_dilations"
    if flavour.graph_mode():
        return graph_api(name).multi_dRNN_with_dilations(cells, inputs, dilations)
    dilations = list(dilations)
    check_same_length("cells", list(cells), "dilations", dilations)
    return _stack_layers(list(cells), inputs, dilations,
                         unique_layer_names(dilations), name)


def graph_api(function_name):
    """`dilated_rnn.legacy`, the graph-mode functions, once checked available.

    Raises:
        ImportError: without tf-keras / TF_USE_LEGACY_KERAS=1, saying what to
            install and set.
    """
    flavour.check_graph_mode_available(function_name)
    from dilated_rnn import legacy  # pylint: disable=import-outside-toplevel
    return legacy


KERAS_3_INSTEAD = (
    "outside graph mode these functions build Keras 3 layers: call them on keras.Input or "
    "eager tensors, with Keras 3 cells (dilated_rnn.BasicRNNCell, BasicLSTMCell, GRUCell, "
    "ind_rnn.keras_cell.IndRNNCell, keras.layers.*Cell; dilated_rnn._contruct_cells makes "
    "them), for a keras.Model. For TF1 code (tf.compat.v1.placeholder, TF1 cells, Session), "
    "build the graph in graph mode: tf.compat.v1.disable_eager_execution() (or "
    "disable_v2_behavior()) under TF_USE_LEGACY_KERAS=1.")


def check_keras3_arguments(function_name, inputs, cells=()):
    """Refuses tf-keras tensors and TF1 / tf-keras cells outside graph mode.

    Raises:
        ind_rnn.flavour.KerasFlavourError: naming the combination and what
            to use instead.
    """
    flavour.check_not_tf_keras_tensor(function_name, inputs, KERAS_3_INSTEAD)
    for cell in cells:
        if flavour.is_tf_keras_object(cell):
            raise flavour.unsupported(
                f"the TF1 / tf-keras cell {flavour.describe(cell)} in `{function_name}` "
                "outside graph mode (eager, keras.Input), where it builds Keras 3 layers",
                KERAS_3_INSTEAD)


def unique_layer_names(dilations):
    """The original's scope names, made unique for repeated dilations."""
    seen = collections.Counter()
    names = []
    for dilation in dilations:
        name = "multi_dRNN_dilation_%d" % dilation
        if seen[dilation]:
            name += "_%d" % seen[dilation]
        seen[dilation] += 1
        names.append(name)
    return names


def _stack_layers(cells, inputs, dilations, names, function_name):
    check_keras3_arguments(function_name, inputs, cells)
    is_list = isinstance(inputs, (list, tuple))
    n_steps, _ = _sequence_shape(inputs, is_list)
    for dilation in dilations:
        check_rate(dilation, n_steps)
    # One time-major sequence through all layers: the list stacks into it
    # directly, and no layer needs to transpose.
    sequence = (keras.ops.stack(list(inputs), axis=0) if is_list
                else keras.ops.transpose(inputs, (1, 0, 2)))
    sequence = dilated_stack(cells, sequence, dilations, names)
    if is_list:
        return keras.ops.unstack(sequence, num=n_steps, axis=0)
    return keras.ops.transpose(sequence, (1, 0, 2))


def dilated_stack(cells, sequence, dilations, names, last_steps=None):
    """Runs one named layer per cell over a time-major sequence.

    Returns the top layer's time-major outputs. The dilations must already
    have passed `check_rate`. With `last_steps`, only the top layer's last
    `last_steps` outputs are read: the layers compute only the phases those
    depend on (`dilation.phases_read`), the other outputs being zeros.
    """
    needed = [None] * len(dilations)
    if last_steps is not None and sequence.shape[0] is not None:
        needed = phases_read(sequence.shape[0], dilations, last_steps)
    for cell, dilation, name, phases in zip(cells, dilations, names, needed):
        _log_layer(name, sequence.shape[0], dilation, sequence.shape[-1])
        layer = dilated_layer(cell, dilation, name)
        sequence = (layer(sequence) if phases is None
                    else layer(sequence, phases=[phases]))
    return sequence


def dilated_layer(cell, dilation, name):
    """One time-major `DilatedRNN` layer returning every step."""
    return DilatedRNN(cells=[cell], dilations=[dilation],
                      return_sequences=True, time_major=True, name=name)


def _sequence_shape(inputs, is_list):
    """(n_steps, input_dims) of either input form; None where unknown."""
    if is_list:
        if not inputs or any(getattr(x, "shape", None) is None
                             or len(x.shape) != 2 for x in inputs):
            raise ValueError(
                "Received an invalid value for argument `inputs`, expected a"
                " non-empty list of [batch, input_dims] tensors or one "
                f"[batch, n_steps, input_dims] tensor, got {inputs!r}.")
        return len(inputs), inputs[0].shape[-1]
    if getattr(inputs, "shape", None) is None or len(inputs.shape) != 3:
        raise ValueError(
            "Received an invalid value for argument `inputs`, expected a "
            "list of [batch, input_dims] tensors or one [batch, n_steps, "
            f"input_dims] tensor, got shape "
            f"{getattr(inputs, 'shape', None)}.")
    return inputs.shape[1], inputs.shape[2]


def check_rate(rate, n_steps):
    """The original's check (`rate < n_steps`), plus `rate >= 1` and int."""
    if not is_positive_int(rate) or (n_steps is not None
                                     and rate >= n_steps):
        bound = "" if n_steps is None else f" smaller than n_steps={n_steps}"
        raise ValueError(
            "The 'rate' variable needs to be adjusted. Received an invalid "
            f"value for argument `rate`, expected an integer >= 1{bound}, "
            f"got {rate!r}.")


def _log_layer(name, n_steps, rate, input_dims):
    _LOG.info("Building layer: %s, input length: %s, dilation rate: %d, "
              "input dim: %s.", name, n_steps, rate, input_dims)
    if n_steps is None:
        return
    dilated_steps = -(-n_steps // rate)
    if dilated_steps * rate != n_steps:
        _LOG.info("=====> %d time points need to be padded.",
                  dilated_steps * rate - n_steps)
    _LOG.info("=====> Input length for sub-RNN: %d", dilated_steps)
