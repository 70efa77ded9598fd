"""Builds the original TF1 graphs in graph mode and saves real TF1 checkpoints.

Run by the migration tests in a subprocess, with TF_USE_LEGACY_KERAS=1 (TF's
TF1 cells come from tf-keras):

    python tests/migration_tf1_graphs.py OUT_DIR [GUIDE.md GUIDE_DIR]

For every case it writes OUT_DIR/<case>/model.ckpt (tf.compat.v1.train.Saver),
OUT_DIR/<case>/arrays.npz (inputs and the TF1 session's outputs) and an entry
in OUT_DIR/manifest.json (the graph's variable names, and what else the case
observed). With GUIDE.md, it first runs every ```python tf1 block of the
migration guide in GUIDE_DIR, each in a fresh default graph.

The DilatedRNN reference here is written from the original's description
(pad the list, stack each `rate` steps on the batch axis, `static_rnn`,
split back, drop the padding) with TF's own cells, not with the package's
dilation code, so the legacy functions and the TF2 models are compared with
an independent graph.
"""
import json
import os
import re
import sys

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import rewriter_config_pb2

if __name__ == "__main__":  # run as a script from anywhere in the repository
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

v1 = tf.compat.v1
# Grappler's rewrites of the long unrolled list graphs cost more than the
# runs they would speed up.
SESSION_CONFIG = v1.ConfigProto(graph_options=v1.GraphOptions(
    rewrite_options=rewriter_config_pb2.RewriterConfig(disable_meta_optimizer=True)))
RNG = np.random.RandomState(20240905)
MANIFEST = {}

# Sizes of the DilatedRNN demo, made small: 9 layers with dilations up to 256
# need more than 256 steps.
DEMO_STEPS, DEMO_HIDDEN, DEMO_DILATIONS, DEMO_CLASSES = 300, 3, [2 ** i for i in range(9)], 4
FUSED_STEPS, FUSED_HIDDEN, FUSED_DILATIONS = 40, [3, 4, 5, 6], [4, 8, 16, 32]
ADDITION_STEPS, INDRNN_UNITS = 12, 6
MNIST_STEPS, MNIST_LAYERS, MNIST_UNITS, MNIST_CLASSES = 10, 3, 5, 4


def _session():
    return v1.Session(config=SESSION_CONFIG)


def _record(case, session, arrays, directory, **extra):
    path = os.path.join(directory, case)
    os.makedirs(path, exist_ok=True)
    v1.train.Saver().save(session, os.path.join(path, "model.ckpt"))
    np.savez(os.path.join(path, "arrays.npz"), **arrays)
    MANIFEST[case] = {"variables": [variable.op.name for variable in v1.global_variables()],
                      **extra}


def _randomize(session, scale=0.5):
    """Gives every float variable random values, so that no layout slip hides
    behind constant initial values (zero biases, GRU's 1.0 gates)."""
    model_variables = v1.trainable_variables() + [
        variable for variable in v1.global_variables() if "moving_" in variable.op.name]
    for variable in model_variables:  # not the optimizer's accumulators
        shape = variable.shape.as_list()
        value = RNG.normal(0.0, scale, shape)
        if "moving_variance" in variable.op.name:
            value = np.abs(value) + 0.5
        variable.load(value.astype(np.float32), session)


# --------------------------------------------------------------------------
# IndRNN: the addition script (dynamic_rnn + MultiRNNCell)
# --------------------------------------------------------------------------
def addition_graph(directory):
    from ind_rnn.legacy import IndRNNCell
    recurrent_max = 2 ** (1 / ADDITION_STEPS)
    with tf.Graph().as_default(), _session() as session:
        inputs = v1.placeholder(tf.float32, [None, ADDITION_STEPS, 2])
        targets = v1.placeholder(tf.float32, [None])
        cell = v1.nn.rnn_cell.MultiRNNCell([
            IndRNNCell(INDRNN_UNITS, recurrent_max_abs=recurrent_max,
                       recurrent_kernel_initializer=v1.random_uniform_initializer(
                           -recurrent_max, recurrent_max)),
            IndRNNCell(INDRNN_UNITS, recurrent_min_abs=0.5, recurrent_max_abs=1.1),
        ])
        output, _ = v1.nn.dynamic_rnn(cell, inputs, dtype=tf.float32)
        weight = v1.get_variable("softmax_weight", shape=[INDRNN_UNITS, 1])
        bias = v1.get_variable("softmax_bias", shape=[1],
                               initializer=v1.constant_initializer(0.1))
        prediction = tf.squeeze(tf.matmul(output[:, -1, :], weight) + bias, axis=1)
        loss = v1.losses.mean_squared_error(targets, prediction)
        global_step = v1.get_variable("global_step", shape=[], trainable=False,
                                      initializer=v1.zeros_initializer)
        train = v1.train.AdamOptimizer(1e-2).minimize(loss, global_step=global_step)
        session.run(v1.global_variables_initializer())
        _randomize(session)
        for _ in range(2):  # a trained checkpoint, with Adam's slots
            session.run(train, {inputs: RNG.rand(4, ADDITION_STEPS, 2),
                                targets: RNG.rand(4)})
        x = RNG.normal(0.0, 1.0, (3, ADDITION_STEPS, 2)).astype(np.float32)
        sequence, predicted = session.run([output, prediction], {inputs: x})
        _record("addition", session, {"x": x, "sequence": sequence, "prediction": predicted},
                directory, recurrent_max=recurrent_max)


