"""Which Keras `tf.keras` is in this process: the switch behind the original names.

TensorFlow >= 2.16 resolves `tf.keras` once per process: to Keras 3 (the
default), or to tf-keras (Keras 2, with TensorFlow's TF1 RNN cells and graph
mode) when the environment variable `TF_USE_LEGACY_KERAS=1` is set before
TensorFlow is imported and the `tf-keras` package is installed. The names
that mirror the TF1 originals follow it:

* `ind_rnn.IndRNNCell` and `ind_rnn.ind_rnn_cell.IndRNNCell` are the Keras 3
  cell (`ind_rnn.keras_cell.IndRNNCell`) under Keras 3, and the tf-keras / TF1
  cell (`ind_rnn.legacy.IndRNNCell`) under tf-keras, bound when `ind_rnn` is
  imported;
* `dilated_rnn.dRNN`, `multi_dRNN_with_dilations`, `_contruct_cells`,
  `_rnn_reformat` and `drnn_classification` (also under `dilated_rnn.drnn` and
  `dilated_rnn.classification_models`) build Keras 3 layers in eager or
  functional code, and the original TF1 graph (`dilated_rnn.legacy`) in
  graph mode, decided per call by `graph_mode()`.

`keras_flavour()` says which applies; the classes under their explicit names
(`ind_rnn.keras_cell.IndRNNCell`, `ind_rnn.legacy.IndRNNCell`) never change.
The errors for combinations that cannot work (a Keras 3 layer in a tf-keras
model, a TF1 cell in a Keras 3 layer, graph mode without tf-keras) are raised
through this module, as `KerasFlavourError`, and name what to use instead.
"""
import os

import tensorflow as tf

KERAS_3 = "keras_3"
TF_KERAS = "tf_keras"

LEGACY_HELP = (
    "TensorFlow >= 2.16 provides its TF1 RNN cells (tf.compat.v1.nn.rnn_cell) only "
    "through tf-keras: install the `legacy` extra (pip install \"drnn-indrnn-tf2[legacy]\") "
    "and set the environment variable TF_USE_LEGACY_KERAS=1 before TensorFlow is first "
    "imported.")


class KerasFlavourError(TypeError):
    """An object of one Keras used where only the other Keras can run it."""


def keras_flavour():
    """Which Keras `tf.keras` resolves to in this process.

    Returns:
        `"tf_keras"` if `tf.keras` is tf-keras (`TF_USE_LEGACY_KERAS=1` was set
        before TensorFlow was imported, and tf-keras is installed), else
        `"keras_3"`.

    Example:

    >>> from ind_rnn import keras_flavour
    >>> keras_flavour()  # without TF_USE_LEGACY_KERAS
    'keras_3'
    """
    try:
        name = tf.keras.__name__
    except (AttributeError, ImportError):  # TF_USE_LEGACY_KERAS=1 without tf-keras
        return KERAS_3
    return TF_KERAS if name.startswith("tf_keras") else KERAS_3


def graph_mode():
    """Whether TF1 graph-building code is running (no eager context outside functions).

    True after `tf.compat.v1.disable_eager_execution()` (or
    `disable_v2_behavior()`), and inside `with tf.Graph().as_default():`;
    False in eager code and while a `tf.function` or Keras traces a function.

    Returns:
        bool.

    Example:

    >>> graph_mode()
    False
    >>> with tf.Graph().as_default():
    ...     graph_mode()
    True
    """
    return not tf.compat.v1.executing_eagerly_outside_functions()


def is_tf_keras_object(value):
    """Whether `value` is a tf-keras object (a layer, cell or `tf.keras.Input` tensor)."""
    return any(klass.__module__.startswith("tf_keras") for klass in type(value).__mro__)


def describe(value):
    """`module.Class` of `value`, for error messages."""
    return f"{type(value).__module__}.{type(value).__qualname__}"


def environment():
    """This process's Keras, as an error message states it."""
    return (f"tf.keras is {'tf-keras' if keras_flavour() == TF_KERAS else 'Keras 3'} here "
            f"(TF_USE_LEGACY_KERAS={os.environ.get('TF_USE_LEGACY_KERAS')!r})")


