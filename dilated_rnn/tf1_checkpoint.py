"""TF1 checkpoints of the DilatedRNN demo, loaded into the Keras models.

`load_tf1_checkpoint` is `ind_rnn.load_tf1_checkpoint` (one implementation
for both packages); importing this module teaches it the DilatedRNN side:

* the TF1-exact cells of `dilated_rnn.cells` store TF1's layouts, so their
  weights are copies: `basic_rnn_cell/{kernel,bias}`,
  `basic_lstm_cell/{kernel,bias}` (or `lstm_cell/...`),
  `gru_cell/{gates,candidate}/{kernel,bias}`;
* a `DilatedRNN` layer holds one cell per dilated layer, in order;
* the "drnn" layout: layer `k` is the scope `multi_dRNN_dilation_<d_k>`
  (unique names for repeated dilations, as `multi_dRNN_with_dilations`
  gives them), and the output layer is `Variable` / `Variable_1`.

Example:

    model = dilated_rnn.DilatedRNNClassifier([20] * 9, [2 ** i for i in range(9)], 10)
    model(np.zeros((1, 784, 1), "float32"))  # build
    print(dilated_rnn.load_tf1_checkpoint(model, "demo/model.ckpt"))
"""
from dilated_rnn.cells import BasicLSTMCell, BasicRNNCell, GRUCell
from dilated_rnn.drnn import unique_layer_names
from dilated_rnn.layers import DilatedRNN
from ind_rnn import tf1_formats
from ind_rnn.tf1_checkpoint import load_tf1_checkpoint  # noqa: F401  (re-exported)

__all__ = ["load_tf1_checkpoint"]


def _lstm_format():
    """BasicLSTMCell: a copy, plus any difference between the two forget biases."""
    copy = tf1_formats.copy_format(("basic_lstm_cell", "lstm_cell"),
                                      {"kernel": "kernel", "bias": "bias"})

    def convert(values, cell, forget_bias):
        # The TF1 cell added `forget_bias` at run time, this one adds its
        # own: the f quarter of the bias (order i, j, f, o) takes the rest.
        bias = values["bias"].copy()
        units = cell.num_units
        bias[2 * units:3 * units] += forget_bias - cell.forget_bias
        return copy.convert({**values, "bias": bias}, cell, forget_bias)

    return tf1_formats.CellFormat(copy.tf1_cell_scopes, copy.tf1_shapes, convert)


def _dilated_units(layer):
    return [tf1_formats.RecurrentUnit(cell, dilation)
            for cell, dilation in zip(layer.cells, layer.dilations)]


def _drnn_scopes(units, names):
    del names
    dilations = [unit.dilation for unit in units]
    if None in dilations:
        raise ValueError(
            "Received an invalid value for argument `layout`, expected a target whose "
            "recurrent cells are all in DilatedRNN layers for layout 'drnn' (their "
            "dilations name the TF1 scopes), got cells without a dilation; pass "
            "`scopes=[...]` instead.")
    return unique_layer_names(dilations)


_DRNN_SCOPE = r"^(multi_dRNN_dilation_\d+(?:_\d+)?)/"

tf1_formats.register_cell_format(BasicRNNCell, tf1_formats.copy_format(
    ("basic_rnn_cell",), {"kernel": "kernel", "bias": "bias"}))
tf1_formats.register_cell_format(BasicLSTMCell, _lstm_format())
tf1_formats.register_cell_format(GRUCell, tf1_formats.copy_format(
    ("gru_cell",), {"gates/kernel": "gates_kernel", "gates/bias": "gates_bias",
                    "candidate/kernel": "candidate_kernel",
                    "candidate/bias": "candidate_bias"}))
tf1_formats.register_recurrent_layer(DilatedRNN, _dilated_units)
tf1_formats.register_layout(tf1_formats.Layout(
    "drnn", lambda names: any(name.startswith("multi_dRNN_dilation_") for name in names),
    _drnn_scopes, _DRNN_SCOPE, (("Variable", "Variable_1"),)))