# --------------------------------------------------------------------------
# IndRNN: the sequential MNIST script (one dynamic_rnn per layer, "rnn<k>",
# batch norm after every layer)
# --------------------------------------------------------------------------
def sequential_mnist_graph(directory):
    from ind_rnn.legacy import IndRNNCell
    recurrent_max = 2 ** (1 / MNIST_STEPS)
    with tf.Graph().as_default(), _session() as session:
        inputs = v1.placeholder(tf.float32, [None, MNIST_STEPS, 1])
        labels = v1.placeholder(tf.int32, [None])
        training = v1.placeholder_with_default(True, [])
        layer_input = inputs
        for layer in range(1, MNIST_LAYERS + 1):
            cell = IndRNNCell(MNIST_UNITS, recurrent_max_abs=recurrent_max,
                              input_kernel_initializer=v1.random_uniform_initializer(-0.5, 0.5))
            layer_output, _ = v1.nn.dynamic_rnn(cell, layer_input, dtype=tf.float32,
                                                scope="rnn%d" % layer)
            layer_output = v1.layers.batch_normalization(layer_output, training=training,
                                                         momentum=0.5, scale=True)
            with tf.control_dependencies(v1.get_collection(v1.GraphKeys.UPDATE_OPS)):
                layer_input = tf.identity(layer_output)
        weight = v1.get_variable("softmax_weight", shape=[MNIST_UNITS, MNIST_CLASSES],
                                 initializer=v1.glorot_uniform_initializer())
        bias = v1.get_variable("softmax_bias", shape=[MNIST_CLASSES],
                               initializer=v1.constant_initializer(0.0))
        logits = tf.matmul(layer_input[:, -1, :], weight) + bias
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            logits=logits, labels=labels))
        train = v1.train.AdamOptimizer(1e-2).minimize(loss)
        session.run(v1.global_variables_initializer())
        _randomize(session)
        for _ in range(2):  # moves the batch norm statistics
            session.run(train, {inputs: RNG.normal(0, 1, (8, MNIST_STEPS, 1)),
                                labels: RNG.randint(0, MNIST_CLASSES, 8)})
        x = RNG.normal(0.0, 1.0, (3, MNIST_STEPS, 1)).astype(np.float32)
        inference = session.run(logits, {inputs: x, training: False})
        _record("sequential_mnist", session, {"x": x, "logits": inference}, directory,
                recurrent_max=recurrent_max)


# --------------------------------------------------------------------------
# TF's own cells in dynamic_rnn + MultiRNNCell (weights for Keras' cells)
# --------------------------------------------------------------------------
def tf_cells_graph(directory):
    rnn_cell = v1.nn.rnn_cell
    with tf.Graph().as_default(), _session() as session:
        inputs = v1.placeholder(tf.float32, [None, 9, 2])
        cell = rnn_cell.MultiRNNCell([rnn_cell.BasicRNNCell(5),
                                      rnn_cell.BasicLSTMCell(4, forget_bias=0.5),
                                      rnn_cell.GRUCell(3)])
        output, _ = v1.nn.dynamic_rnn(cell, inputs, dtype=tf.float32)
        session.run(v1.global_variables_initializer())
        _randomize(session)
        x = RNG.normal(0.0, 1.0, (3, 9, 2)).astype(np.float32)
        _record("tf_cells", session, {"x": x, "sequence": session.run(output, {inputs: x})},
                directory, forget_bias=0.5)


