"""IndRNN for TensorFlow 2 / Keras (Li et al., CVPR 2018).

* `IndRNNCell`: the TF1 original's cell, with its signature, for the Keras
  that `tf.keras` is in this process (`keras_flavour()`): the Keras 3 cell
  (`ind_rnn.keras_cell.IndRNNCell`, for `keras.layers.RNN`) by default, the
  tf-keras / TF1 cell (`ind_rnn.legacy.IndRNNCell`, for `tf.keras.layers.RNN`
  and `tf.compat.v1.nn.dynamic_rnn`) under TF_USE_LEGACY_KERAS=1. The same
  holds for `ind_rnn.ind_rnn_cell.IndRNNCell`.
* `IndRNN`: the fast whole-sequence layer with the same weights.
* `indrnn_scan`, `project_and_scan`, `indrnn_step`, `effective_recurrent_weight`:
  the recurrence.
* `load_tf1_checkpoint`: TF1 checkpoints of the original graphs into these
  layers (see MIGRATING.md).
* `estimate_batch_norm_statistics`, `BatchNormStatistics`: exact population
  statistics for the batch norms (a function, and a callback for `fit`);
  `BatchNormModel`, the models' class, whose `fit` uses that callback.
* `ind_rnn.legacy.IndRNNCell`: the tf-keras / TF1 cell under its explicit
  name (needs the `legacy` extra and TF_USE_LEGACY_KERAS=1; imported here only
  when `tf.keras` is tf-keras).
* `keras_flavour()`, `KerasFlavourError`: the switch (see `ind_rnn.flavour`).
"""
# First, before anything runs a TensorFlow op: pooled CPU memory for the large
# tensors of a training step (ind_rnn.native.build.tune_allocator;
# RNN_KERNELS_TUNE_ALLOCATOR=0 turns it off).
from ind_rnn.native import build as _build  # noqa: E402

_build.tune_allocator()
from ind_rnn.ind_rnn_cell import IndRNNCell
from ind_rnn.layer import IndRNN
from ind_rnn.recurrence import (effective_recurrent_weight, indrnn_scan, indrnn_step,
                                project_and_scan, xla_available)
from ind_rnn.deep import DenseIndRNNBlock, ResidualIndRNNBlock, SequenceBatchNormalization
from ind_rnn.initialization import recommended_recurrent_initializers
from ind_rnn.models import (build_dense_indrnn, build_plain_indrnn, build_residual_indrnn,
                            build_sequence_classifier)

__all__ = ["IndRNNCell", "IndRNN", "indrnn_scan", "project_and_scan", "indrnn_step",
           "effective_recurrent_weight", "xla_available"]
__all__ += ["SequenceBatchNormalization", "ResidualIndRNNBlock", "DenseIndRNNBlock",
            "build_sequence_classifier", "build_plain_indrnn", "build_residual_indrnn",
            "build_dense_indrnn", "recommended_recurrent_initializers"]
from ind_rnn.batch_norm import BatchNormStatistics, estimate_batch_norm_statistics
from ind_rnn.batch_norm_model import BatchNormModel

__all__ += ["estimate_batch_norm_statistics", "BatchNormStatistics", "BatchNormModel"]
from ind_rnn.tf1_checkpoint import TF1CheckpointReport, load_tf1_checkpoint

__all__ += ["load_tf1_checkpoint", "TF1CheckpointReport"]
__version__ = "0.1.0"
from ind_rnn.flavour import KerasFlavourError, keras_flavour

__all__ += ["keras_flavour", "KerasFlavourError"]

