"""What TF1 checkpoints hold and how each Keras cell takes it: the registries
that `load_tf1_checkpoint` reads.

* A `CellFormat` says which TF1 variables (names under the cell's scope, and
  shapes) a kind of Keras cell takes, and how they become its own variables:
  a copy for the TF1-exact cells; gates reordered and kernels split for
  Keras' `SimpleRNNCell`, `LSTMCell` and `GRUCell`.
* A registered recurrent layer (e.g. `dilated_rnn.DilatedRNN`) lists the
  cells it holds, as `RecurrentUnit`s.
* A `Layout` says how one family of TF1 graphs named its recurrent layers'
  scopes: "multi_rnn_cell", "rnn_k" and "rnn" here (the IndRNN scripts);
  `dilated_rnn.tf1_checkpoint` registers "drnn" and its cells on import.
"""
import dataclasses
import re
from typing import Callable, Optional, Tuple

import keras
import numpy as np

from ind_rnn.keras_cell import IndRNNCell


# --------------------------------------------------------------------------
# Registries: what a cell stores, what a layer holds, how a layout names it
# --------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class CellFormat:
    """How one kind of Keras cell takes its weights from a TF1 cell's variables.

    Attributes:
        tf1_cell_scopes: the scope names the matching TF1 cell classes gave
            their variables (e.g. `("basic_lstm_cell", "lstm_cell")`), tried
            in order.
        tf1_shapes: `fn(cell) -> {name: shape}`, the TF1 variables (names
            relative to the cell scope, e.g. "gates/kernel") and the shapes
            they must have to fit `cell`.
        convert: `fn(values, cell, forget_bias) -> [(keras_variable, array,
            sources)]`, from the TF1 values (same keys as `tf1_shapes`) to the
            cell's variables; `sources` names the keys each array came from.
            `forget_bias` is what the TF1 LSTM cells added at run time.
    """
    tf1_cell_scopes: Tuple[str, ...]
    tf1_shapes: Callable
    convert: Callable


@dataclasses.dataclass(frozen=True)
class RecurrentUnit:
    """One recurrent cell of a target, the unit that one TF1 layer maps onto.

    Attributes:
        cell: the Keras cell holding the weights.
        dilation: the layer's dilation (DilatedRNN layers), else None.
    """
    cell: object
    dilation: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class Layout:
    """How one family of TF1 graphs names its recurrent layers.

    Attributes:
        name: the `layout` argument that picks it.
        detect: `fn(checkpoint_names) -> bool`, whether a checkpoint looks
            like this layout (tried in registration order for "auto").
        scopes: `fn(units, checkpoint_names) -> [scope]`, the TF1 scope of
            every unit's layer.
        layer_scope: regex whose first group, matched at the start of a
            checkpoint name, is a recurrent layer's scope; used to refuse
            checkpoints holding more layers than the target.
        dense_variables: the output layer's `(kernel, bias)` names, tried
            before `tf.layers.dense` names for "auto".
    """
    name: str
    detect: Callable
    scopes: Callable
    layer_scope: str
    dense_variables: Tuple[Tuple[str, str], ...] = ()


_CELL_FORMATS = {}
_RECURRENT_LAYERS = {}
_LAYOUTS = {}


def register_cell_format(cell_class, cell_format):
    """Declares how cells of `cell_class` (and subclasses) load TF1 weights.

    Args:
        cell_class: a Keras RNN cell class.
        cell_format: a `CellFormat`.
    """
    _CELL_FORMATS[cell_class] = cell_format


def register_recurrent_layer(layer_class, units):
    """Declares a layer class that holds several recurrent cells.

    Args:
        layer_class: a Keras layer class (e.g. `dilated_rnn.DilatedRNN`).
        units: `fn(layer) -> [RecurrentUnit]`, its cells in layer order.
    """
    _RECURRENT_LAYERS[layer_class] = units


def register_layout(layout):
    """Adds a `Layout`, selectable by its name and tried by "auto"."""
    _LAYOUTS[layout.name] = layout



def cell_format_of(cell):
    """The `CellFormat` of `cell`'s class or of its nearest registered base, else None."""
    for cell_class in type(cell).__mro__:
        if cell_class in _CELL_FORMATS:
            return _CELL_FORMATS[cell_class]
    return None


