"""Ready-made IndRNN models: the plain stack of the original, residual and dense IndRNN.

* `build_plain_indrnn`, `build_residual_indrnn`, `build_dense_indrnn`: sequence
  to sequence backbones `[batch, T, input_dim] -> [batch, T, width]`.
* `build_sequence_classifier`: one of them, then logits from the last step.
* The stacks (`ind_rnn.stacks`) start their recurrent weights as
  `recommended_recurrent_initializers` says; the classifier's logits read `LastStep`.

All are functional models of registered layers, so they save to and load
from `.keras` files. They are `BatchNormModel`s: `fit` sets the batch norms'
statistics to the exact population statistics of 500 training sequences
before each validation and at the end, so that `evaluate` and `predict`
reflect what was learned (see `ind_rnn.batch_norm_model`).
"""
import keras

from ind_rnn import _checks, stacks
from ind_rnn._checks import invalid
from ind_rnn.batch_norm_model import BatchNormModel
from ind_rnn.last_step import LastStep

MODELS = ("plain", "residual", "dense")


def build_plain_indrnn(time_steps, input_dim, num_layers=6, units=128, recurrent_max_abs=None,
                       dropout=0.0, batch_norm=True, input_kernel_initializer=None,
                       seed=None, name="plain_indrnn"):
    """The original sequential MNIST stack: `num_layers` x (IndRNN -> BN), as a model.

    Every IndRNN has `units` ReLU units, `recurrent_max_abs` (default
    `2 ** (1 / time_steps)`) and the `recommended_recurrent_initializers`;
    the input kernels start uniform(-0.001, 0.001). Each BN normalizes over
    batch and time (`SequenceBatchNormalization`); dropout, shared over
    time, goes between layers.

    Args:
        time_steps: positive int T, or None for any length (then
            `recurrent_max_abs` is required).
        input_dim: positive int, features per step.
        num_layers: positive int, number of IndRNN layers.
        units: positive int, width of every layer.
        recurrent_max_abs: float > 0, bound on `|u|`; None: `2 ** (1 / T)`.
        dropout: float in [0, 1), rate of the dropout between layers (one mask
            per sequence).
        batch_norm: whether to put a BN after every layer.
        input_kernel_initializer: initializer of the input kernels; None:
            uniform(-0.001, 0.001).
        seed: seed of the dropout masks.
        name: model name.

    Returns:
        A `BatchNormModel` (a functional `keras.Model` whose `fit` gives the
        batch norms exact statistics) mapping `[batch, T, input_dim]` to `[batch, T, units]`.

    Raises:
        TypeError / ValueError: for any bad argument, naming it.

    Example:

    >>> from ind_rnn import build_plain_indrnn
    >>> build_plain_indrnn(100, 2, num_layers=3, units=16).output_shape
    (None, 100, 16)
    """
    inputs = stacks.sequence_input(time_steps, input_dim)
    outputs = stacks.plain_stack(inputs, num_layers, units, inputs.shape[1],
                                 recurrent_max_abs, dropout, batch_norm,
                                 input_kernel_initializer, seed)
    return BatchNormModel(inputs, outputs, name=name)


