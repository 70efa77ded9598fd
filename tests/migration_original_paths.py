"""TF1 programs through the original module paths, under TF_USE_LEGACY_KERAS=1.

Run by tests/test_migration_original_paths.py in a subprocess:

    python tests/migration_original_paths.py graph OUT.json GUIDE.md

With TF_USE_LEGACY_KERAS=1 and `tf.disable_v2_behavior()` (a TF1 user's step
one): the IndRNN cell's golden cases, the cell in `static_rnn` and
`bidirectional_dynamic_rnn` against a NumPy loop, a complete adding-problem
program (MultiRNNCell, dynamic_rnn, Adam with exponential_decay, a Session
loop), the DilatedRNN demo graph learning sklearn's 8x8 digits, the DilatedRNN
list API against a NumPy loop, the migration guide's step-one snippets, and
the graph-mode errors. (tests/migration_combinations.py has the tf-keras
eager group and graph mode without tf-keras.)

Every case writes what it observed into OUT.json; the test module asserts.
The programs are written in the originals' style (placeholders, Session),
and the references are NumPy loops written here, not the package's code.
"""
import json
import os
import re
import sys

import numpy as np

if __name__ == "__main__":  # run as a script from anywhere in the repository
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

RESULTS = {}


def error_text(function):
    try:
        function()
    except Exception as error:  # pylint: disable=broad-except  (recorded for the test)
        return f"{type(error).__name__}: {error}"
    return None


# --------------------------------------------------------------------------
# graph: TF1 code on TF 2.x, original import paths
# --------------------------------------------------------------------------
def golden_cases(tf):
    """The original cell's two unit-test cases, through the original module path."""
    from ind_rnn.ind_rnn_cell import IndRNNCell
    values = []
    for recurrent_init, bounds in (([-3.0, -2.0, 1.0, 3.0], {}),
                                   ([-5.0, -2.0, 0.1, 5.0],
                                    {"recurrent_min_abs": 1.0, "recurrent_max_abs": 3.0})):
        with tf.Graph().as_default(), tf.Session() as sess:
            x = tf.zeros([1, 4]) + tf.constant([[1.0, 0.0, 0.0, 0.0]])
            m = tf.zeros([1, 4]) + 2.0
            with tf.variable_scope("root", initializer=tf.constant_initializer(0.5)):
                cell = IndRNNCell(
                    4, recurrent_kernel_initializer=tf.constant_initializer(recurrent_init),
                    input_kernel_initializer=tf.constant_initializer(1.0),
                    activation=tf.identity, **bounds)
                output, new_state = cell(x, m)
            sess.run(tf.global_variables_initializer())
            output, new_state = sess.run([output, new_state])
            values.append({"output": output.tolist(), "state": new_state.tolist(),
                           "variables": [v.op.name for v in tf.global_variables()]})
    RESULTS["golden"] = {"cases": values, "cell_class": f"{IndRNNCell.__module__}."
                                                        f"{IndRNNCell.__name__}"}


def _indrnn_numpy(x, input_kernel, recurrent_kernel, bias, max_abs):
    """ReLU IndRNN over [batch, time, depth], the recurrent weight clipped to max_abs."""
    weight = np.clip(recurrent_kernel, -max_abs, max_abs)
    h = np.zeros((x.shape[0], input_kernel.shape[1]))
    states = []
    for t in range(x.shape[1]):
        h = np.maximum(x[:, t] @ input_kernel + weight * h + bias, 0.0)
        states.append(h)
    return np.stack(states, 1)