def registered_units(layer):
    """The `[RecurrentUnit]` of a registered multi-cell layer, else None."""
    for layer_class in type(layer).__mro__:
        if layer_class in _RECURRENT_LAYERS:
            return _RECURRENT_LAYERS[layer_class](layer)
    return None


def known_cell_classes():
    """The names of the cell classes that have a format, sorted."""
    return sorted(cell_class.__name__ for cell_class in _CELL_FORMATS)


def layouts():
    """`{name: Layout}` in registration order, the order "auto" tries them in."""
    return dict(_LAYOUTS)


# --------------------------------------------------------------------------
# Cell formats of ind_rnn and of Keras' own cells
# --------------------------------------------------------------------------
def variable_shape(variable):
    """A variable's shape as a tuple of ints."""
    return tuple(int(size) for size in variable.shape)


def _input_depth(kernel):
    return int(kernel.shape[0])


def copy_format(tf1_cell_scopes, variables):
    """A `CellFormat` for a cell that stores TF1's layout as it is.

    Args:
        tf1_cell_scopes: tuple of TF1 cell scope names.
        variables: `{tf1_name: attribute}`: the TF1 variable (relative to the
            cell scope) and the attribute of the cell that holds it.

    Returns:
        A `CellFormat` whose conversion is a copy.
    """
    def tf1_shapes(cell):
        return {name: variable_shape(getattr(cell, attribute))
                for name, attribute in variables.items()}

    def convert(values, cell, forget_bias):
        del forget_bias
        return [(getattr(cell, attribute), values[name], (name,))
                for name, attribute in variables.items()]

    return CellFormat(tuple(tf1_cell_scopes), tf1_shapes, convert)


def require_cell(condition, cell, expected):
    """Raises the ValueError naming `cell` and what it must be, unless `condition`."""
    if not condition:
        raise ValueError(
            f"Received an invalid value for argument `target`: its cell `{cell.name}` "
            f"({type(cell).__name__}) cannot hold TF1 weights, expected {expected}.")


def _check_keras_cell(cell, gates):
    require_cell(cell.use_bias, cell, "use_bias=True (TF1 cells have a bias)")
    require_cell(cell.activation is keras.activations.tanh, cell,
             "activation='tanh' (TF1's default)")
    if gates:
        require_cell(cell.recurrent_activation is keras.activations.sigmoid, cell,
                 "recurrent_activation='sigmoid' (TF1's gates)")


def _simple_rnn_shapes(cell):
    units = cell.units
    return {"kernel": (_input_depth(cell.kernel) + units, units), "bias": (units,)}


def _simple_rnn_convert(values, cell, forget_bias):
    """TF1 `[x, h] @ kernel` -> Keras `x @ kernel + h @ recurrent_kernel`."""
    del forget_bias
    _check_keras_cell(cell, gates=False)
    depth = _input_depth(cell.kernel)
    kernel = values["kernel"]
    return [(cell.kernel, kernel[:depth], ("kernel",)),
            (cell.recurrent_kernel, kernel[depth:], ("kernel",)),
            (cell.bias, values["bias"], ("bias",))]


def _lstm_shapes(cell):
    units = cell.units
    return {"kernel": (_input_depth(cell.kernel) + units, 4 * units), "bias": (4 * units,)}


def _lstm_convert(values, cell, forget_bias):
    """TF1 gates i, j, f, o (forget_bias added at run time) -> Keras i, f, c, o."""
    _check_keras_cell(cell, gates=True)
    depth = _input_depth(cell.kernel)
    i, j, f, o = np.split(values["kernel"], 4, axis=1)
    kernel = np.concatenate([i, f, j, o], axis=1)
    bias_i, bias_j, bias_f, bias_o = np.split(values["bias"], 4)
    bias = np.concatenate([bias_i, bias_f + forget_bias, bias_j, bias_o])
    return [(cell.kernel, kernel[:depth], ("kernel",)),
            (cell.recurrent_kernel, kernel[depth:], ("kernel",)), (cell.bias, bias, ("bias",))]


