"""The original repository's `ind_rnn_cell` module: `IndRNNCell` for whichever Keras runs.

`from ind_rnn.ind_rnn_cell import IndRNNCell` (the original's import with the
package prefix) gives the cell that fits what `tf.keras` is in this process
(`ind_rnn.flavour.keras_flavour()`):

* Keras 3 (the default): the Keras 3 cell, `ind_rnn.keras_cell.IndRNNCell`,
  for `keras.layers.RNN` (and the fast `ind_rnn.IndRNN` layer);
* tf-keras (`TF_USE_LEGACY_KERAS=1` set before TensorFlow is imported, the
  `legacy` extra installed): the tf-keras / TF1 cell,
  `ind_rnn.legacy.IndRNNCell`, for `tf.keras.layers.RNN` (`fit`, `save`,
  `load_model`) and for the TF1 graph API (`tf.compat.v1.nn.dynamic_rnn`,
  `static_rnn`, `bidirectional_dynamic_rnn`, `MultiRNNCell`) with the
  original variable names.

`ind_rnn.IndRNNCell` is the same class. Both cells have the original's
signature and run the same recurrence step (`ind_rnn.step.indrnn_step`).
The choice is made once, when `ind_rnn` is first imported (TensorFlow fixes
`tf.keras` then too); `flavour_cell()` makes it again.

Example (under TF_USE_LEGACY_KERAS=1, graph mode, as the original script):

    import tensorflow.compat.v1 as tf; tf.disable_v2_behavior()
    from ind_rnn.ind_rnn_cell import IndRNNCell

    cell = tf.nn.rnn_cell.MultiRNNCell([IndRNNCell(128) for _ in range(2)])
    outputs, state = tf.nn.dynamic_rnn(cell, inputs, dtype=tf.float32)
"""
from ind_rnn import flavour
from ind_rnn.keras_cell import (DEFAULT_INPUT_KERNEL_INITIALIZER,  # noqa: F401 (re-exported)
                                DEFAULT_RECURRENT_KERNEL_INITIALIZER)
from ind_rnn.keras_cell import IndRNNCell as _Keras3IndRNNCell


def flavour_cell():
    """The `IndRNNCell` class for this process's `tf.keras`.

    Returns:
        `ind_rnn.legacy.IndRNNCell` if `tf.keras` is tf-keras, else
        `ind_rnn.keras_cell.IndRNNCell`.

    Example:

    >>> flavour_cell().__module__  # Keras 3
    'ind_rnn.keras_cell'
    """
    if flavour.keras_flavour() == flavour.TF_KERAS:
        from ind_rnn import legacy  # pylint: disable=import-outside-toplevel
        return legacy.IndRNNCell
    return _Keras3IndRNNCell


IndRNNCell = flavour_cell()