def static_and_bidirectional(tf):
    """The cell in static_rnn and bidirectional_dynamic_rnn: names and numbers."""
    from ind_rnn.ind_rnn_cell import IndRNNCell
    rng = np.random.RandomState(3)
    x_value = rng.normal(size=(3, 6, 2)).astype(np.float32)
    found = {}
    with tf.Graph().as_default(), tf.Session() as sess:
        x = tf.placeholder(tf.float32, [None, 6, 2])
        steps = tf.unstack(x, axis=1)
        static_outputs, _ = tf.nn.static_rnn(IndRNNCell(5, recurrent_max_abs=1.2), steps,
                                             dtype=tf.float32, scope="static")
        (forward, backward), _ = tf.nn.bidirectional_dynamic_rnn(
            IndRNNCell(4, recurrent_max_abs=1.2), IndRNNCell(4, recurrent_max_abs=1.2), x,
            dtype=tf.float32)
        sess.run(tf.global_variables_initializer())
        for variable in tf.trainable_variables():  # away from the default initial values
            variable.load(rng.uniform(-1.5, 1.5, variable.shape.as_list()), sess)
        values = {v.op.name: sess.run(v) for v in tf.trainable_variables()}
        static_value, forward_value, backward_value = sess.run(
            [tf.stack(static_outputs, 1), forward, backward], {x: x_value})

    def expected(scope, inputs):
        return _indrnn_numpy(inputs, *(values[f"{scope}/ind_rnn_cell/{name}"] for name in
                                       ("input_kernel", "recurrent_kernel", "bias")), 1.2)

    found["variables"] = sorted(values)
    found["static_error"] = float(np.abs(static_value - expected("static", x_value)).max())
    found["forward_error"] = float(np.abs(
        forward_value - expected("bidirectional_rnn/fw", x_value)).max())
    found["backward_error"] = float(np.abs(
        backward_value - expected("bidirectional_rnn/bw", x_value[:, ::-1])[:, ::-1]).max())
    RESULTS["static_bidirectional"] = found