def build_residual_indrnn(time_steps, input_dim, num_blocks, units=128, recurrent_max_abs=None,
                          dropout=0.0, batch_norm=True, input_kernel_initializer=None,
                          seed=None, name="residual_indrnn"):
    """Residual IndRNN: IndRNN -> `num_blocks` x `ResidualIndRNNBlock` -> BN.

    That is `1 + 2 * num_blocks` IndRNN layers (10 blocks: the paper's 21
    layers), all `units` wide, with `recurrent_max_abs` tied to T and the
    `recommended_recurrent_initializers` (the last block's second IndRNN
    starts near 1). The input kernels start from
    `DEEP_INPUT_KERNEL_INITIALIZER` (uniform, standard deviation
    `sqrt(2 / (65 * fan_in))`), not the plain stack's uniform(-0.001, 0.001):
    behind BN their scale only sets how far each Adam step moves them, and
    tiny weights made a 21-layer stack's first steps diverge.

    Args:
        time_steps, input_dim, units, recurrent_max_abs, batch_norm,
        input_kernel_initializer, seed, name: as in
            `build_plain_indrnn`.
        num_blocks: positive int, number of residual blocks.
        dropout: float in [0, 1), dropout rate after each IndRNN inside the
            blocks (one mask per sequence).

    Returns:
        A `BatchNormModel` (a functional `keras.Model` whose `fit` gives the
        batch norms exact statistics) mapping `[batch, T, input_dim]` to `[batch, T, units]`.

    Raises:
        TypeError / ValueError: for any bad argument (e.g. `num_blocks=0`),
            naming it.

    Example:

    >>> from ind_rnn import build_residual_indrnn
    >>> build_residual_indrnn(64, 1, num_blocks=10, units=32).output_shape
    (None, 64, 32)
    """
    inputs = stacks.sequence_input(time_steps, input_dim)
    outputs = stacks.residual_stack(inputs, num_blocks, units, inputs.shape[1],
                                    recurrent_max_abs, dropout, batch_norm,
                                    input_kernel_initializer, seed)
    return BatchNormModel(inputs, outputs, name=name)


def build_dense_indrnn(time_steps, input_dim, layers_per_block=(8, 6, 4), units=128,
                       growth_rate=32, bottleneck=4, compression=0.5, recurrent_max_abs=None,
                       dropout=0.0, batch_norm=True, input_kernel_initializer=None,
                       seed=None, name="dense_indrnn"):
    """Dense IndRNN (arXiv 1910.06251): IndRNN -> dense blocks with transitions -> BN.

    An IndRNN of `units` is followed by one `DenseIndRNNBlock` per entry of
    `layers_per_block`; between two blocks a transition (BN -> IndRNN)
    shrinks the width to `int(width * compression)`. Recurrent bounds and
    initialisers as in `build_residual_indrnn` (the last dense layer's IndRNN
    starts near 1).

    Args:
        time_steps, input_dim, units, recurrent_max_abs, batch_norm,
        input_kernel_initializer, seed, name: as in
            `build_plain_indrnn`.
        layers_per_block: non-empty list of positive ints, dense layers per
            block, e.g. (8, 6, 4).
        growth_rate: positive int, features each dense layer adds.
        bottleneck: int >= 0, bottleneck width as a multiple of
            `growth_rate` (0: no bottleneck).
        compression: float in (0, 1], width kept by each transition.
        dropout: float in [0, 1), dropout rate after each IndRNN inside the
            blocks and after each transition (one mask per sequence).

    Returns:
        A `BatchNormModel` (a functional `keras.Model` whose `fit` gives the
        batch norms exact statistics) mapping `[batch, T, input_dim]` to `[batch, T, width]`.

    Raises:
        TypeError / ValueError: for any bad argument (e.g. `growth_rate=-1`),
            naming it.

    Example:

    >>> from ind_rnn import build_dense_indrnn
    >>> build_dense_indrnn(64, 1, [2, 2], units=32, growth_rate=8).output_shape  # 32+16 -> 24+16
    (None, 64, 40)
    """
    inputs = stacks.sequence_input(time_steps, input_dim)
    outputs = stacks.dense_stack(inputs, layers_per_block, units, growth_rate, bottleneck,
                                 compression, inputs.shape[1], recurrent_max_abs, dropout,
                                 batch_norm, input_kernel_initializer, seed)
    return BatchNormModel(inputs, outputs, name=name)


# Options each model takes on top of the common arguments.
_MODEL_OPTIONS = {
    "plain": ("input_kernel_initializer", "seed"),
    "residual": ("input_kernel_initializer", "seed"),
    "dense": ("input_kernel_initializer", "seed", "growth_rate", "bottleneck",
              "compression", "num_blocks"),
}


