"""Load checkpoints of the TF1 originals into the TF2 / Keras models.

`load_tf1_checkpoint(target, checkpoint_path)` reads a checkpoint written by
`tf.compat.v1.train.Saver` (`tf.train.load_checkpoint`) and assigns its
variables to a built Keras model or layer. It is shared by `ind_rnn` and
`dilated_rnn` (which registers its own layers and cells here on import).

How TF1 names map onto the target:

* The target's recurrent cells, in order (depth first through the model:
  the cell of every `keras.layers.RNN`, e.g. `ind_rnn.IndRNN`, the cells of
  every `dilated_rnn.DilatedRNN`, bare cells), take the TF1 recurrent
  layers in order. Layer `k`'s TF1 variable scope depends on the layout:

  - "multi_rnn_cell": `tf.nn.dynamic_rnn(MultiRNNCell([...]))`,
    `rnn/multi_rnn_cell/cell_<k>` (the addition script);
  - "rnn_k": one `dynamic_rnn` per layer with `scope="rnn%d" % k`,
    `rnn1`, `rnn2`, ... (the sequential MNIST script);
  - "rnn": a single cell in `dynamic_rnn`, `rnn`;
  - "drnn": the DilatedRNN demo, `multi_dRNN_dilation_<d>` (registered by
    `dilated_rnn`);
  - or `scopes=[...]`, one scope per cell.

  Under that scope the cell's own scope (`ind_rnn_cell`, `basic_rnn_cell`,
  `basic_lstm_cell` / `lstm_cell`, `gru_cell`) holds its variables; TF < 1.5
  names (`weights`, `biases`) are accepted too.
* The target's `Dense` layers, in order, take the output weights:
  `Variable` / `Variable_1` for "drnn", `softmax_weight` / `softmax_bias` for
  the IndRNN scripts, `dense/kernel` / `dense/bias`, `dense_1/...` for
  `tf.layers.dense`; or `dense_variables=[(kernel_name, bias_name), ...]`.
* The target's `BatchNormalization` layers, in order, take the
  `tf.layers.batch_normalization` scopes `batch_normalization`,
  `batch_normalization_1`, ... (gamma, beta, moving_mean, moving_variance).

Layouts are converted where the target cell stores its weights differently:
Keras' `SimpleRNNCell`, `LSTMCell` (gate order i, f, c, o instead of TF1's
i, j, f, o; separate input and recurrent kernels; TF1's run-time
`forget_bias` folded into the f bias) and `GRUCell(reset_after=False)` (z, r,
h from TF1's r, u gates and candidate) take TF1 weights; the TF1-exact cells
of `dilated_rnn` and `ind_rnn.IndRNNCell` store TF1's layouts, so for them it
is a copy. Everything is checked before anything is assigned: a missing or
mis-shaped variable raises a ValueError listing every problem and leaves the
target untouched.
"""
import dataclasses
import os
import re
from typing import Callable, Optional, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf

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


# --------------------------------------------------------------------------
# Cell formats of ind_rnn and of Keras' own cells
# --------------------------------------------------------------------------
def _shape(variable):
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
        return {name: _shape(getattr(cell, attribute)) for name, attribute in variables.items()}

    def convert(values, cell, forget_bias):
        del forget_bias
        return [(getattr(cell, attribute), values[name], (name,))
                for name, attribute in variables.items()]

    return CellFormat(tuple(tf1_cell_scopes), tf1_shapes, convert)


def _require(condition, cell, expected):
    if not condition:
        raise ValueError(
            f"Received an invalid value for argument `target`: its cell `{cell.name}` "
            f"({type(cell).__name__}) cannot hold TF1 weights, expected {expected}.")


