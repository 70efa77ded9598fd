"""`DilatedRNNClassifier`: the Keras-model twin of `drnn_classification`."""
import keras

from dilated_rnn._validation import check_positive_int
from dilated_rnn.classification_models import output_layer
from dilated_rnn.layers import DilatedRNN


@keras.saving.register_keras_serializable(package="dilated_rnn")
class DilatedRNNClassifier(keras.Model):
    """A dilated RNN sequence classifier returning logits.

    The same network as `drnn_classification`: a `DilatedRNN` stack, then an
    affine output layer (standard-normal initial weights, as the original)
    on the top layer's last output, or, if `dilations[0] > 1`, on its last
    `dilations[0]` outputs concatenated oldest first. Masks are honoured:
    "last" means each sequence's last valid step.

    Args:
        hidden_structs: list of positive ints, the units of each layer.
        dilations: list of positive ints, one per layer.
        n_classes: positive int, the number of logits.
        cell_type: "RNN", "LSTM", "GRU" or "IndRNN".
        implementation: loop engine of the `DilatedRNN` (default "auto").
        **kwargs: base `keras.Model` arguments (`name`...).

    Call arguments:
        inputs: `[batch, time, features]`.
        mask: optional boolean `[batch, time]`.

    Returns:
        Logits `[batch, n_classes]`.

    Raises:
        ValueError: for bad sizes, dilations or cell type.

    Example:

    >>> model = DilatedRNNClassifier([20] * 9, [2 ** i for i in range(9)], 10)
    >>> model(np.zeros((2, 784, 1), "float32")).shape
    TensorShape([2, 10])
    >>> model.count_params()
    7210
    """

    def __init__(self, hidden_structs, dilations, n_classes, cell_type="RNN",
                 implementation="auto", **kwargs):
        super().__init__(**kwargs)
        self.n_classes = check_positive_int("n_classes", n_classes)
        # The model's dtype policy (`dtype=`) is its layers' too.
        self.drnn = DilatedRNN(
            hidden_structs, dilations, cell_type=cell_type,
            return_sequences=True, time_major=True,
            implementation=implementation, name="dilated_rnn",
            dtype=self.dtype_policy)
        self.fused_steps = self.drnn.dilations[0]
        self.output_layer = output_layer(self.n_classes, name="logits",
                                         dtype=self.dtype_policy)
        self.supports_masking = True  # it reads the mask; none goes out

    def build(self, input_shape):
        batch, steps, features = input_shape
        self.drnn.build((steps, batch, features))  # it runs time-major
        self.output_layer.build((batch, self.fused_steps * self.drnn.units))

    def call(self, inputs, mask=None, training=None):
        sequence = keras.ops.transpose(inputs, (1, 0, 2))
        if mask is not None:
            mask = keras.ops.transpose(mask)
        # Only the last `fused_steps` outputs are read: the layer computes
        # only what they depend on.
        fused = self.drnn(sequence, mask=mask, training=training,
                          last_steps=self.fused_steps)
        return self.output_layer(fused)

    def compute_mask(self, inputs, mask=None):
        return None

    def get_config(self):
        return {
            **super().get_config(),
            "hidden_structs": self.drnn.hidden_structs,
            "dilations": self.drnn.dilations,
            "n_classes": self.n_classes,
            "cell_type": self.drnn.cell_type,
            "implementation": self.drnn.implementation,
        }
