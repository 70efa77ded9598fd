"""IndRNN for TensorFlow 2 / Keras (Li et al., CVPR 2018).

* `IndRNNCell`: the TF1 original's cell, with its signature, for
  `keras.layers.RNN`.
* `IndRNN`: the fast whole-sequence layer with the same weights.
* `indrnn_scan`, `indrnn_step`, `effective_recurrent_weight`: the recurrence.
"""
from ind_rnn.ind_rnn_cell import IndRNNCell
from ind_rnn.layer import IndRNN
from ind_rnn.recurrence import (effective_recurrent_weight, indrnn_scan, indrnn_step,
                                xla_available)
from ind_rnn.deep import DenseIndRNNBlock, ResidualIndRNNBlock, SequenceBatchNormalization
from ind_rnn.models import (build_dense_indrnn, build_plain_indrnn, build_residual_indrnn,
                            build_sequence_classifier, recommended_recurrent_initializers)

__all__ = ["IndRNNCell", "IndRNN", "indrnn_scan", "indrnn_step",
           "effective_recurrent_weight", "xla_available"]
__all__ += ["SequenceBatchNormalization", "ResidualIndRNNBlock", "DenseIndRNNBlock",
            "build_sequence_classifier", "build_plain_indrnn", "build_residual_indrnn",
            "build_dense_indrnn", "recommended_recurrent_initializers"]
__version__ = "0.1.0"