def _gru_shapes(cell):
    units = cell.units
    rows = _input_depth(cell.kernel) + units
    return {"gates/kernel": (rows, 2 * units), "gates/bias": (2 * units,),
            "candidate/kernel": (rows, units), "candidate/bias": (units,)}


def _gru_convert(values, cell, forget_bias):
    """TF1 gates r, u and candidate -> Keras (reset_after=False) z(=u), r, h."""
    del forget_bias
    _check_keras_cell(cell, gates=True)
    require_cell(not cell.reset_after, cell,
             "reset_after=False (TF1's GRUCell resets the state before the matmul)")
    depth = _input_depth(cell.kernel)
    reset, update = np.split(values["gates/kernel"], 2, axis=1)
    kernel = np.concatenate([update, reset, values["candidate/kernel"]], axis=1)
    bias_reset, bias_update = np.split(values["gates/bias"], 2)
    bias = np.concatenate([bias_update, bias_reset, values["candidate/bias"]])
    kernels, biases = ("gates/kernel", "candidate/kernel"), ("gates/bias", "candidate/bias")
    return [(cell.kernel, kernel[:depth], kernels),
            (cell.recurrent_kernel, kernel[depth:], kernels), (cell.bias, bias, biases)]


register_cell_format(IndRNNCell, copy_format(
    ("ind_rnn_cell",), {"input_kernel": "input_kernel", "recurrent_kernel": "recurrent_kernel",
                        "bias": "bias"}))
register_cell_format(keras.layers.SimpleRNNCell, CellFormat(
    ("basic_rnn_cell",), _simple_rnn_shapes, _simple_rnn_convert))
register_cell_format(keras.layers.LSTMCell, CellFormat(
    ("basic_lstm_cell", "lstm_cell"), _lstm_shapes, _lstm_convert))
register_cell_format(keras.layers.GRUCell, CellFormat(
    ("gru_cell",), _gru_shapes, _gru_convert))


# --------------------------------------------------------------------------
# Layouts of the IndRNN scripts
# --------------------------------------------------------------------------
def scopes_matching(pattern, names):
    """The distinct first groups of `pattern` matched at the start of `names`, sorted."""
    return sorted({match.group(1) for match in map(re.compile(pattern).match, names) if match})


_MULTI_RNN_CELL = r"^(.+?/multi_rnn_cell/cell_\d+)/"
_RNN_K = r"^(rnn\d+)/"
_SINGLE_RNN = r"^(rnn)/(?!multi_rnn_cell/)"


def _multi_rnn_cell_scopes(units, names):
    roots = sorted({scope.rsplit("/multi_rnn_cell/", 1)[0]
                    for scope in scopes_matching(_MULTI_RNN_CELL, names)})
    root = roots[0] if len(roots) == 1 else "rnn"
    return [f"{root}/multi_rnn_cell/cell_{index}" for index in range(len(units))]


def _rnn_k_scopes(units, names):
    present = [int(scope[3:]) for scope in scopes_matching(_RNN_K, names)]
    first = min(present) if present else 1
    return [f"rnn{first + index}" for index in range(len(units))]


def _single_rnn_scopes(units, names):
    del names
    if len(units) != 1:
        raise ValueError(
            "Received an invalid value for argument `layout`, expected a target with one "
            f"recurrent cell for layout 'rnn' (a single cell in dynamic_rnn), got "
            f"{len(units)} cells; pass `scopes=[...]`, one per cell.")
    return ["rnn"]


_SCRIPT_OUTPUT = (("softmax_weight", "softmax_bias"),)
register_layout(Layout("multi_rnn_cell",
                       lambda names: bool(scopes_matching(_MULTI_RNN_CELL, names)),
                       _multi_rnn_cell_scopes, _MULTI_RNN_CELL, _SCRIPT_OUTPUT))
register_layout(Layout("rnn_k", lambda names: bool(scopes_matching(_RNN_K, names)),
                       _rnn_k_scopes, _RNN_K, _SCRIPT_OUTPUT))
register_layout(Layout("rnn", lambda names: bool(scopes_matching(_SINGLE_RNN, names)),
                       _single_rnn_scopes, _SINGLE_RNN, _SCRIPT_OUTPUT))
