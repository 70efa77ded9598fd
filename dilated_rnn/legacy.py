"""The TF1 original's `drnn` / `classification_models` functions for graph mode.

Step one of TensorFlow's migration path is to run the TF1 code unchanged on
TF 2.x through `tf.compat.v1`: placeholders, `Session`, `Saver`. This module
gives that code the original functions again, with the original names,
arguments, list-of-tensors API, TF1 cells and variable names:

* `dRNN(cell, inputs, rate, scope='default')`
* `multi_dRNN_with_dilations(cells, inputs, dilations)`: layer scopes
  `multi_dRNN_dilation_<d>` (a repeated dilation gets `_1`, `_2`, ...,
  where the original crashed on the name clash)
* `_contruct_cells(hidden_structs, cell_type)`: TF's own
  `tf.compat.v1.nn.rnn_cell.BasicRNNCell` / `BasicLSTMCell` / `GRUCell`
  (and `ind_rnn.legacy.IndRNNCell` for "IndRNN")
* `_rnn_reformat(x, input_dims, n_steps)`
* `drnn_classification(x, hidden_structs, dilations, n_steps, n_classes,
  input_dims=1, cell_type="RNN")`: output layer `Variable` / `Variable_1`

so a TF1 checkpoint of the original graphs restores into them with a plain
`tf.compat.v1.train.Saver`. Needs the `legacy` extra and
`TF_USE_LEGACY_KERAS=1` before TensorFlow is imported (see
`ind_rnn.legacy`). The original module paths (`dilated_rnn.drnn.dRNN`,
`dilated_rnn.classification_models.drnn_classification`, ...) and the
package's top-level names call these functions when they are called in graph
mode, and build Keras 3 layers otherwise (see `ind_rnn.flavour`).

Nothing of the recurrence is rewritten: the padding and phase interleaving
are `dilated_rnn.dilation.dilate` / `undilate` (the ones `DilatedRNN` runs),
the cell runs under `tf.compat.v1.nn.dynamic_rnn` (same variable names as
the original's `static_rnn`, without unrolling the graph), and the output
window is `dilated_rnn.layers.last_valid_steps`.
"""
import keras
import tensorflow as tf

from ind_rnn import flavour
from dilated_rnn import dilation
from dilated_rnn._validation import check_int_list, check_positive_int, check_same_length
from dilated_rnn.cells import CELL_TYPES
from dilated_rnn.classification_models import _check_input_shape
# Pure TensorFlow reshapes: the TF2 function works on graph tensors as it is.
from dilated_rnn.classification_models import _rnn_reformat
from dilated_rnn.drnn import _log_layer, _sequence_shape, check_rate, unique_layer_names
from dilated_rnn.layers import last_valid_steps
from ind_rnn import legacy as _ind_rnn_legacy  # checks the legacy environment on import

__all__ = ["dRNN", "multi_dRNN_with_dilations", "_contruct_cells", "_rnn_reformat",
           "drnn_classification"]


def dRNN(cell, inputs, rate, scope='default'):  # pylint: disable=invalid-name
    """Builds one dilated recurrent layer in a TF1 graph (the original's `dRNN`).

    `output_t = cell(x_t, state_{t-rate})`, with a zero state for
    `t < rate`. Unlike the original, the caller's `inputs` list is not
    extended with padding.

    Args:
        cell: a TF1 RNN cell (`tf.compat.v1.nn.rnn_cell.*`,
            `ind_rnn.legacy.IndRNNCell`).
        inputs: list of `n_steps` tensors `[batch, input_dims]` (or one
            `[batch, n_steps, input_dims]` tensor).
        rate: the dilation, an int with `1 <= rate < n_steps`.
        scope: the variable scope of the layer's variables.

    Returns:
        A list of `n_steps` tensors `[batch, units]` (a tensor
        `[batch, n_steps, units]` for a tensor input).

    Raises:
        ValueError: for a `rate` that is not an int in `[1, n_steps)`, or
            `inputs` of neither form.
        ind_rnn.flavour.KerasFlavourError: for a Keras 3 cell.

    Example (graph mode, TF_USE_LEGACY_KERAS=1):

        steps = [tf.compat.v1.placeholder(tf.float32, [None, 1]) for _ in range(10)]
        cell = tf.compat.v1.nn.rnn_cell.BasicRNNCell(20)
        outputs = dRNN(cell, steps, rate=2, scope="layer_1")  # 10 tensors [batch, 20]
    """
    return _run_layers([cell], inputs, [rate], [scope], "dRNN")


