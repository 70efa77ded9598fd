"""The TF1 original's `classification_models` module, for TF2 / Keras.

`_contruct_cells` (the original's spelling), `_rnn_reformat` and
`drnn_classification`, with the original's arguments and results. As in
`dilated_rnn.drnn`, what they build depends on how they are called
(`ind_rnn.flavour.graph_mode()`):

* in TF1 graph mode (placeholders, `Session`): the original graph with TF's
  TF1 cells and the original names (`multi_dRNN_dilation_<d>/...`, the output
  layer `Variable` / `Variable_1`), by `dilated_rnn.legacy` (needs tf-keras
  and TF_USE_LEGACY_KERAS=1; without them an ImportError says what to install
  and set);
* otherwise Keras 3: `_contruct_cells` returns the TF1-exact Keras 3 cells
  of `dilated_rnn.cells.construct_cells`, and `drnn_classification` called
  on a `keras.Input` returns a symbolic tensor to build a `keras.Model` that
  trains with `fit` and saves to `.keras`; called on an eager tensor it
  builds fresh weights and returns eager logits.
"""
import keras
import tensorflow as tf

from ind_rnn import flavour

from dilated_rnn._validation import check_int_list, check_positive_int
from dilated_rnn._validation import check_same_length
from dilated_rnn.cells import construct_cells
from dilated_rnn.drnn import check_keras3_arguments, check_rate, dilated_stack
from dilated_rnn.drnn import graph_api, unique_layer_names


def _contruct_cells(hidden_structs, cell_type):  # pylint: disable=invalid-name
    """One cell per layer (the original's misspelt public name).

    Args:
        hidden_structs: list of positive ints, the units of each layer.
        cell_type: "RNN", "LSTM", "GRU" or "IndRNN".

    Returns:
        In graph mode, TF1 cells (`tf.compat.v1.nn.rnn_cell.BasicRNNCell`,
        `BasicLSTMCell`, `GRUCell`, `ind_rnn.legacy.IndRNNCell`); otherwise
        the Keras 3 cells of `construct_cells`.

    Raises:
        ValueError: for an unknown `cell_type` ("The cell type is not
            currently supported.", then the details) or a bad `hidden_structs`.
        ImportError: in graph mode without tf-keras / TF_USE_LEGACY_KERAS=1.

    Example:

    >>> [cell.num_units for cell in _contruct_cells([20, 30], "GRU")]
    [20, 30]
    """
    if flavour.graph_mode():
        return graph_api("dilated_rnn.classification_models._contruct_cells")._contruct_cells(
            hidden_structs, cell_type)
    return construct_cells(hidden_structs, cell_type)


def _rnn_reformat(x, input_dims, n_steps):
    """`[batch, n_steps, input_dims]` tensor -> list of `n_steps` tensors.

    Args:
        x: tensor `[batch, n_steps, input_dims]`.
        input_dims: int, the size of the last axis.
        n_steps: int, the number of steps.

    Returns:
        A list of `n_steps` tensors `[batch, input_dims]`, in time order.
        (Plain reshapes: in graph mode TensorFlow ops, otherwise Keras ops,
        which also take a `keras.Input`.)

    Example:

    >>> steps = _rnn_reformat(np.zeros((4, 3, 2), "float32"), 2, 3)
    >>> len(steps), tuple(steps[0].shape)
    (3, (4, 2))
    """
    ops = tf if flavour.graph_mode() else keras.ops
    if not flavour.graph_mode():
        check_keras3_arguments("dilated_rnn.classification_models._rnn_reformat", x)
    x_ = ops.transpose(x, (1, 0, 2))
    x_ = ops.reshape(x_, (-1, input_dims))
    return ops.split(x_, n_steps, axis=0)