def build_sequence_classifier(time_steps, input_dim, num_classes, model="plain", num_layers=6,
                              units=128, dropout=0.0, batch_norm=True, recurrent_max_abs=None,
                              name=None, **options):
    """An IndRNN classifier: `[batch, T, input_dim]` -> logits `[batch, num_classes]`.

    The backbone (see the builders) runs over the whole sequence; the logits
    are a dense layer on its last step's output (the last valid step, if the
    inputs carry a mask). `model` picks the backbone and what `num_layers`
    counts:

    * "plain": the original sequential MNIST stack (`build_plain_indrnn`),
      `num_layers` IndRNN layers.
    * "residual": `build_residual_indrnn`; `num_layers` IndRNN layers,
      `1 + 2 * num_blocks`, so an odd number >= 3 (21: 10 blocks).
    * "dense": `build_dense_indrnn`; `num_layers` dense layers (each a
      bottleneck IndRNN and an IndRNN) split over `num_blocks` blocks
      (option, default 3 or `num_layers` if fewer), earlier blocks taking the extra ones.

    Args:
        time_steps: positive int T, or None for any length (then
            `recurrent_max_abs` is required).
        input_dim: positive int, features per step.
        num_classes: positive int.
        model: "plain", "residual" or "dense".
        num_layers: positive int, depth as above.
        units: positive int, width of the IndRNN layers (dense: of the first
            layer).
        dropout: float in [0, 1), dropout rate between layers, one mask per
            sequence.
        batch_norm: whether to use batch norm over batch and time.
        recurrent_max_abs: float > 0, bound on `|u|`; None: `2 ** (1 / T)`.
        name: model name; None: "<model>_indrnn_classifier".
        **options: `input_kernel_initializer` (None: uniform(-0.001, 0.001)
            for "plain", `DEEP_INPUT_KERNEL_INITIALIZER` for the others),
            `seed` (dropout); for "dense" also `growth_rate` (32),
            `bottleneck` (4), `compression` (0.5), `num_blocks` (3, or
            `num_layers` if fewer).

    Returns:
        A `BatchNormModel` (a functional `keras.Model` whose `fit` gives the
        batch norms exact statistics, see `ind_rnn.BatchNormModel`) whose
        output is the logits (no softmax).

    Raises:
        TypeError / ValueError: for any bad argument, an unknown `model`, an
            option the model does not take, or a `num_layers` the model
            cannot have.

    Example:

    >>> from ind_rnn import build_sequence_classifier
    >>> model = build_sequence_classifier(64, 1, 10, model="residual", num_layers=21,
    ...                                   units=32)
    >>> model.output_shape
    (None, 10)
    """
    if model not in MODELS:
        raise ValueError(invalid("model", "one of " + ", ".join(map(repr, MODELS)), model))
    unknown = sorted(set(options) - set(_MODEL_OPTIONS[model]))
    if unknown:
        raise TypeError(invalid("options", f"keyword arguments among "
                                 f"{list(_MODEL_OPTIONS[model])} for model={model!r}", unknown))
    num_layers = _checks.positive_int("num_layers", num_layers)
    num_classes = _checks.positive_int("num_classes", num_classes)
    inputs = stacks.sequence_input(time_steps, input_dim)
    time_steps = inputs.shape[1]
    common = dict(units=units, time_steps=time_steps, recurrent_max_abs=recurrent_max_abs,
                  dropout=dropout, batch_norm=batch_norm,
                  input_kernel_initializer=options.get("input_kernel_initializer"),
                  seed=options.get("seed"))
    if model == "plain":
        sequences = stacks.plain_stack(inputs, num_layers, **common)
    elif model == "residual":
        sequences = stacks.residual_stack(inputs, _residual_blocks(num_layers), **common)
    else:
        num_blocks = options.get("num_blocks", min(3, num_layers))
        layers_per_block = stacks.split_layers(num_layers, num_blocks)
        sequences = stacks.dense_stack(inputs, layers_per_block,
                                       growth_rate=options.get("growth_rate", 32),
                                       bottleneck=options.get("bottleneck", 4),
                                       compression=options.get("compression", 0.5), **common)
    logits = keras.layers.Dense(num_classes, name="logits")(LastStep(name="last_step")(sequences))
    return BatchNormModel(inputs, logits, name=name or f"{model}_indrnn_classifier")


def _residual_blocks(num_layers):
    if num_layers < 3 or num_layers % 2 == 0:
        raise ValueError(invalid(
            "num_layers", "an odd integer >= 3 for model='residual' (1 + 2 * blocks)",
            num_layers))
    return (num_layers - 1) // 2
