"""The models `benchmarks/drnn_speed.py` times: the naive port and this library's three APIs.

Every builder takes `(cell_type, hidden, dilations, steps, n_classes,
every_step)` and returns an uncompiled Keras model of the same maths and
parameter count (the TF1 cells of `dilated_rnn.cells`, the original's output
layer on the last output, or `Dense` on every step with `every_step`).
`MODELS` maps each `--models` key to (the name printed, builder,
`jit_compile`).
"""
import keras

import dilated_rnn
from dilated_rnn import cells as cells_lib
from dilated_rnn.classification_models import output_layer


class _Dilate(keras.layers.Layer):
    """[batch, T, dim] -> [rate*batch, ceil(T/rate), dim], phase-major."""

    def __init__(self, rate, **kwargs):
        super().__init__(**kwargs)
        self.rate = rate

    def call(self, x):
        rate, steps = self.rate, x.shape[1]
        padded = -(-steps // rate) * rate
        x = keras.ops.pad(x, [[0, 0], [0, padded - steps], [0, 0]])
        x = keras.ops.reshape(x, (-1, padded // rate, rate, x.shape[-1]))
        x = keras.ops.transpose(x, (2, 0, 1, 3))
        return keras.ops.reshape(x, (-1, padded // rate, x.shape[-1]))


class _Undilate(keras.layers.Layer):
    """Inverse of _Dilate, dropping the padded tail."""

    def __init__(self, rate, steps, **kwargs):
        super().__init__(**kwargs)
        self.rate, self.steps = rate, steps

    def call(self, y):
        rate, dilated_steps, units = self.rate, y.shape[1], y.shape[-1]
        y = keras.ops.reshape(y, (rate, -1, dilated_steps, units))
        y = keras.ops.transpose(y, (1, 2, 0, 3))
        y = keras.ops.reshape(y, (-1, dilated_steps * rate, units))
        return y[:, :self.steps, :]


def naive_model(cell_type, hidden, dilations, steps, n_classes, every_step=False):
    """One `keras.layers.RNN` per layer over the dilated sequence."""
    inputs = keras.Input((steps, 1))
    x = inputs
    for cell, rate in zip(cells_lib.construct_cells(hidden, cell_type), dilations):
        y = keras.layers.RNN(cell, return_sequences=True)(_Dilate(rate)(x))
        x = _Undilate(rate, steps)(y)
    if every_step:
        return keras.Model(inputs, keras.layers.Dense(n_classes)(x))
    fused = keras.ops.reshape(x[:, -dilations[0]:, :], (-1, dilations[0] * hidden[-1]))
    return keras.Model(inputs, keras.layers.Dense(n_classes)(fused))


def classifier_model(cell_type, hidden, dilations, steps, n_classes, every_step=False):
    """`DilatedRNNClassifier` (default settings)."""
    del steps
    if every_step:
        raise ValueError("DilatedRNNClassifier reads only the last outputs")
    return dilated_rnn.DilatedRNNClassifier(hidden, dilations, n_classes, cell_type=cell_type)


def layer_model(cell_type, hidden, dilations, steps, n_classes, every_step=False):
    """The `DilatedRNN` layer in a functional model, then the output layer."""
    if dilations[0] != 1 and not every_step:
        raise ValueError("the layer model reads the last output only: dilations[0] must be 1")
    inputs = keras.Input((steps, 1))
    x = dilated_rnn.DilatedRNN(hidden, dilations, cell_type=cell_type,
                               return_sequences=every_step)(inputs)
    head = (keras.layers.Dense(n_classes) if every_step
            else output_layer(n_classes))
    return keras.Model(inputs, head(x))


def legacy_model(cell_type, hidden, dilations, steps, n_classes, every_step=False):
    """`drnn_classification` (the TF1-named function) on a `keras.Input`."""
    if every_step:
        raise ValueError("drnn_classification reads only the last outputs")
    inputs = keras.Input((steps, 1))
    logits = dilated_rnn.drnn_classification(inputs, hidden, dilations, steps, n_classes,
                                             cell_type=cell_type)
    return keras.Model(inputs, logits)


# key: (name printed, builder, jit_compile). Keras' default jit_compile="auto"
# does not XLA-compile on a CPU-only machine, so the XLA naive run asks for it.
MODELS = {
    "naive-xla": ("naive (keras RNN, XLA step)", naive_model, True),
    "naive": ("naive (keras RNN, no XLA)", naive_model, False),
    "classifier": ("DilatedRNNClassifier", classifier_model, "auto"),
    "layer": ("DilatedRNN layer (functional)", layer_model, "auto"),
    "drnn_classification": ("drnn_classification", legacy_model, "auto"),
}
# Models that read only the last outputs (skipped with --loss every-step).
LAST_OUTPUT_ONLY = ("classifier", "drnn_classification")