# --------------------------------------------------------------------------
# DilatedRNN: the original graph (reference) and the legacy functions
# --------------------------------------------------------------------------
def reference_dilated_layer(cell, steps, rate, scope):
    """One dilated layer, built on Python lists as the original did.

    The original ran `static_rnn` over the dilated list; `dynamic_rnn` over
    the same list, stacked, computes the same with the same variable names,
    and keeps 9-layer graphs of 300 steps quick to build and optimise.
    """
    steps = list(steps)  # the caller's list stays as it is
    num_steps = len(steps)
    dilated_steps = -(-num_steps // rate)
    steps += [tf.zeros_like(steps[0])] * (dilated_steps * rate - num_steps)
    dilated = [tf.concat(steps[index * rate:(index + 1) * rate], axis=0)
               for index in range(dilated_steps)]
    outputs, _ = v1.nn.dynamic_rnn(cell, tf.stack(dilated), dtype=tf.float32,
                                   time_major=True, scope=scope)
    phases = [piece for output in tf.unstack(outputs, num=dilated_steps)
              for piece in tf.split(output, rate, axis=0)]
    return phases[:num_steps]


def reference_cells(hidden_structs, cell_type):
    classes = {"RNN": v1.nn.rnn_cell.BasicRNNCell, "LSTM": v1.nn.rnn_cell.BasicLSTMCell,
               "GRU": v1.nn.rnn_cell.GRUCell}
    return [classes[cell_type](units) for units in hidden_structs]


def reference_classification(x, hidden_structs, dilations, n_steps, n_classes, cell_type):
    steps = tf.split(tf.reshape(tf.transpose(x, [1, 0, 2]), [-1, 1]), n_steps, axis=0)
    for cell, rate in zip(reference_cells(hidden_structs, cell_type), dilations):
        steps = reference_dilated_layer(cell, steps, rate, "multi_dRNN_dilation_%d" % rate)
    features = tf.concat(steps[-dilations[0]:], axis=1)
    weights = v1.Variable(tf.random.normal([hidden_structs[-1] * dilations[0], n_classes]))
    bias = v1.Variable(tf.random.normal([n_classes]))
    return tf.matmul(features, weights) + bias


def drnn_graphs(directory, case, cell_type, hidden_structs, dilations, n_steps):
    from dilated_rnn import legacy
    x = RNG.uniform(0.0, 1.0, (3, n_steps, 1)).astype(np.float32)
    builders = {"reference": reference_classification,
                "legacy": lambda *args: legacy.drnn_classification(*args[:5], 1, args[5])}
    results, names = {}, {}
    checkpoint = os.path.join(directory, case, "model.ckpt")
    for which in ("reference", "legacy"):  # the reference saves, the legacy graph restores
        with tf.Graph().as_default(), _session() as session:
            inputs = v1.placeholder(tf.float32, [None, n_steps, 1])
            v1.Variable(0, name="global_step", trainable=False)  # as the demo notebook
            logits = builders[which](inputs, hidden_structs, dilations, n_steps, DEMO_CLASSES,
                                     cell_type)
            names[which] = sorted(variable.op.name for variable in v1.global_variables())
            if which == "reference":
                session.run(v1.global_variables_initializer())
                _randomize(session)
                results[which] = session.run(logits, {inputs: x})
                _record(case, session, {"x": x, "logits": results[which]}, directory)
            else:
                v1.train.Saver().restore(session, checkpoint)
                results[which] = session.run(logits, {inputs: x})
    np.savez(os.path.join(directory, case, "legacy.npz"), logits=results["legacy"])
    MANIFEST[case].update(legacy_variables=names["legacy"], reference_variables=names["reference"],
                          hidden_structs=hidden_structs, dilations=dilations, cell_type=cell_type)


def list_api_graphs(directory):
    """Legacy dRNN / multi_dRNN_with_dilations on the list API vs the reference."""
    from dilated_rnn import legacy
    x = RNG.normal(0.0, 1.0, (7, 2, 2)).astype(np.float32)  # [steps, batch, features]
    checkpoint = os.path.join(directory, "list_api", "model.ckpt")
    outputs = {}
    for which in ("reference", "legacy"):
        with tf.Graph().as_default(), _session() as session:
            steps = [v1.placeholder(tf.float32, [None, 2]) for _ in range(7)]
            given = list(steps)
            cells = [v1.nn.rnn_cell.BasicRNNCell(3), v1.nn.rnn_cell.GRUCell(4)]
            if which == "reference":
                top = reference_dilated_layer(cells[0], steps, 1, "multi_dRNN_dilation_1")
                top = reference_dilated_layer(cells[1], top, 3, "multi_dRNN_dilation_3")
            else:
                top = legacy.multi_dRNN_with_dilations(cells, steps, [1, 3])
            feed = dict(zip(steps, x))
            if which == "reference":
                session.run(v1.global_variables_initializer())
                _randomize(session)
                outputs[which] = np.stack(session.run(top, feed))
                _record("list_api", session, {"x": x, "reference": outputs[which]}, directory)
            else:
                v1.train.Saver().restore(session, checkpoint)
                outputs[which] = np.stack(session.run(top, feed))
                MANIFEST["list_api"].update(
                    legacy_outputs=len(top), inputs_left_alone=steps == given)
    with tf.Graph().as_default():  # one dRNN layer with the default scope, repeated dilations
        steps = [v1.placeholder(tf.float32, [None, 2]) for _ in range(5)]
        legacy.dRNN(v1.nn.rnn_cell.BasicRNNCell(3), steps, 2)
        legacy.multi_dRNN_with_dilations(legacy._contruct_cells([3, 3], "LSTM"), steps, [2, 2])
        legacy.multi_dRNN_with_dilations(legacy._contruct_cells([3], "IndRNN"), steps, [3])
        MANIFEST["list_api"]["repeated_names"] = sorted(
            variable.op.name for variable in v1.global_variables())
        MANIFEST["list_api"]["rate_errors"] = [
            _error_text(lambda rate=rate: legacy.dRNN(v1.nn.rnn_cell.BasicRNNCell(3), steps,
                                                      rate))
            for rate in (0, 5)]
    np.savez(os.path.join(directory, "list_api", "legacy.npz"), outputs=outputs["legacy"])


def legacy_argument_errors():
    """What the legacy API says about bad arguments."""
    from dilated_rnn import legacy
    from ind_rnn.legacy import IndRNNCell
    with tf.Graph().as_default():
        x = v1.placeholder(tf.float32, [None, 6, 1])
        MANIFEST["errors"] = {
            "num_units": _error_text(lambda: IndRNNCell(0)),
            "bounds": _error_text(lambda: IndRNNCell(3, recurrent_min_abs=2.0,
                                                     recurrent_max_abs=1.0)),
            "cell_type": _error_text(lambda: legacy._contruct_cells([3], "CNN")),
            "dilations": _error_text(lambda: legacy.drnn_classification(
                x, [3, 3], [1], 6, 2)),
            "shape": _error_text(lambda: legacy.drnn_classification(x, [3], [1], 7, 2)),
        }


def _error_text(function):
    try:
        function()
    except Exception as error:  # pylint: disable=broad-except  (recorded for the test)
        return f"{type(error).__name__}: {error}"
    return None


# --------------------------------------------------------------------------
# Broken checkpoints, rewritten from a good one
# --------------------------------------------------------------------------
def rewrite_checkpoint(source, destination, drop=(), reshape=None, rename=None):
    """Copies a checkpoint, leaving out `drop`, giving `reshape` names new values
    and `rename(name)` new names."""
    reader = tf.train.load_checkpoint(source)
    reshape = reshape or {}
    with tf.Graph().as_default(), _session() as session:
        for name in sorted(reader.get_variable_to_shape_map()):
            if name in drop:
                continue
            value = reshape.get(name, reader.get_tensor(name))
            v1.Variable(value, name=rename(name) if rename else name)
        session.run(v1.global_variables_initializer())
        os.makedirs(os.path.dirname(destination), exist_ok=True)
        v1.train.Saver().save(session, destination)


def broken_checkpoints(directory):
    source = os.path.join(directory, "addition", "model.ckpt")
    prefix = "rnn/multi_rnn_cell/cell_1/ind_rnn_cell/"
    rewrite_checkpoint(source, os.path.join(directory, "missing", "model.ckpt"),
                       drop=(prefix + "bias",))
    rewrite_checkpoint(source, os.path.join(directory, "bad_shape", "model.ckpt"),
                       reshape={prefix + "recurrent_kernel": np.ones([5], np.float32)})
    MANIFEST["broken"] = {"missing": prefix + "bias", "bad_shape": prefix + "recurrent_kernel"}
    # TF < 1.5 named the variables of TF1 cells `weights` and `biases` (the
    # original IndRNNCell: `input_weights`, `recurrent_weights`, `biases`).
    rewrite_checkpoint(source, os.path.join(directory, "old_names", "model.ckpt"),
                       rename=lambda name: re.sub(
                           r"(ind_rnn_cell/.*)kernel$", r"\1weights",
                           re.sub(r"ind_rnn_cell/bias$", "ind_rnn_cell/biases", name)))


# --------------------------------------------------------------------------
# TF1 behaviour (v1 tensor shapes, reference variables): last, it is global
# --------------------------------------------------------------------------
def v1_behaviour_graphs(directory):
    """The legacy modules under disable_v2_behavior() (TF1 shapes, ref variables).

    The DilatedRNN classifier is built under TF1 shapes and again under TF2
    shapes with the same weights: the same variables and logits are expected.
    """
    v1.disable_v2_behavior()
    from dilated_rnn import legacy
    from ind_rnn.legacy import IndRNNCell
    with tf.Graph().as_default(), _session() as session:
        inputs = v1.placeholder(tf.float32, [None, 6, 2])
        output, _ = v1.nn.dynamic_rnn(IndRNNCell(4, recurrent_max_abs=1.0), inputs,
                                      dtype=tf.float32)
        session.run(v1.global_variables_initializer())
        _randomize(session)
        x = RNG.normal(0.0, 1.0, (2, 6, 2)).astype(np.float32)
        _record("v1_single_cell", session, {"x": x, "sequence": session.run(output, {inputs: x})},
                directory)
    x = RNG.normal(0.0, 1.0, (3, 6, 2)).astype(np.float32)
    values = None
    for shapes in ("v1_shapes", "v2_shapes"):
        if shapes == "v2_shapes":
            v1.enable_v2_tensorshape()
        with tf.Graph().as_default(), _session() as session:
            inputs = v1.placeholder(tf.float32, [None, 6, 2])
            logits = legacy.drnn_classification(inputs, [3, 4], [2, 4], 6, 2, 2, "GRU")
            session.run(v1.global_variables_initializer())
            if values is None:
                _randomize(session)
                values = session.run(v1.global_variables())
            else:
                for variable, value in zip(v1.global_variables(), values):
                    variable.load(value, session)
            MANIFEST["v1_single_cell"][f"drnn_{shapes}"] = {
                "variables": [variable.op.name for variable in v1.global_variables()],
                "logits": session.run(logits, {inputs: x}).tolist()}


# --------------------------------------------------------------------------
# The migration guide's TF1 snippets
# --------------------------------------------------------------------------
def guide_snippets(guide_path, work_dir):
    with open(guide_path, encoding="utf-8") as guide:
        blocks = re.findall(r"^```python tf1\n(.*?)^```", guide.read(), re.S | re.M)
    os.makedirs(work_dir, exist_ok=True)
    cwd = os.getcwd()
    os.chdir(work_dir)
    try:
        for index, block in enumerate(blocks):
            v1.reset_default_graph()
            code = compile(block, f"MIGRATING.md tf1 block {index}", "exec")
            exec(code, {"__name__": f"migrating_tf1_{index}"})  # pylint: disable=exec-used
    finally:
        os.chdir(cwd)
    MANIFEST["guide"] = {"tf1_blocks": len(blocks)}


def main(directory, guide_path=None, guide_dir=None):
    os.makedirs(directory, exist_ok=True)
    v1.disable_eager_execution()
    if guide_path:
        guide_snippets(guide_path, guide_dir)
    addition_graph(directory)
    sequential_mnist_graph(directory)
    tf_cells_graph(directory)
    for cell_type in ("RNN", "LSTM", "GRU"):
        drnn_graphs(directory, f"demo_{cell_type}", cell_type, [DEMO_HIDDEN] * 9,
                    DEMO_DILATIONS, DEMO_STEPS)
    drnn_graphs(directory, "fused_GRU", "GRU", FUSED_HIDDEN, FUSED_DILATIONS, FUSED_STEPS)
    list_api_graphs(directory)
    legacy_argument_errors()
    broken_checkpoints(directory)
    v1_behaviour_graphs(directory)
    with open(os.path.join(directory, "manifest.json"), "w", encoding="utf-8") as manifest:
        json.dump(MANIFEST, manifest, indent=1)


if __name__ == "__main__":
    main(*sys.argv[1:])