def multi_dRNN_with_dilations(cells, inputs, dilations):  # pylint: disable=invalid-name
    """Builds a stack of dilated layers in a TF1 graph; returns the top outputs.

    Layer `k` is `dRNN(cells[k], ..., dilations[k])` in the variable scope
    `"multi_dRNN_dilation_<dilations[k]>"`, as in the original.

    Args:
        cells: list of TF1 RNN cells, one per layer.
        inputs: list of `n_steps` tensors `[batch, input_dims]` (or one
            `[batch, n_steps, input_dims]` tensor).
        dilations: list of ints, one per cell, each `1 <= d < n_steps`.

    Returns:
        The top layer's outputs, in the form of `inputs`.

    Raises:
        ValueError: if `len(cells) != len(dilations)` or a dilation is bad.
        ind_rnn.flavour.KerasFlavourError: for a Keras 3 cell.

    Example (graph mode, TF_USE_LEGACY_KERAS=1):

        cells = _contruct_cells([20] * 3, "GRU")
        top = multi_dRNN_with_dilations(cells, steps, [1, 2, 4])
    """
    dilations = list(dilations)
    check_same_length("cells", list(cells), "dilations", dilations)
    return _run_layers(list(cells), inputs, dilations, unique_layer_names(dilations),
                       "multi_dRNN_with_dilations")


def _contruct_cells(hidden_structs, cell_type):  # pylint: disable=invalid-name
    """One TF1 cell per layer, as the original (misspelt name kept).

    Args:
        hidden_structs: list of positive ints, the units of each layer.
        cell_type: "RNN" (`tf.compat.v1.nn.rnn_cell.BasicRNNCell`), "LSTM"
            (`BasicLSTMCell`, forget_bias 1.0), "GRU" (`GRUCell`) or "IndRNN"
            (`ind_rnn.legacy.IndRNNCell`).

    Returns:
        A list of new TF1 cells.

    Raises:
        ValueError: for an unknown `cell_type` (the original's message first)
            or a bad `hidden_structs`.

    Example (TF_USE_LEGACY_KERAS=1):

        cells = _contruct_cells([20, 30], "LSTM")  # two BasicLSTMCell
    """
    if cell_type not in CELL_TYPES:
        raise ValueError(
            "The cell type is not currently supported. Received an invalid value for "
            f"argument `cell_type`, expected one of {CELL_TYPES}, got {cell_type!r}.")
    hidden_structs = check_int_list("hidden_structs", hidden_structs)
    rnn_cell = _ind_rnn_legacy.legacy_rnn_cells()
    cell_classes = {"RNN": rnn_cell.BasicRNNCell, "LSTM": rnn_cell.BasicLSTMCell,
                    "GRU": rnn_cell.GRUCell, "IndRNN": _ind_rnn_legacy.IndRNNCell}
    return [cell_classes[cell_type](units) for units in hidden_structs]


