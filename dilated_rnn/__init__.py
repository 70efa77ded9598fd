"""DilatedRNN (Chang et al., 2017) for TensorFlow 2 / Keras.

Modern API: `DilatedRNN` (a Keras layer), `DilatedRNNClassifier` (a Keras
model), the TF1-exact cells `BasicRNNCell`, `BasicLSTMCell`, `GRUCell`, and
`mean_recurrent_length`. The TF1 original's functions keep their names and
arguments: `dRNN`, `multi_dRNN_with_dilations` (also in `dilated_rnn.drnn`),
`_contruct_cells` (= `construct_cells`), `_rnn_reformat`, `drnn_classification`
(also in `dilated_rnn.classification_models`).
These build Keras 3 layers in eager and functional code; called in TF1 graph
mode (placeholders, `Session`) they build the original TF1 graph, with the
original scope names, by `dilated_rnn.legacy` (which needs the `legacy` extra
and TF_USE_LEGACY_KERAS=1; without them graph mode raises an ImportError
saying so). See `ind_rnn.flavour`.
`load_tf1_checkpoint` loads TF1 checkpoints of the original demo into these
models, and `TF1RMSprop` trains them as the demo's `tf.train.RMSPropOptimizer`
did (see MIGRATING.md).
"""
# First, before anything runs a TensorFlow op: pooled CPU memory for the large
# tensors of a training step (ind_rnn.native.build.tune_allocator;
# RNN_KERNELS_TUNE_ALLOCATOR=0 turns it off).
from ind_rnn.native import build as _build  # noqa: E402

_build.tune_allocator()
from dilated_rnn.cells import BasicLSTMCell, BasicRNNCell, GRUCell
from dilated_rnn.classification_models import _contruct_cells, _rnn_reformat
from dilated_rnn.classification_models import drnn_classification
from dilated_rnn.drnn import dRNN, multi_dRNN_with_dilations
from dilated_rnn.layers import DilatedRNN, last_valid_steps
from dilated_rnn.memory import mean_recurrent_length
from dilated_rnn.models import DilatedRNNClassifier
from dilated_rnn.tf1_checkpoint import load_tf1_checkpoint
from dilated_rnn.tf1_optimizers import TF1RMSprop

# The original's misspelt name and the spelt-out one are one function here, which
# follows graph mode like the other TF1 names (Keras 3 only: cells.construct_cells).
construct_cells = _contruct_cells

__all__ = [
    "BasicLSTMCell", "BasicRNNCell", "DilatedRNN", "DilatedRNNClassifier",
    "GRUCell", "_contruct_cells", "_rnn_reformat", "construct_cells", "dRNN",
    "drnn_classification", "last_valid_steps", "mean_recurrent_length",
    "multi_dRNN_with_dilations",
]
__all__ += ["TF1RMSprop", "load_tf1_checkpoint"]