def drnn_classification(x, hidden_structs, dilations, n_steps, n_classes,
                        input_dims=1, cell_type="RNN"):
    """A multi-layer dilated RNN classifier; returns logits (no softmax).

    The layers are those of `multi_dRNN_with_dilations` (named
    `"multi_dRNN_dilation_<d>"`). The logits are an affine map, weights and
    bias drawn from a standard normal (as the original; not Glorot), of the
    top layer's last output if `dilations[0] == 1`; otherwise of the last
    `dilations[0]` top-layer outputs concatenated in time order along the
    features, which recovers the dependencies lost by starting above
    dilation 1.

    In graph mode this builds the original TF1 graph
    (`dilated_rnn.legacy.drnn_classification`), and returns a graph tensor.

    Args:
        x: tensor `[batch, n_steps, input_dims]`: eager or `keras.Input`, or
            in graph mode a `tf.compat.v1.placeholder`.
        hidden_structs: list of ints, the units of each layer.
        dilations: list of ints, the dilation of each layer, each
            `< n_steps`.
        n_steps: int, the length of the sequences.
        n_classes: int, the number of classes.
        input_dims: int, the number of input features.
        cell_type: "RNN", "LSTM", "GRU" or "IndRNN".

    Returns:
        Logits `[batch, n_classes]`.

    Raises:
        ValueError: if `len(hidden_structs) != len(dilations)`, for a bad
            `cell_type`, dilation, size, or an `x` of another shape.
        ImportError: in graph mode without tf-keras / TF_USE_LEGACY_KERAS=1.
        ind_rnn.flavour.KerasFlavourError: for a tf-keras `x`
            (`tf.keras.Input`) outside graph mode.

    Example:

    >>> inputs = keras.Input((784, 1))
    >>> logits = drnn_classification(inputs, [20] * 9,
    ...                              [2 ** i for i in range(9)], 784, 10)
    >>> keras.Model(inputs, logits).count_params()
    7210
    """
    if flavour.graph_mode():
        return graph_api("dilated_rnn.classification_models.drnn_classification") \
            .drnn_classification(x, hidden_structs, dilations, n_steps, n_classes,
                                 input_dims, cell_type)
    check_keras3_arguments("dilated_rnn.classification_models.drnn_classification", x)
    hidden_structs = check_int_list("hidden_structs", hidden_structs)
    dilations = check_int_list("dilations", dilations)
    check_same_length("hidden_structs", hidden_structs, "dilations",
                      dilations)
    n_steps = check_positive_int("n_steps", n_steps)
    n_classes = check_positive_int("n_classes", n_classes)
    input_dims = check_positive_int("input_dims", input_dims)
    _check_input_shape(x, n_steps, input_dims)
    for dilation in dilations:
        check_rate(dilation, n_steps)
    cells = _contruct_cells(hidden_structs, cell_type)

    # The layers of multi_dRNN_with_dilations, kept time-major throughout.
    sequence = dilated_stack(cells, keras.ops.transpose(x, (1, 0, 2)),
                             dilations, unique_layer_names(dilations),
                             last_steps=dilations[0])

    # Last dilations[0] outputs, oldest first, side by side on features.
    fused = keras.ops.transpose(sequence[-dilations[0]:, :, :], (1, 0, 2))
    fused = keras.ops.reshape(fused, (-1, dilations[0] * hidden_structs[-1]))
    return output_layer(n_classes)(fused)


def output_layer(n_classes, name="drnn_classification_output", dtype=None):
    """The original's output layer: `x @ W + b`, W and b standard normal."""
    return keras.layers.Dense(
        n_classes, name=name, dtype=dtype,
        kernel_initializer=keras.initializers.RandomNormal(stddev=1.0),
        bias_initializer=keras.initializers.RandomNormal(stddev=1.0))


def _check_input_shape(x, n_steps, input_dims):
    shape = getattr(x, "shape", None)
    if (shape is None or len(shape) != 3
            or shape[1] not in (None, n_steps)
            or shape[2] not in (None, input_dims)):
        raise ValueError(
            "Received an invalid value for argument `x`, expected a tensor "
            f"of shape [batch, n_steps={n_steps}, input_dims={input_dims}], "
            f"got shape {shape}.")
