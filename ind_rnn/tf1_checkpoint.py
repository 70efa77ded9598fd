"""Load checkpoints of the TF1 originals into the TF2 / Keras models.

`load_tf1_checkpoint(target, checkpoint_path)` reads a checkpoint written by
`tf.compat.v1.train.Saver` (`tf.train.load_checkpoint`) and assigns its
variables to a built Keras model or layer. It is shared by `ind_rnn` and
`dilated_rnn` (which registers its own layers and cells on import, in
`ind_rnn.tf1_formats`; the checked plan of assignments is `ind_rnn.tf1_plan`).

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
from typing import Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf

from ind_rnn import tf1_formats
from ind_rnn.tf1_formats import RecurrentUnit
from ind_rnn.tf1_plan import (Plan, auto_dense_variables, plan_dense, plan_norms, plan_unit,
                              tf_layers_names)


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
    registered = tf1_formats.registered_units(layer)
    if registered is not None:
        parts.units.extend(registered)
    elif isinstance(layer, keras.layers.RNN):
        parts.units.extend(RecurrentUnit(cell) for cell in _rnn_cells(layer))
    elif tf1_formats.cell_format_of(layer) is not None:
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
        if tf1_formats.cell_format_of(unit.cell) is None:
            known = tf1_formats.known_cell_classes()
            raise ValueError(
                "Received an invalid value for argument `target`, expected recurrent cells "
                f"of the known kinds {known}, got `{unit.cell.name}` "
                f"({type(unit.cell).__name__}).")
    return parts


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
    known = tf1_formats.layouts()
    choices = ("auto",) + tuple(known)
    if layout not in choices:
        raise ValueError("Received an invalid value for argument `layout`, expected one of "
                         f"{choices}, got {layout!r}.")
    if layout == "auto":
        detected = [candidate.name for candidate in known.values()
                    if candidate.detect(names)]
        if len(detected) != 1:
            raise ValueError(
                "Received an invalid value for argument `layout`, expected a layout named "
                f"explicitly (one of {tuple(known)}) or `scopes=[...]`, because the "
                f"checkpoint's names match {detected or 'none'} of them, got 'auto' (first "
                f"names: {sorted(names)[:10]}).")
        layout = detected[0]
    chosen = known[layout]
    return layout, chosen, chosen.scopes(units, names)


def _check_layer_count(plan, layout, units):
    """Refuses a checkpoint with more recurrent layers than the target has cells."""
    if layout is None:
        return
    stored = tf1_formats.scopes_matching(layout.layer_scope, plan.shapes)
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
    plan = Plan(reader, shapes)
    _check_layer_count(plan, chosen, parts.units)
    forget_bias = _number("forget_bias", forget_bias)
    for unit, scope in zip(parts.units, unit_scopes):
        plan_unit(plan, unit, scope, forget_bias)
    plan_dense(plan, parts.dense, _name_list("dense_variables", dense_variables,
                                              lambda: auto_dense_variables(chosen, shapes),
                                              pairs=True))
    plan_norms(plan, parts.norms, _name_list(
        "batch_norm_scopes", batch_norm_scopes,
        lambda: tf_layers_names(shapes, "batch_normalization")))
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