def drnn_classification(x, hidden_structs, dilations, n_steps, n_classes, input_dims=1,
                        cell_type="RNN"):
    """The original's dilated RNN classifier in a TF1 graph; returns logits.

    The layers of `multi_dRNN_with_dilations` over `_contruct_cells`, then
    `logits = features @ Variable + Variable_1`, both drawn from a standard
    normal as the original, where `features` is the top layer's last output
    if `dilations[0] == 1`, else its last `dilations[0]` outputs
    concatenated oldest first.

    Args:
        x: tensor `[batch, n_steps, input_dims]` (e.g. a placeholder).
        hidden_structs: list of ints, the units of each layer.
        dilations: list of ints, one per layer, each `< n_steps`.
        n_steps: int, the length of the sequences.
        n_classes: int, the number of classes.
        input_dims: int, the number of input features.
        cell_type: "RNN", "LSTM", "GRU" or "IndRNN".

    Returns:
        Logits `[batch, n_classes]` (no softmax).

    Raises:
        ValueError: if `len(hidden_structs) != len(dilations)`, for a bad
            `cell_type`, dilation or size, or an `x` of another shape.

    Example (graph mode, TF_USE_LEGACY_KERAS=1):

        x = tf.compat.v1.placeholder(tf.float32, [None, 784, 1])
        logits = drnn_classification(x, [20] * 9, [2 ** i for i in range(9)], 784, 10)
    """
    hidden_structs = check_int_list("hidden_structs", hidden_structs)
    dilations = check_int_list("dilations", dilations)
    check_same_length("hidden_structs", hidden_structs, "dilations", dilations)
    n_steps = check_positive_int("n_steps", n_steps)
    n_classes = check_positive_int("n_classes", n_classes)
    input_dims = check_positive_int("input_dims", input_dims)
    _check_input_shape(x, n_steps, input_dims)
    for rate in dilations:
        check_rate(rate, n_steps)
    cells = _contruct_cells(hidden_structs, cell_type)
    sequence = tf.transpose(x, [1, 0, 2])
    sequence = _stack(cells, sequence, dilations, unique_layer_names(dilations))
    features = last_valid_steps(sequence, None, count=dilations[0])
    # Created after the layers, weights first: the graph names them
    # `Variable` and `Variable_1`, as in the original's checkpoints.
    weights = tf.compat.v1.Variable(
        tf.random.normal([hidden_structs[-1] * dilations[0], n_classes]))
    bias = tf.compat.v1.Variable(tf.random.normal([n_classes]))
    return tf.matmul(features, weights) + bias


GRAPH_MODE_INSTEAD = (
    "in graph mode the TF1 cells: tf.compat.v1.nn.rnn_cell.BasicRNNCell, BasicLSTMCell, "
    "GRUCell, ind_rnn.IndRNNCell (= ind_rnn.legacy.IndRNNCell under TF_USE_LEGACY_KERAS=1), "
    "or dilated_rnn._contruct_cells called in graph mode; Keras 3 cells go with eager "
    "execution and keras.Input (no disable_eager_execution).")


def _check_tf1_cells(cells, function_name):
    for cell in cells:
        if isinstance(cell, keras.layers.Layer):
            raise flavour.unsupported(
                f"the Keras 3 cell {flavour.describe(cell)} in `{function_name}` in TF1 graph "
                "mode, which runs TF1 cells under tf.compat.v1.nn.dynamic_rnn",
                GRAPH_MODE_INSTEAD)


def _run_layers(cells, inputs, dilations, scopes, function_name):
    """Runs the layers over either input form; returns the same form."""
    _check_tf1_cells(cells, function_name)
    is_list = isinstance(inputs, (list, tuple))
    n_steps, _ = _sequence_shape(inputs, is_list)
    n_steps = tf.compat.dimension_value(n_steps)
    for rate in dilations:
        check_rate(rate, n_steps)
    sequence = tf.stack(list(inputs), axis=0) if is_list else tf.transpose(inputs, [1, 0, 2])
    sequence = _stack(cells, sequence, dilations, scopes)
    if is_list:
        return tf.unstack(sequence, num=n_steps, axis=0)
    return tf.transpose(sequence, [1, 0, 2])


def _stack(cells, sequence, dilations, scopes):
    """One dilated layer per cell over a time-major sequence `[T, batch, d]`."""
    for cell, rate, scope in zip(cells, dilations, scopes):
        sequence = _dilated_layer(cell, sequence, rate, scope)
    return sequence


def _dilated_layer(cell, sequence, rate, scope):
    num_steps = tf.compat.dimension_value(sequence.shape[0])
    _log_layer(scope, num_steps, rate, tf.compat.dimension_value(sequence.shape[-1]))
    if num_steps is None:
        num_steps = tf.shape(sequence)[0]
    # dynamic_rnn in `scope` names the variables as the original's static_rnn
    # did (`<scope>/<cell scope>/...`), zero initial state in the input dtype.
    outputs, _ = tf.compat.v1.nn.dynamic_rnn(
        cell, dilation.dilate(sequence, rate), dtype=sequence.dtype, time_major=True,
        scope=scope)
    return dilation.undilate(outputs, rate, num_steps)