def unsupported(combination, instead):
    """The error for a combination that cannot work.

    Args:
        combination: what was combined, e.g. "the Keras 3 layer `ind_rnn.IndRNN`
            inside a tf-keras model".
        instead: what to use instead.

    Returns:
        A `KerasFlavourError` (a TypeError) to raise.
    """
    return KerasFlavourError(
        f"Unsupported combination: {combination}. Keras 3 and tf-keras objects do not mix; "
        f"{environment()}. Use instead: {instead}")


def check_not_tf_keras_tensor(layer_name, value, instead):
    """Raises if a Keras 3 layer receives a tf-keras tensor (`tf.keras.Input`).

    For the Keras 3 layers' `call`/`__call__` (and the functions that build
    them): under `TF_USE_LEGACY_KERAS=1`, `tf.keras.Input` and the tensors of a
    tf-keras model are tf-keras objects, which Keras 3 layers cannot take.

    Args:
        layer_name: the Keras 3 layer or function, e.g. "ind_rnn.IndRNN".
        value: what it received (a tensor, or a list / tuple of them).
        instead: what to use instead.

    Raises:
        KerasFlavourError: if `value` (or an element of it) is a tf-keras tensor.
    """
    values = value if isinstance(value, (list, tuple)) else [value]
    for item in values:
        if is_tf_keras_object(item):
            raise unsupported(
                f"the Keras 3 `{layer_name}` called on a tf-keras tensor ({describe(item)}, "
                "e.g. from tf.keras.Input or a tf-keras model)", instead)


# What to use instead of a Keras 3 layer in a tf-keras model, per layer class.
LAYER_INSTEAD = {
    "IndRNN": "in tf-keras models, tf.keras.layers.RNN(ind_rnn.IndRNNCell(...)) under "
              "TF_USE_LEGACY_KERAS=1 (the tf-keras cell: same signature, weights and maths); "
              "or Keras 3 throughout: ind_rnn.IndRNN in a keras.Model on keras.Input.",
    "DilatedRNN": "for TF1 / tf-keras code, the original graph: dilated_rnn.drnn."
                  "multi_dRNN_with_dilations or dilated_rnn.classification_models."
                  "drnn_classification called in graph mode under TF_USE_LEGACY_KERAS=1; or "
                  "Keras 3 throughout: dilated_rnn.DilatedRNN in a keras.Model on keras.Input.",
}


def check_keras3_layer_inputs(layer, inputs):
    """For a Keras 3 layer's `call`: raises if `inputs` are tf-keras tensors.

    One line in `ind_rnn.IndRNN.call` / `dilated_rnn.DilatedRNN.call` turns
    tf-keras' or Keras' own errors for a Keras 3 layer in a tf-keras model
    into one that names the combination and what to use instead.

    Args:
        layer: the Keras 3 layer (its class name picks the advice).
        inputs: what its `call` received (a tensor or a list of tensors).

    Raises:
        KerasFlavourError: if an input is a tf-keras tensor.

    Example (the first line of a Keras 3 layer's `call`):

        flavour.check_keras3_layer_inputs(self, inputs)
    """
    name = type(layer).__name__
    module = type(layer).__module__.split(".")[0]
    instead = LAYER_INSTEAD.get(name, "Keras 3 throughout: keras.Input and a keras.Model.")
    check_not_tf_keras_tensor(f"{module}.{name}", inputs, instead)


def check_graph_mode_available(function_name):
    """Raises ImportError, saying what to install and set, if graph mode has no TF1 cells.

    Args:
        function_name: the function called in graph mode.

    Raises:
        ImportError: if `tf.compat.v1.nn.rnn_cell` is unavailable (no tf-keras,
            or `TF_USE_LEGACY_KERAS` unset when TensorFlow was imported).
    """
    if keras_flavour() != TF_KERAS:
        raise ImportError(
            f"`{function_name}` was called in TF1 graph mode (eager execution disabled or "
            "a tf.Graph as default), which builds the original TF1 graph with TensorFlow's "
            f"TF1 RNN cells. {LEGACY_HELP} {environment()}. Or run it eagerly on Keras 3 "
            "(no disable_eager_execution / disable_v2_behavior), e.g. on a keras.Input.")
