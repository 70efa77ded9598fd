"""Ready-made IndRNN models: the plain stack of the original, residual and dense IndRNN.

* `build_plain_indrnn`, `build_residual_indrnn`, `build_dense_indrnn`: sequence
  to sequence backbones `[batch, T, input_dim] -> [batch, T, width]`.
* `build_sequence_classifier`: one of them, then logits from the last step.
* The stacks' recurrent weights start as `recommended_recurrent_initializers`
  says (`ind_rnn.initialization`); the classifier's logits read `LastStep`.

All are functional models of registered layers, so they save to and load
from `.keras` files. They are `BatchNormModel`s: `fit` sets the batch norms'
statistics to the exact population statistics of 500 training sequences
before each validation and at the end, so that `evaluate` and `predict`
reflect what was learned (see `ind_rnn.batch_norm_model`).
"""
import numbers

import keras

from ind_rnn import _checks
from ind_rnn._checks import invalid
from ind_rnn.batch_norm_model import BatchNormModel
from ind_rnn.deep import (DEEP_INPUT_KERNEL_INITIALIZER, DenseIndRNNBlock, ResidualIndRNNBlock,
                          SequenceBatchNormalization, fraction, non_negative_int,
                          reseeded)
from ind_rnn.initialization import optional_time_steps, recommended_recurrent_initializers
from ind_rnn.last_step import LastStep
from ind_rnn.layer import IndRNN

MODELS = ("plain", "residual", "dense")
# The sequential MNIST script's input kernel initialiser (REFERENCE §2), used
# by the plain stack; the deep ones use DEEP_INPUT_KERNEL_INITIALIZER (see
# ind_rnn/deep.py for why).
PLAIN_INPUT_KERNEL_INITIALIZER = {"class_name": "RandomUniform",
                                  "config": {"minval": -0.001, "maxval": 0.001}}


def _input_kernel_initializer(value, default):
    return keras.initializers.get(default if value is None else value)


# Seed offsets of the initialisers (see `reseeded`): block i's layers use
# BLOCK_SEED_STRIDE * i + 1, 2, ...; the layers outside blocks their own.
BLOCK_SEED_STRIDE = 1000


def _sequence_input(time_steps, input_dim):
    return keras.Input((optional_time_steps(time_steps),
                        _checks.positive_int("input_dim", input_dim)), name="sequences")


def _norm(batch_norm, name):
    return SequenceBatchNormalization(name=name) if batch_norm else None


def _time_shared_dropout(rate, seed, name):
    """Dropout with one mask per sequence: the same features dropped at every step."""
    if not rate:
        return None
    return keras.layers.SpatialDropout1D(rate, seed=seed, name=name)


def _apply(layer, values):
    return values if layer is None else layer(values)


def _check_common(dropout, batch_norm):
    _checks.boolean("batch_norm", batch_norm)
    return _checks.rate("dropout", dropout)


def _plain_stack(sequences, num_layers, units, time_steps, recurrent_max_abs, dropout,
                 batch_norm, input_kernel_initializer, seed):
    """IndRNN -> BN (-> dropout between layers), `num_layers` times."""
    num_layers = _checks.positive_int("num_layers", num_layers)
    units = _checks.positive_int("units", units)
    dropout = _check_common(dropout, batch_norm)
    hidden, last, bound = recommended_recurrent_initializers(time_steps, recurrent_max_abs)
    input_initializer = _input_kernel_initializer(input_kernel_initializer,
                                                  PLAIN_INPUT_KERNEL_INITIALIZER)
    for index in range(1, num_layers + 1):
        is_last = index == num_layers
        sequences = IndRNN(units, recurrent_max_abs=bound,
                           recurrent_kernel_initializer=reseeded(last if is_last else hidden,
                                                                 index),
                           input_kernel_initializer=reseeded(input_initializer, index),
                           return_sequences=True,
                           name=f"ind_rnn_{index}")(sequences)
        sequences = _apply(_norm(batch_norm, f"norm_{index}"), sequences)
        if not is_last:
            sequences = _apply(_time_shared_dropout(
                dropout, None if seed is None else seed + index, f"dropout_{index}"), sequences)
    return sequences


def _residual_stack(sequences, num_blocks, units, time_steps, recurrent_max_abs, dropout,
                    batch_norm, input_kernel_initializer, seed):
    """IndRNN, then `num_blocks` residual blocks, then BN: 1 + 2 * num_blocks IndRNNs."""
    num_blocks = _checks.positive_int("num_blocks", num_blocks)
    units = _checks.positive_int("units", units)
    dropout = _check_common(dropout, batch_norm)
    hidden, last, bound = recommended_recurrent_initializers(time_steps, recurrent_max_abs)
    input_initializer = _input_kernel_initializer(input_kernel_initializer,
                                                  DEEP_INPUT_KERNEL_INITIALIZER)
    sequences = IndRNN(units, recurrent_max_abs=bound,
                       recurrent_kernel_initializer=reseeded(hidden, 0),
                       input_kernel_initializer=reseeded(input_initializer, 0),
                       return_sequences=True, name="ind_rnn_input")(sequences)
    for index in range(1, num_blocks + 1):
        offset = BLOCK_SEED_STRIDE * index
        sequences = ResidualIndRNNBlock(
            units, recurrent_max_abs=bound, recurrent_kernel_initializer=reseeded(hidden, offset),
            last_recurrent_kernel_initializer=last if index == num_blocks else None,
            input_kernel_initializer=reseeded(input_initializer, offset), dropout=dropout,
            batch_norm=batch_norm,
            seed=None if seed is None else seed + 10 * index,
            name=f"residual_block_{index}")(sequences)
    return _apply(_norm(batch_norm, "norm_output"), sequences)


