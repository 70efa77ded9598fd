"""TensorFlow 1 reference for the DilatedRNN classifier, run in a subprocess.

Builds the original's `drnn_classification` graph in TF1 graph mode with
TensorFlow's own legacy cells (`tf.compat.v1.nn.rnn_cell.BasicRNNCell`,
`BasicLSTMCell`, `GRUCell`), following the original's list algorithm (pad the
list with zeros at the end, concatenate every `rate` steps on the batch axis,
run, split, interleave, drop the padding) written here independently of the
library. The only liberty: each layer runs its dilated list with
`tf.nn.dynamic_rnn` over the stacked list instead of `static_rnn`, which
computes the same and builds in seconds instead of minutes.

Usage (TF_USE_LEGACY_KERAS=1, tf-keras installed):
    python tests/drnn_tf1_reference.py OUT.npz

Writes, per configuration name: the variables by TF1 name, the logits of a
fixed random batch, and the gradients of sum(logits * cotangent).
"""
import os
import sys

if __name__ == "__main__":
    # Run as the tests' subprocess: the TF1 cells need tf-keras. Imported by a
    # test (for CONFIGS), it must not switch the test process's Keras.
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf1 = tf.compat.v1

DEMO = [2 ** i for i in range(9)]
# name: (cell type, hidden structs, dilations, n_steps)
CONFIGS = {
    "demo_rnn": ("RNN", [20] * 9, DEMO, 300),
    "demo_lstm": ("LSTM", [20] * 9, DEMO, 300),
    "demo_gru": ("GRU", [20] * 9, DEMO, 300),
    "readme_gru": ("GRU", [20, 30, 40, 50], [4, 8, 16, 32], 300),
}
BATCH, N_CLASSES, INPUT_DIMS = 4, 10, 1


def make_cell(cell_type, units):
    cells = tf1.nn.rnn_cell
    if cell_type == "RNN":
        return cells.BasicRNNCell(units)
    if cell_type == "LSTM":
        return cells.BasicLSTMCell(units)  # forget_bias=1.0, state (c, h)
    return cells.GRUCell(units)


def dilated_layer(cell, inputs, rate, scope):
    """The original dRNN on a list of [batch, dims] tensors."""
    n_steps = len(inputs)
    padded = list(inputs)
    while len(padded) % rate:
        padded.append(tf.zeros_like(inputs[0]))
    dilated = [tf.concat(padded[i * rate:(i + 1) * rate], axis=0)
               for i in range(len(padded) // rate)]
    outputs, _ = tf1.nn.dynamic_rnn(cell, tf.stack(dilated), dtype=tf.float32,
                                    time_major=True, scope=scope)
    interleaved = [piece for output in tf.unstack(outputs)
                   for piece in tf.split(output, rate, axis=0)]
    return interleaved[:n_steps]


def classifier(x, cell_type, hidden, dilations, n_steps):
    steps = tf.split(tf.reshape(tf.transpose(x, [1, 0, 2]), [-1, INPUT_DIMS]),
                     n_steps, 0)
    for units, rate in zip(hidden, dilations):
        steps = dilated_layer(make_cell(cell_type, units), steps, rate,
                              "multi_dRNN_dilation_%d" % rate)
    fused = tf.concat(steps[-dilations[0]:], axis=1)
    weights = tf.Variable(tf1.random_normal([hidden[-1] * dilations[0],
                                             N_CLASSES]))
    bias = tf.Variable(tf1.random_normal([N_CLASSES]))
    return tf.matmul(fused, weights) + bias


def _load_fixed_weights(variables, rng, session):
    """Replaces the random initial values by draws from `rng`, so that every
    run compares the same weights: the cells' kernels are built by tf-keras'
    initializers, whose seeds the graph seed does not fix. The distributions
    are the originals': the cells' kernels Glorot-uniform (TF1's default), the
    output layer's weights and bias standard normal; the cells' biases are
    constants (zeros, GRU gates ones) and are kept."""
    for variable in variables:
        shape = variable.shape.as_list()
        if variable.name.startswith("Variable"):  # the output layer, random_normal
            value = rng.normal(size=shape)
        elif len(shape) == 2:
            limit = np.sqrt(6.0 / (shape[0] + shape[1]))
            value = rng.uniform(-limit, limit, size=shape)
        else:
            continue
        variable.load(value.astype(np.float32), session)


def run(name, cell_type, hidden, dilations, n_steps, results):
    rng = np.random.RandomState(len(results))
    x_value = rng.rand(BATCH, n_steps, INPUT_DIMS).astype("float32")
    cotangent = rng.normal(size=(BATCH, N_CLASSES)).astype("float32")
    with tf.Graph().as_default():
        tf1.set_random_seed(7)
        x = tf1.placeholder(tf.float32, [None, n_steps, INPUT_DIMS])
        logits = classifier(x, cell_type, hidden, dilations, n_steps)
        variables = tf1.trainable_variables()
        grads = tf.gradients(tf.reduce_sum(logits * cotangent), variables)
        # Grappler's rewrites of this many-op graph would take longer than
        # running it; the numbers do not depend on them.
        config = tf1.ConfigProto()
        config.graph_options.rewrite_options.disable_meta_optimizer = True
        with tf1.Session(config=config) as session:
            session.run(tf1.global_variables_initializer())
            _load_fixed_weights(variables, rng, session)
            values, logit_values, grad_values = session.run(
                [variables, logits, grads], {x: x_value})
    results[f"{name}/x"] = x_value
    results[f"{name}/cotangent"] = cotangent
    results[f"{name}/logits"] = logit_values
    for variable, value, grad in zip(variables, values, grad_values):
        results[f"{name}/var/{variable.name}"] = value
        results[f"{name}/grad/{variable.name}"] = grad


def main(path):
    tf1.disable_eager_execution()
    results = {}
    for name, config in CONFIGS.items():
        run(name, *config, results)
    np.savez(path, **results)


if __name__ == "__main__":
    main(sys.argv[1])