def adding_problem(tf):
    """The addition script, T = 50: a complete TF1 program, trained to MSE < 0.01."""
    from ind_rnn.ind_rnn_cell import IndRNNCell

    time_steps, num_units, batch_size = 50, 128, 50
    recurrent_max = pow(2, 1 / time_steps)
    rng = np.random.RandomState(0)

    def get_batch(size):
        values = rng.rand(size, time_steps)
        marks = np.zeros_like(values)
        for row in range(size):
            marks[row, rng.randint(time_steps // 2)] = 1
            marks[row, rng.randint(time_steps // 2, time_steps)] = 1
        return np.dstack((values, marks)), np.sum(values * marks, axis=1)

    with tf.Graph().as_default():
        tf.set_random_seed(0)
        inputs_ph = tf.placeholder(tf.float32, shape=(None, time_steps, 2))
        targets_ph = tf.placeholder(tf.float32, shape=(None,))
        first = IndRNNCell(num_units, recurrent_max_abs=recurrent_max,
                           recurrent_kernel_initializer=tf.random_uniform_initializer(
                               -recurrent_max, recurrent_max))
        second = IndRNNCell(num_units, recurrent_max_abs=recurrent_max)
        cell = tf.nn.rnn_cell.MultiRNNCell([first, second])
        output, _ = tf.nn.dynamic_rnn(cell, inputs_ph, dtype=tf.float32)
        weight = tf.get_variable("softmax_weight", shape=[num_units, 1])
        bias = tf.get_variable("softmax_bias", shape=[1],
                               initializer=tf.constant_initializer(0.1))
        prediction = tf.squeeze(tf.matmul(output[:, -1, :], weight) + bias, axis=1)
        loss_op = tf.losses.mean_squared_error(targets_ph, prediction)
        global_step = tf.get_variable("global_step", shape=[], trainable=False,
                                      initializer=tf.zeros_initializer)
        # 2.5x the original's rate (2e-4): T = 50 is solved in 600-700 steps
        # (2e-3 stalls at the mean); the same staircase decay.
        learning_rate = tf.train.exponential_decay(5e-4, global_step, 20000, 0.1,
                                                   staircase=True)
        optimize = tf.train.AdamOptimizer(learning_rate).minimize(loss_op,
                                                                  global_step=global_step)
        held_out_x, held_out_y = get_batch(1000)
        history = []
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            for step in range(1, 3001):
                x, y = get_batch(batch_size)
                sess.run(optimize, {inputs_ph: x, targets_ph: y})
                if step % 100 == 0:
                    mse = float(sess.run(loss_op, {inputs_ph: held_out_x,
                                                   targets_ph: held_out_y}))
                    history.append(mse)
                    print("Step [x100] %d MSE %f" % (step // 100, mse), flush=True)
                    if mse < 0.01:
                        break
            names = sorted(v.op.name for v in tf.global_variables()
                           if "Adam" not in v.op.name and "_power" not in v.op.name)
    RESULTS["adding"] = {"history": history, "steps": step, "variables": names}


def digits_demo(tf):
    """The DilatedRNN demo notebook's graph on sklearn's 8x8 digits (64 pixel steps)."""
    from sklearn.datasets import load_digits

    from dilated_rnn.classification_models import drnn_classification

    digits = load_digits()
    n_steps, input_dims, n_classes = 64, 1, 10
    hidden_structs, dilations = [20] * 6, [1, 2, 4, 8, 16, 32]
    permutation = np.random.RandomState(92916).permutation(n_steps)
    images = (digits.data / 16.0)[:, permutation].reshape([-1, n_steps, input_dims])
    labels = np.eye(n_classes)[digits.target]
    train_x, train_y, test_x, test_y = images[:1500], labels[:1500], images[1500:], labels[1500:]
    rng = np.random.RandomState(1)
    with tf.Graph().as_default():
        tf.set_random_seed(1)
        x = tf.placeholder(tf.float32, [None, n_steps, input_dims])
        y = tf.placeholder(tf.float32, [None, n_classes])
        global_step = tf.Variable(0, name="global_step", trainable=False)
        pred = drnn_classification(x, hidden_structs, dilations, n_steps, n_classes,
                                   input_dims, "RNN")
        cost = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits_v2(logits=pred, labels=y))
        optimizer = tf.train.RMSPropOptimizer(1.0e-3, 0.9).minimize(cost,
                                                                    global_step=global_step)
        correct = tf.equal(tf.argmax(pred, 1), tf.argmax(y, 1))
        accuracy = tf.reduce_mean(tf.cast(correct, tf.float32))
        history = []
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            history.append([float(v) for v in sess.run([cost, accuracy],
                                                       {x: test_x, y: test_y})])
            for iteration in range(1, 201):
                batch = rng.randint(0, len(train_x), 128)
                sess.run(optimizer, {x: train_x[batch], y: train_y[batch]})
                if iteration % 100 == 0:
                    history.append([float(v) for v in sess.run([cost, accuracy],
                                                               {x: test_x, y: test_y})])
            names = sorted(v.op.name for v in tf.global_variables()
                           if "RMSProp" not in v.op.name)
    RESULTS["digits"] = {"history": history, "variables": names}


def _dilated_numpy(steps, kernel, bias, rate):
    """BasicRNNCell over a list of [batch, d] arrays with dilation `rate`:
    output_t = tanh([x_t, h_{t-rate}] @ kernel + bias), h = 0 before step 0."""
    outputs = []
    for t, x in enumerate(steps):
        previous = outputs[t - rate] if t >= rate else np.zeros((x.shape[0], bias.shape[0]))
        outputs.append(np.tanh(np.concatenate([x, previous], 1) @ kernel + bias))
    return outputs


def list_api(tf):
    """dRNN / multi_dRNN_with_dilations / _rnn_reformat / _contruct_cells, original paths."""
    import dilated_rnn
    from dilated_rnn import classification_models, drnn
    rng = np.random.RandomState(5)
    x_value = rng.normal(size=(2, 7, 2)).astype(np.float32)
    found = {"top_level_is_original": [
        dilated_rnn.dRNN is drnn.dRNN,
        dilated_rnn.multi_dRNN_with_dilations is drnn.multi_dRNN_with_dilations,
        dilated_rnn.drnn_classification is classification_models.drnn_classification,
        dilated_rnn._contruct_cells is classification_models._contruct_cells,
        dilated_rnn._rnn_reformat is classification_models._rnn_reformat]}
    with tf.Graph().as_default(), tf.Session() as sess:
        x = tf.placeholder(tf.float32, [None, 7, 2])
        steps = classification_models._rnn_reformat(x, 2, 7)
        single = drnn.dRNN(tf.nn.rnn_cell.BasicRNNCell(3), steps, 3)
        cells = classification_models._contruct_cells([3, 4], "RNN")
        found["cell_classes"] = [f"{type(c).__module__}.{type(c).__name__}" for c in cells]
        top = drnn.multi_dRNN_with_dilations(cells, steps, [1, 2])
        top_level = dilated_rnn.dRNN(tf.nn.rnn_cell.BasicRNNCell(2), steps, 2, scope="top")
        sess.run(tf.global_variables_initializer())
        for variable in tf.trainable_variables():
            variable.load(rng.uniform(-0.8, 0.8, variable.shape.as_list()), sess)
        values = {v.op.name: sess.run(v) for v in tf.trainable_variables()}
        steps_value, single_value, top_value, top_level_value = sess.run(
            [steps, single, top, top_level], {x: x_value})
    inputs = [x_value[:, t] for t in range(7)]

    def layer(name, layer_inputs, rate):
        return _dilated_numpy(layer_inputs, values[f"{name}/basic_rnn_cell/kernel"],
                              values[f"{name}/basic_rnn_cell/bias"], rate)

    expected_top = layer("multi_dRNN_dilation_2", layer("multi_dRNN_dilation_1", inputs, 1), 2)
    found.update(
        variables=sorted(values),
        lengths=[len(steps_value), len(single_value), len(top_value), len(top_level_value)],
        reformat_error=float(np.abs(np.stack(steps_value, 1) - x_value).max()),
        drnn_error=float(np.abs(np.stack(single_value, 1) - np.stack(
            layer("default", inputs, 3), 1)).max()),
        multi_error=float(np.abs(np.stack(top_value, 1) - np.stack(expected_top, 1)).max()),
        top_level_error=float(np.abs(np.stack(top_level_value, 1) - np.stack(
            layer("top", inputs, 2), 1)).max()))
    RESULTS["list_api"] = found


def graph_mode_errors(tf):
    """Keras 3 cells handed to the graph-mode functions."""
    import dilated_rnn
    from dilated_rnn import drnn
    from ind_rnn.keras_cell import IndRNNCell as Keras3IndRNNCell
    with tf.Graph().as_default():
        steps = [tf.placeholder(tf.float32, [None, 2]) for _ in range(4)]
        RESULTS["graph_errors"] = {
            "keras3_cell_in_dRNN": error_text(
                lambda: drnn.dRNN(dilated_rnn.BasicRNNCell(3), steps, 2)),
            "keras3_indrnn_in_multi_dRNN": error_text(
                lambda: drnn.multi_dRNN_with_dilations([Keras3IndRNNCell(3)], steps, [1])),
            "keras3_cell_in_dynamic_rnn": error_text(
                lambda: tf.nn.dynamic_rnn(Keras3IndRNNCell(3), tf.stack(steps, 1),
                                          dtype=tf.float32)),
        }


def guide_step_one(tf, guide_path):
    """Runs every ```python step1 block of the migration guide, each in a fresh graph."""
    with open(guide_path, encoding="utf-8") as guide:
        blocks = re.findall(r"^```python step1\n(.*?)^```", guide.read(), re.S | re.M)
    found = []
    for index, block in enumerate(blocks):
        with tf.Graph().as_default():
            namespace = {"__name__": f"migrating_step1_{index}"}
            exec(compile(block, f"MIGRATING.md step1 block {index}", "exec"),  # pylint: disable=exec-used
                 namespace)
            found.append({"variables": sorted(v.op.name for v in tf.global_variables()),
                          "first_lines": block.splitlines()[:2]})
    RESULTS["step1"] = found


def flavour_report():
    import ind_rnn
    from ind_rnn import ind_rnn_cell, keras_cell, legacy
    RESULTS["flavour"] = {
        "keras_flavour": ind_rnn.keras_flavour(),
        "top_level_is_legacy": ind_rnn.IndRNNCell is legacy.IndRNNCell,
        "module_path_is_legacy": ind_rnn_cell.IndRNNCell is legacy.IndRNNCell,
        "fast_layer_cell_is_keras3": type(ind_rnn.IndRNN(3).cell) is keras_cell.IndRNNCell,
    }


def graph_group(guide_path):
    import tensorflow.compat.v1 as tf  # the step one of every migrated program
    tf.disable_v2_behavior()
    flavour_report()
    golden_cases(tf)
    static_and_bidirectional(tf)
    list_api(tf)
    graph_mode_errors(tf)
    guide_step_one(tf, guide_path)
    adding_problem(tf)
    digits_demo(tf)


def write_results(out_path, results):
    with open(out_path, "w", encoding="utf-8") as out:
        json.dump(results, out, indent=1)


def main(group, out_path, guide_path):
    if group != "graph":
        raise ValueError(f"Received an invalid value for argument `group`, expected 'graph' "
                         f"(the other groups are in tests/migration_combinations.py), got "
                         f"{group!r}.")
    graph_group(guide_path)
    write_results(out_path, RESULTS)


if __name__ == "__main__":
    main(*sys.argv[1:])