def _check_keras_cell(cell, gates):
    _require(cell.use_bias, cell, "use_bias=True (TF1 cells have a bias)")
    _require(cell.activation is keras.activations.tanh, cell,
             "activation='tanh' (TF1's default)")
    if gates:
        _require(cell.recurrent_activation is keras.activations.sigmoid, cell,
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
    _require(not cell.reset_after, cell,
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
def _matches(pattern, names):
    return sorted({match.group(1) for match in map(re.compile(pattern).match, names) if match})


_MULTI_RNN_CELL = r"^(.+?/multi_rnn_cell/cell_\d+)/"
_RNN_K = r"^(rnn\d+)/"
_SINGLE_RNN = r"^(rnn)/(?!multi_rnn_cell/)"


def _multi_rnn_cell_scopes(units, names):
    roots = sorted({scope.rsplit("/multi_rnn_cell/", 1)[0]
                    for scope in _matches(_MULTI_RNN_CELL, names)})
    root = roots[0] if len(roots) == 1 else "rnn"
    return [f"{root}/multi_rnn_cell/cell_{index}" for index in range(len(units))]


def _rnn_k_scopes(units, names):
    present = [int(scope[3:]) for scope in _matches(_RNN_K, names)]
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
register_layout(Layout("multi_rnn_cell", lambda names: bool(_matches(_MULTI_RNN_CELL, names)),
                       _multi_rnn_cell_scopes, _MULTI_RNN_CELL, _SCRIPT_OUTPUT))
register_layout(Layout("rnn_k", lambda names: bool(_matches(_RNN_K, names)),
                       _rnn_k_scopes, _RNN_K, _SCRIPT_OUTPUT))
register_layout(Layout("rnn", lambda names: bool(_matches(_SINGLE_RNN, names)),
                       _single_rnn_scopes, _SINGLE_RNN, _SCRIPT_OUTPUT))


# --------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class TF1CheckpointReport:
    """What `load_tf1_checkpoint` did.

    Attributes:
        layout: the layout used ("multi_rnn_cell", "rnn_k", "rnn", "drnn",
            or "scopes" when given explicitly).
        loaded: `(target_variable_path, tf1_names)` pairs, in load order;
            `tf1_names` is a tuple (a Keras variable may come from parts of
            one TF1 variable, or from several).
        unused_checkpoint_variables: checkpoint names nothing read (optimizer
            slots, `global_step`, layers the target has no place for).
        unloaded_target_variables: paths of the target's variables left as
            they were.
    """
    layout: str
    loaded: Tuple[Tuple[str, Tuple[str, ...]], ...]
    unused_checkpoint_variables: Tuple[str, ...]
    unloaded_target_variables: Tuple[str, ...]

    def __str__(self):
        lines = [f"TF1 checkpoint import (layout {self.layout!r}): "
                 f"{len(self.loaded)} variables loaded."]
        lines += [f"  {path} <- {', '.join(names)}" for path, names in self.loaded]
        unused, unloaded = self.unused_checkpoint_variables, self.unloaded_target_variables
        if unused:
            lines.append(f"Not used from the checkpoint ({len(unused)}): " + ", ".join(unused))
        if unloaded:
            lines.append(f"Left as they were in the target ({len(unloaded)}): "
                         + ", ".join(unloaded))
        return "\n".join(lines)


# --------------------------------------------------------------------------
# Walking the target
# --------------------------------------------------------------------------
@dataclasses.dataclass
class _TargetParts:
    units: list = dataclasses.field(default_factory=list)
    dense: list = dataclasses.field(default_factory=list)
    norms: list = dataclasses.field(default_factory=list)


def _format_of(cell):
    for cell_class in type(cell).__mro__:
        if cell_class in _CELL_FORMATS:
            return _CELL_FORMATS[cell_class]
    return None


def _registered_units(layer):
    for layer_class in type(layer).__mro__:
        if layer_class in _RECURRENT_LAYERS:
            return _RECURRENT_LAYERS[layer_class](layer)
    return None


def _rnn_cells(layer):
    cell = layer.cell
    return list(cell.cells) if isinstance(cell, keras.layers.StackedRNNCells) else [cell]


def _sublayers(layer):
    if isinstance(layer, keras.Model):
        return list(layer.layers)
    # Keras 3 has no public list of a plain layer's sublayers.
    return list(layer._flatten_layers(  # pylint: disable=protected-access
        include_self=False, recursive=False))


def _collect(layer, parts):
    """Fills `parts` with the target's cells, Dense and BN layers, in order."""
    registered = _registered_units(layer)
    if registered is not None:
        parts.units.extend(registered)
    elif isinstance(layer, keras.layers.RNN):
        parts.units.extend(RecurrentUnit(cell) for cell in _rnn_cells(layer))
    elif _format_of(layer) is not None:
        parts.units.append(RecurrentUnit(layer))
    elif isinstance(layer, keras.layers.Dense):
        parts.dense.append(layer)
    elif isinstance(layer, keras.layers.BatchNormalization):
        parts.norms.append(layer)
    else:
        for sublayer in _sublayers(layer):
            _collect(sublayer, parts)


def _target_parts(target):
    if not isinstance(target, keras.layers.Layer):
        raise TypeError(
            "Received an invalid value for argument `target`, expected a Keras model or "
            f"layer (Keras 3), got {type(target).__name__}: {target!r}.")
    parts = _TargetParts()
    _collect(target, parts)
    unbuilt = [layer.name for layer in [unit.cell for unit in parts.units]
               + parts.dense + parts.norms if not layer.built]
    if unbuilt:
        raise ValueError(
            "Received an invalid value for argument `target`, expected a built model or "
            f"layer (call it on a batch first, so its weights exist), got unbuilt {unbuilt}.")
    if not parts.units:
        raise ValueError(
            "Received an invalid value for argument `target`, expected a model or layer "
            f"with at least one recurrent cell, got `{target.name}` with none.")
    for unit in parts.units:
        if _format_of(unit.cell) is None:
            known = sorted(cls.__name__ for cls in _CELL_FORMATS)
            raise ValueError(
                "Received an invalid value for argument `target`, expected recurrent cells "
                f"of the known kinds {known}, got `{unit.cell.name}` "
                f"({type(unit.cell).__name__}).")
    return parts


# --------------------------------------------------------------------------
# Planning: every assignment worked out and checked before any is made
# --------------------------------------------------------------------------
class _Plan:
    """Assignments to make and problems found, collected over the whole target."""

    def __init__(self, reader, shapes):
        self.reader = reader
        self.shapes = shapes
        self.assignments = []  # (keras variable, value to assign, tf1 names it came from)
        self.missing = []      # (tf1 name, what needed it)
        self.mismatched = []   # (tf1 name, checkpoint shape, needed shape, what needed it)
        self.hints = []
        self.used = set()
        self.derived = []      # variables set from what was loaded (batch norm's moving_weight)

    def find(self, name):
        """`name`, or its TF < 1.5 spelling (weights / biases), if stored."""
        if name in self.shapes:
            return name
        scope, _, leaf = name.rpartition("/")
        old_leaf = leaf.replace("kernel", "weights").replace("bias", "biases")
        old = f"{scope}/{old_leaf}" if scope else old_leaf
        return old if old in self.shapes else None

    def check(self, name, needed_shape, needed_by):
        """The stored name for `name` if it exists with `needed_shape`, else None."""
        stored = self.find(name)
        if stored is None:
            self.missing.append((name, needed_by))
            return None
        if tuple(self.shapes[stored]) != tuple(needed_shape):
            self.mismatched.append((stored, tuple(self.shapes[stored]), tuple(needed_shape),
                                    needed_by))
            return None
        return stored

    def hint_scope(self, scope):
        """Notes what the checkpoint holds under `scope` (optimizer slots aside)."""
        held = sorted(name for name in self.shapes
                      if name.startswith(scope + "/") and not self.is_slot(name))
        self.hints.append(f"under `{scope}/` the checkpoint holds: "
                          + (", ".join(held[:12]) if held else "nothing"))

    def is_slot(self, name):
        """An optimizer slot is stored under its variable's name (".../kernel/Adam")."""
        return name.rpartition("/")[0] in self.shapes

    def read(self, stored_names):
        return {key: self.reader.get_tensor(name) for key, name in stored_names.items()}


def _cell_scope(plan, scope, cell_format):
    """The first of the format's cell scopes that the checkpoint has under `scope`."""
    for cell_scope in cell_format.tf1_cell_scopes:
        prefix = f"{scope}/{cell_scope}/"
        if any(name.startswith(prefix) for name in plan.shapes):
            return cell_scope
    return cell_format.tf1_cell_scopes[0]


def _cell_path(cell):
    """Where the cell's weights live in the model, e.g. "ind_rnn_1/ind_rnn_cell"."""
    return cell.weights[0].path.rsplit("/", 1)[0] if cell.weights else cell.name


def _plan_unit(plan, unit, scope, forget_bias):
    cell_format = _format_of(unit.cell)
    cell_scope = _cell_scope(plan, scope, cell_format)
    needed_by = f"cell `{_cell_path(unit.cell)}` ({type(unit.cell).__name__})"
    missing_before = len(plan.missing)
    stored = {}
    for name, shape in cell_format.tf1_shapes(unit.cell).items():
        stored[name] = plan.check(f"{scope}/{cell_scope}/{name}", shape, needed_by)
    if len(plan.missing) > missing_before:
        plan.hint_scope(scope)
    if None in stored.values():
        return
    plan.used.update(stored.values())
    for variable, value, sources in cell_format.convert(plan.read(stored), unit.cell,
                                                        forget_bias):
        plan.assignments.append((variable, value, tuple(stored[key] for key in sources)))


def _plan_weights(plan, layer, named_variables):
    """Plans `[(tf1_name, keras_variable)]` of a Dense or BN layer: all or none."""
    needed_by = f"layer `{layer.name}` ({type(layer).__name__})"
    missing_before = len(plan.missing)
    checked = [(plan.check(name, _shape(variable), needed_by), variable)
               for name, variable in named_variables]
    scope = named_variables[0][0].rpartition("/")[0]
    if scope and len(plan.missing) > missing_before:
        plan.hint_scope(scope)
    if any(stored is None for stored, _ in checked):
        return
    for stored, variable in checked:
        plan.used.add(stored)
        plan.assignments.append((variable, plan.reader.get_tensor(stored), (stored,)))


def _tf_layers_names(shapes, base):
    """`base`, `base_1`, `base_2`, ... while the checkpoint has them (tf.layers naming)."""
    names, index = [], 0
    while True:
        name = base if index == 0 else f"{base}_{index}"
        if not any(key.startswith(name + "/") for key in shapes):
            return names
        names.append(name)
        index += 1


def _auto_dense_variables(layout, shapes):
    pairs = [pair for pair in (layout.dense_variables if layout else ())
             if pair[0] in shapes]
    pairs += [(f"{scope}/kernel", f"{scope}/bias") for scope in _tf_layers_names(shapes, "dense")]
    return pairs


def _pair_layers(argument, layers, names, description):
    """Pairs target layers with TF1 names when counts agree; None when one side is empty."""
    if not layers or not names:
        return []
    if len(layers) != len(names):
        raise ValueError(
            f"Received an invalid value for argument `{argument}`, expected one {description} "
            f"per {type(layers[0]).__name__} layer of the target ({[l.name for l in layers]}), "
            f"got {len(names)}: {names}. Pass `{argument}=[...]` explicitly "
            f"(or [] to load none).")
    return list(zip(layers, names))


def _plan_dense(plan, dense_layers, pairs):
    for layer, (kernel_name, bias_name) in _pair_layers(
            "dense_variables", dense_layers, pairs, "(kernel, bias) pair"):
        named = [(kernel_name, layer.kernel)]
        if bias_name is not None:
            _require(layer.use_bias, layer, f"use_bias=True to take the bias {bias_name!r}")
            named.append((bias_name, layer.bias))
        _plan_weights(plan, layer, named)


_BATCH_NORM_VARIABLES = ("gamma", "beta", "moving_mean", "moving_variance")


def _plan_norms(plan, norm_layers, scopes):
    for layer, scope in _pair_layers("batch_norm_scopes", norm_layers, scopes, "scope"):
        # A layer built with scale=False / center=False has no gamma / beta.
        _plan_weights(plan, layer, [(f"{scope}/{name}", getattr(layer, name))
                                    for name in _BATCH_NORM_VARIABLES
                                    if getattr(layer, name, None) is not None])


# --------------------------------------------------------------------------
# The entry point
# --------------------------------------------------------------------------
def _open_checkpoint(checkpoint_path):
    if not isinstance(checkpoint_path, (str, os.PathLike)):
        raise TypeError(
            "Received an invalid value for argument `checkpoint_path`, expected a path (str "
            f"or os.PathLike) to a TF1 checkpoint, got {checkpoint_path!r}.")
    try:
        reader = tf.train.load_checkpoint(os.fspath(checkpoint_path))
    except (tf.errors.OpError, ValueError) as error:
        raise ValueError(
            "Received an invalid value for argument `checkpoint_path`, expected a TF1 "
            "checkpoint prefix (e.g. 'model.ckpt-1000') or a directory with a `checkpoint` "
            f"file, got {os.fspath(checkpoint_path)!r}: "
            f"{getattr(error, 'message', error)}") from error
    return reader


def _resolve_layout(layout, scopes, units, names):
    """(layout name, Layout or None, scope per unit)."""
    if scopes is not None:
        if (isinstance(scopes, (str, bytes)) or not isinstance(scopes, Sequence)
                or not all(isinstance(scope, str) and scope for scope in scopes)):
            raise TypeError("Received an invalid value for argument `scopes`, expected a list "
                            f"of TF1 scope names (str), got {scopes!r}.")
        if len(scopes) != len(units):
            raise ValueError(
                "Received an invalid value for argument `scopes`, expected one scope per "
                f"recurrent cell of the target ({len(units)}), got {len(scopes)}: {scopes}.")
        return "scopes", None, [scope.rstrip("/") for scope in scopes]
    choices = ("auto",) + tuple(_LAYOUTS)
    if layout not in choices:
        raise ValueError("Received an invalid value for argument `layout`, expected one of "
                         f"{choices}, got {layout!r}.")
    if layout == "auto":
        detected = [candidate.name for candidate in _LAYOUTS.values()
                    if candidate.detect(names)]
        if len(detected) != 1:
            raise ValueError(
                "Received an invalid value for argument `layout`, expected a layout named "
                f"explicitly (one of {tuple(_LAYOUTS)}) or `scopes=[...]`, because the "
                f"checkpoint's names match {detected or 'none'} of them, got 'auto' (first "
                f"names: {sorted(names)[:10]}).")
        layout = detected[0]
    chosen = _LAYOUTS[layout]
    return layout, chosen, chosen.scopes(units, names)


def _check_layer_count(plan, layout, units):
    """Refuses a checkpoint with more recurrent layers than the target has cells."""
    if layout is None:
        return
    stored = _matches(layout.layer_scope, plan.shapes)
    if len(stored) > len(units):
        raise ValueError(
            "Received an invalid value for argument `target`, expected one recurrent cell per "
            f"recurrent layer of the checkpoint ({len(stored)}: {stored}), got {len(units)}.")


def _problems_message(checkpoint_path, target, layout_name, plan):
    lines = [f"Cannot load the TF1 checkpoint {os.fspath(checkpoint_path)!r} into "
             f"`{target.name}` (layout {layout_name!r}); nothing was loaded."]
    if plan.missing:
        lines.append(f"Missing from the checkpoint ({len(plan.missing)}):")
        lines += [f"  {name}  (needed by {needed_by})" for name, needed_by in plan.missing]
    if plan.mismatched:
        lines.append(f"Wrong shape ({len(plan.mismatched)}):")
        lines += [f"  {name}: checkpoint shape {list(stored)}, {needed_by} needs {list(needed)}"
                  for name, stored, needed, needed_by in plan.mismatched]
    lines += [f"Hint: {hint}" for hint in plan.hints]
    return "\n".join(lines)


def load_tf1_checkpoint(target, checkpoint_path, layout="auto", scopes=None,
                        dense_variables="auto", batch_norm_scopes="auto", forget_bias=1.0):
    """Loads a TF1 checkpoint of the original graphs into a built Keras model.

    The target's recurrent cells, in order, take the checkpoint's recurrent
    layers (see the module docstring for the layouts and conversions); its
    `Dense` and `BatchNormalization` layers, in order, take the output layer
    and `tf.layers.batch_normalization` variables when the checkpoint has
    them. Settings that are not variables (IndRNN's `recurrent_max_abs`,
    dilations, activations) must be given to the TF2 model as they were in
    TF1. All variables are read and checked before any is assigned.

    Args:
        target: a built Keras 3 model or layer (e.g. `ind_rnn.IndRNN` layers in
            a model, `dilated_rnn.DilatedRNNClassifier`, a `keras.layers.LSTM`).
        checkpoint_path: a checkpoint prefix written by
            `tf.compat.v1.train.Saver` (e.g. "model.ckpt-1000"), or its directory.
        layout: "auto" (detect from the names), "multi_rnn_cell", "rnn_k",
            "rnn" or "drnn" (once `dilated_rnn` is imported).
        scopes: list of TF1 scopes, one per recurrent cell of the target,
            instead of `layout` (e.g. `["encoder/rnn"]`).
        dense_variables: "auto", or a list of `(kernel_name, bias_name)`, one
            per `Dense` layer of the target ([] to load none). "auto" takes
            the layout's output layer (`Variable`/`Variable_1`,
            `softmax_weight`/`softmax_bias`) and `dense`, `dense_1`, ... when
            the checkpoint holds them.
        batch_norm_scopes: "auto" (`batch_normalization`,
            `batch_normalization_1`, ... when stored) or a list of scopes, one
            per `BatchNormalization` layer ([] to load none).
        forget_bias: the `forget_bias` the TF1 LSTM cells were built with
            (TF1's default 1.0); folded into the f bias of Keras' `LSTMCell`,
            or into the difference with a `dilated_rnn.BasicLSTMCell`'s own.

    Returns:
        A `TF1CheckpointReport`: what was loaded from where, which checkpoint
        variables were not used and which target variables were not loaded.

    Raises:
        ValueError: for an unreadable checkpoint, an unknown layout, counts
            that do not line up, a target cell that cannot hold TF1 weights,
            or missing / mis-shaped variables (all listed; nothing is
            assigned then).
        TypeError: for a `target` that is not a Keras layer, or `scopes`,
            `dense_variables`, `batch_norm_scopes` of the wrong type.

    Example:

    >>> import ind_rnn, keras
    >>> model = keras.Sequential([keras.Input((100, 2)),
    ...                           ind_rnn.IndRNN(128, recurrent_max_abs=2 ** 0.01,
    ...                                          return_sequences=True),
    ...                           ind_rnn.IndRNN(128, recurrent_max_abs=2 ** 0.01),
    ...                           keras.layers.Dense(1)])
    >>> report = ind_rnn.load_tf1_checkpoint(model, "addition/model.ckpt")  # doctest: +SKIP
    >>> print(report)  # doctest: +SKIP
    """
    reader = _open_checkpoint(checkpoint_path)
    shapes = reader.get_variable_to_shape_map()
    parts = _target_parts(target)
    layout_name, chosen, unit_scopes = _resolve_layout(layout, scopes, parts.units, shapes)
    plan = _Plan(reader, shapes)
    _check_layer_count(plan, chosen, parts.units)
    forget_bias = _number("forget_bias", forget_bias)
    for unit, scope in zip(parts.units, unit_scopes):
        _plan_unit(plan, unit, scope, forget_bias)
    _plan_dense(plan, parts.dense, _name_list("dense_variables", dense_variables,
                                              lambda: _auto_dense_variables(chosen, shapes),
                                              pairs=True))
    _plan_norms(plan, parts.norms, _name_list(
        "batch_norm_scopes", batch_norm_scopes,
        lambda: _tf_layers_names(shapes, "batch_normalization")))
    if plan.missing or plan.mismatched:
        raise ValueError(_problems_message(checkpoint_path, target, layout_name, plan))
    for variable, value, _ in plan.assignments:
        variable.assign(np.asarray(value, dtype=variable.dtype))
    for layer in parts.norms:
        # TF1's moving averages are warmed up: give them their full weight in
        # the debiased averages, or the next training batch would replace them.
        if getattr(layer, "moving_weight", None) is not None:
            layer.moving_weight.assign(1.0)
            plan.derived.append(layer.moving_weight)
    return _report(layout_name, target, plan)


def _number(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"Received an invalid value for argument `{name}`, expected a number, "
                        f"got {value!r}.")
    return float(value)


def _name_list(argument, value, auto, pairs=False):
    """`auto()` for "auto", else `value` checked as a list of names or of name pairs."""
    if isinstance(value, str) and value == "auto":
        return auto()
    expected = ("a list of (kernel_name, bias_name) pairs" if pairs
                else "a list of scope names") + ' or "auto"'
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"Received an invalid value for argument `{argument}`, expected "
                        f"{expected}, got {value!r}.")
    if pairs:
        valid = all(isinstance(item, (list, tuple)) and len(item) == 2
                    and isinstance(item[0], str) and isinstance(item[1], (str, type(None)))
                    for item in value)
    else:
        valid = all(isinstance(item, str) for item in value)
    if not valid:
        raise TypeError(f"Received an invalid value for argument `{argument}`, expected "
                        f"{expected}, got {value!r}.")
    return [tuple(item) for item in value] if pairs else list(value)


def _report(layout_name, target, plan):
    assigned = ({id(variable) for variable, _, _ in plan.assignments}
                | {id(variable) for variable in plan.derived})
    return TF1CheckpointReport(
        layout=layout_name,
        loaded=tuple((variable.path, names) for variable, _, names in plan.assignments),
        unused_checkpoint_variables=tuple(sorted(set(plan.shapes) - plan.used)),
        unloaded_target_variables=tuple(variable.path for variable in target.weights
                                        if id(variable) not in assigned))
