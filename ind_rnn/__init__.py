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

__all__ = ["IndRNNCell", "IndRNN", "indrnn_scan", "indrnn_step",
           "effective_recurrent_weight", "xla_available"]
__version__ = "0.1.0"
