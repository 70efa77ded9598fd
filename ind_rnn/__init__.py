"""IndRNN for TensorFlow 2 / Keras (Li et al., CVPR 2018).

* `IndRNNCell`: the TF1 original's cell, with its signature, for
  `keras.layers.RNN`.
* `IndRNN`: the fast whole-sequence layer with the same weights.
* `indrnn_scan`, `project_and_scan`, `indrnn_step`, `effective_recurrent_weight`:
  the recurrence.
* `load_tf1_checkpoint`: TF1 checkpoints of the original graphs into these
  layers (see MIGRATING.md).
* `estimate_batch_norm_statistics`, `BatchNormStatistics`: exact population
  statistics for the batch norms (a function, and a callback for `fit`);
  `BatchNormModel`, the models' class, whose `fit` uses that callback.
* `ind_rnn.legacy.IndRNNCell`: the TF1 graph-mode cell for `tf.compat.v1`
  code (needs the `legacy` extra and TF_USE_LEGACY_KERAS=1; not imported here).
"""
from ind_rnn.ind_rnn_cell import IndRNNCell
from ind_rnn.layer import IndRNN
from ind_rnn.recurrence import (effective_recurrent_weight, indrnn_scan, indrnn_step,
                                project_and_scan, xla_available)
from ind_rnn.deep import DenseIndRNNBlock, ResidualIndRNNBlock, SequenceBatchNormalization
from ind_rnn.models import (build_dense_indrnn, build_plain_indrnn, build_residual_indrnn,
                            build_sequence_classifier, recommended_recurrent_initializers)

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
