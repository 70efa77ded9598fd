"""How the IndRNN backbones are wired, layer by layer (`ind_rnn.models` builds them).

Each `*_stack` takes a symbolic `[batch, T, features]` tensor and returns the
backbone's output sequence: the plain stack of the original sequential MNIST
script, and the residual and dense IndRNN of the authors' deep IndRNN paper.
Their recurrent weights start as `recommended_recurrent_initializers` says,
and every initialiser is reseeded per layer (`reseeded`), so a model's weights
depend only on its seed and position.
"""
import numbers

import keras

from ind_rnn import _checks
from ind_rnn._checks import invalid
from ind_rnn.deep import (DEEP_INPUT_KERNEL_INITIALIZER, DenseIndRNNBlock, ResidualIndRNNBlock,
                          SequenceBatchNormalization, fraction, non_negative_int,
                          reseeded)
from ind_rnn.initialization import optional_time_steps, recommended_recurrent_initializers
from ind_rnn.layer import IndRNN

# The sequential MNIST script's input kernel initialiser (REFERENCE §2), used
# by the plain stack; the deep ones use DEEP_INPUT_KERNEL_INITIALIZER (see
# ind_rnn/deep.py for why).
PLAIN_INPUT_KERNEL_INITIALIZER = {"class_name": "RandomUniform",
                                  "config": {"minval": -0.001, "maxval": 0.001}}


# Seed offsets of the initialisers (see `reseeded`): block i's layers use
# BLOCK_SEED_STRIDE * i + 1, 2, ...; the layers outside blocks their own.
BLOCK_SEED_STRIDE = 1000


def sequence_input(time_steps, input_dim):
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


def _shared_arguments(units, dropout, batch_norm, time_steps, recurrent_max_abs,
                      input_kernel_initializer, default_input_kernel_initializer):
    """The arguments every stack takes, checked, and the initialisers they give.

    Returns:
        `(units, dropout, hidden, last, bound, input_initializer)`: `hidden`,
        `last` and `bound` as `recommended_recurrent_initializers` gives them,
        and the input kernels' initialiser (`input_kernel_initializer`, or
        the stack's default when None).
    """
    units = _checks.positive_int("units", units)
    _checks.boolean("batch_norm", batch_norm)
    dropout = _checks.rate("dropout", dropout)
    hidden, last, bound = recommended_recurrent_initializers(time_steps, recurrent_max_abs)
    input_initializer = keras.initializers.get(
        default_input_kernel_initializer if input_kernel_initializer is None
        else input_kernel_initializer)
    return units, dropout, hidden, last, bound, input_initializer


def plain_stack(sequences, num_layers, units, time_steps, recurrent_max_abs, dropout,
                batch_norm, input_kernel_initializer, seed):
    """IndRNN -> BN (-> dropout between layers), `num_layers` times."""
    num_layers = _checks.positive_int("num_layers", num_layers)
    units, dropout, hidden, last, bound, input_initializer = _shared_arguments(
        units, dropout, batch_norm, time_steps, recurrent_max_abs, input_kernel_initializer,
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


def residual_stack(sequences, num_blocks, units, time_steps, recurrent_max_abs, dropout,
                   batch_norm, input_kernel_initializer, seed):
    """IndRNN, then `num_blocks` residual blocks, then BN: 1 + 2 * num_blocks IndRNNs."""
    num_blocks = _checks.positive_int("num_blocks", num_blocks)
    units, dropout, hidden, last, bound, input_initializer = _shared_arguments(
        units, dropout, batch_norm, time_steps, recurrent_max_abs, input_kernel_initializer,
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


def dense_stack(sequences, layers_per_block, units, growth_rate, bottleneck, compression,
                time_steps, recurrent_max_abs, dropout, batch_norm, input_kernel_initializer,
                seed):
    """IndRNN, dense blocks with transitions between them, then BN."""
    layers_per_block = _layers_per_block(layers_per_block)
    units, dropout, hidden, last, bound, input_initializer = _shared_arguments(
        units, dropout, batch_norm, time_steps, recurrent_max_abs, input_kernel_initializer,
        DEEP_INPUT_KERNEL_INITIALIZER)
    growth_rate = _checks.positive_int("growth_rate", growth_rate)
    bottleneck = non_negative_int("bottleneck", bottleneck)
    compression = fraction("compression", compression)

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

    >>> from ind_rnn.stacks import split_layers
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