def _dense_stack(sequences, layers_per_block, units, growth_rate, bottleneck, compression,
                 time_steps, recurrent_max_abs, dropout, batch_norm, input_kernel_initializer,
                 seed):
    """IndRNN, dense blocks with transitions between them, then BN."""
    layers_per_block = _layers_per_block(layers_per_block)
    units = _checks.positive_int("units", units)
    growth_rate = _checks.positive_int("growth_rate", growth_rate)
    bottleneck = non_negative_int("bottleneck", bottleneck)
    compression = fraction("compression", compression)
    dropout = _check_common(dropout, batch_norm)
    hidden, last, bound = recommended_recurrent_initializers(time_steps, recurrent_max_abs)
    input_initializer = _input_kernel_initializer(input_kernel_initializer,
                                                  DEEP_INPUT_KERNEL_INITIALIZER)

    def ind_rnn(width, name, offset):
        return IndRNN(width, recurrent_max_abs=bound,
                      recurrent_kernel_initializer=reseeded(hidden, offset),
                      input_kernel_initializer=reseeded(input_initializer, offset),
                      return_sequences=True, name=name)

    sequences = ind_rnn(units, "ind_rnn_input", 0)(sequences)
    for index, num_layers in enumerate(layers_per_block, start=1):
        is_last = index == len(layers_per_block)
        offset = BLOCK_SEED_STRIDE * index
        sequences = DenseIndRNNBlock(
            num_layers, growth_rate, bottleneck, recurrent_max_abs=bound,
            recurrent_kernel_initializer=reseeded(hidden, offset),
            last_recurrent_kernel_initializer=last if is_last else None,
            input_kernel_initializer=reseeded(input_initializer, offset), dropout=dropout,
            batch_norm=batch_norm,
            seed=None if seed is None else seed + 100 * index,
            name=f"dense_block_{index}")(sequences)
        if not is_last:  # transition: shrink the width
            width = max(1, int(sequences.shape[-1] * compression))
            sequences = _apply(_norm(batch_norm, f"transition_{index}_norm"), sequences)
            sequences = ind_rnn(width, f"transition_{index}_ind_rnn",
                                offset + BLOCK_SEED_STRIDE - 1)(sequences)
            sequences = _apply(_time_shared_dropout(
                dropout, None if seed is None else seed + 100 * index + 99,
                f"transition_{index}_dropout"), sequences)
    return _apply(_norm(batch_norm, "norm_output"), sequences)


def _layers_per_block(value):
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or not value:
        raise TypeError(invalid("layers_per_block",
                                 "a non-empty list of positive integers", value))
    for count in value:
        if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 1:
            raise ValueError(invalid("layers_per_block",
                                      "a non-empty list of positive integers", value))
    return [int(count) for count in value]


def split_layers(num_layers, num_blocks):
    """Splits `num_layers` dense layers over `num_blocks` blocks, earlier ones larger.

    Args:
        num_layers: positive int, total dense layers.
        num_blocks: positive int, <= num_layers.

    Returns:
        A list of `num_blocks` positive ints summing to `num_layers`.

    Raises:
        TypeError / ValueError: for non-positive values or more blocks than layers.

    Example:

    >>> from ind_rnn.models import split_layers
    >>> split_layers(8, 3)
    [3, 3, 2]
    """
    num_layers = _checks.positive_int("num_layers", num_layers)
    num_blocks = _checks.positive_int("num_blocks", num_blocks)
    if num_blocks > num_layers:
        raise ValueError(invalid("num_blocks", f"a positive integer <= num_layers={num_layers}",
                                  num_blocks))
    base, extra = divmod(num_layers, num_blocks)
    return [base + (index < extra) for index in range(num_blocks)]


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
    inputs = _sequence_input(time_steps, input_dim)
    outputs = _plain_stack(inputs, num_layers, units, inputs.shape[1], recurrent_max_abs,
                           dropout, batch_norm, input_kernel_initializer, seed)
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
    inputs = _sequence_input(time_steps, input_dim)
    outputs = _residual_stack(inputs, num_blocks, units, inputs.shape[1], recurrent_max_abs,
                              dropout, batch_norm, input_kernel_initializer, seed)
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
    inputs = _sequence_input(time_steps, input_dim)
    outputs = _dense_stack(inputs, layers_per_block, units, growth_rate, bottleneck,
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
    inputs = _sequence_input(time_steps, input_dim)
    time_steps = inputs.shape[1]
    common = dict(units=units, time_steps=time_steps, recurrent_max_abs=recurrent_max_abs,
                  dropout=dropout, batch_norm=batch_norm,
                  input_kernel_initializer=options.get("input_kernel_initializer"),
                  seed=options.get("seed"))
    if model == "plain":
        sequences = _plain_stack(inputs, num_layers, **common)
    elif model == "residual":
        sequences = _residual_stack(inputs, _residual_blocks(num_layers), **common)
    else:
        num_blocks = options.get("num_blocks", min(3, num_layers))
        layers_per_block = split_layers(num_layers, num_blocks)
        sequences = _dense_stack(inputs, layers_per_block,
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
