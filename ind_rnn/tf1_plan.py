"""Planning a TF1 checkpoint import: every assignment worked out and checked
before any is made.

A `Plan` collects, over the whole target, the values to assign and every
missing or mis-shaped checkpoint variable; `load_tf1_checkpoint` assigns
only when nothing is wrong, so a failed import leaves the target untouched.
"""
from ind_rnn.tf1_formats import cell_format_of, require_cell, variable_shape


class Plan:
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


def plan_unit(plan, unit, scope, forget_bias):
    cell_format = cell_format_of(unit.cell)
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
    checked = [(plan.check(name, variable_shape(variable), needed_by), variable)
               for name, variable in named_variables]
    scope = named_variables[0][0].rpartition("/")[0]
    if scope and len(plan.missing) > missing_before:
        plan.hint_scope(scope)
    if any(stored is None for stored, _ in checked):
        return
    for stored, variable in checked:
        plan.used.add(stored)
        plan.assignments.append((variable, plan.reader.get_tensor(stored), (stored,)))


def tf_layers_names(shapes, base):
    """`base`, `base_1`, `base_2`, ... while the checkpoint has them (tf.layers naming)."""
    names, index = [], 0
    while True:
        name = base if index == 0 else f"{base}_{index}"
        if not any(key.startswith(name + "/") for key in shapes):
            return names
        names.append(name)
        index += 1


def auto_dense_variables(layout, shapes):
    pairs = [pair for pair in (layout.dense_variables if layout else ())
             if pair[0] in shapes]
    pairs += [(f"{scope}/kernel", f"{scope}/bias") for scope in tf_layers_names(shapes, "dense")]
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


def plan_dense(plan, dense_layers, pairs):
    for layer, (kernel_name, bias_name) in _pair_layers(
            "dense_variables", dense_layers, pairs, "(kernel, bias) pair"):
        named = [(kernel_name, layer.kernel)]
        if bias_name is not None:
            require_cell(layer.use_bias, layer,
                         f"use_bias=True to take the bias {bias_name!r}")
            named.append((bias_name, layer.bias))
        _plan_weights(plan, layer, named)


_BATCH_NORM_VARIABLES = ("gamma", "beta", "moving_mean", "moving_variance")


def plan_norms(plan, norm_layers, scopes):
    for layer, scope in _pair_layers("batch_norm_scopes", norm_layers, scopes, "scope"):
        # A layer built with scale=False / center=False has no gamma / beta.
        _plan_weights(plan, layer, [(f"{scope}/{name}", getattr(layer, name))
                                    for name in _BATCH_NORM_VARIABLES
                                    if getattr(layer, name, None) is not None])
