"""Time to solve the adding problem: the original-style TF1 graph against our example.

For each T (--time_steps), in one invocation and on the same machine, this
runs two subprocesses one after the other:

* tf1: the original script's graph, written here in `tf.compat.v1` (run
  with TF_USE_LEGACY_KERAS=1): placeholders, `dynamic_rnn` over a
  `MultiRNNCell` of two `ind_rnn.legacy.IndRNNCell(128)` (|u| <= 2^(1/T), the
  first layer's u uniform(-max, max)), a 128 -> 1 output with bias 0.1, MSE,
  Adam 2e-4 with `exponential_decay` (x0.1 every 20000 steps, staircase),
  batch 50, NumPy batches fed to a `Session` loop, a "Step [x100] N MSE m"
  line every 100 steps;
* example: `python examples/addition_rnn.py --time_steps=T` (every other
  flag at its default).

Both print the mean training MSE of every 100-step window. The clock starts
when the subprocess is started; a run is solved at the first window whose
mean is below 0.01 (the example's default --target_mse stops it there; the
TF1 loop stops itself there too). Printed: steps and wall seconds to that
line, for both, their ratio, and the load average before and after. Before
the runs, a subprocess builds or loads the example's C++ kernels (a header
line says which and how long), so that no timed run pays their one-time
build.

    python benchmarks/time_to_solve.py                       # T = 100 and 1000
    python benchmarks/time_to_solve.py --time_steps=100 --repeats=3
    python benchmarks/time_to_solve.py --time_steps=1000 --max_steps=200   # a smoke test
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET_MSE = 0.01
WINDOW = 100
LINE = re.compile(r"^Step \[x(\d+)\] (\d+) MSE ([0-9.eE+-]+|nan|inf)")

flags.DEFINE_list("time_steps", ["100", "1000"], "Sequence lengths T to run.")
flags.DEFINE_list("runs", ["tf1", "example"], "Which of tf1, example to run, in order.")
flags.DEFINE_integer("max_steps", 20000, "Give up after this many steps (a multiple of 100).",
                     lower_bound=WINDOW)
flags.DEFINE_integer("repeats", 1, "Runs of each (seeds 0, 1, ...).", lower_bound=1)
flags.DEFINE_integer("timeout", 3600, "Seconds after which a run is stopped.", lower_bound=1)
flags.DEFINE_string("json", None, "Also write the results to this JSON file.")
# Internal: the TF1 worker process.
flags.DEFINE_boolean("tf1_worker", False, "Internal: run the TF1 graph in this process.")
flags.DEFINE_integer("seed", 0, "Internal: the TF1 worker's seed.")
flags.DEFINE_integer("worker_time_steps", 100, "Internal: the TF1 worker's T.")
FLAGS = flags.FLAGS


def tf1_worker(time_steps, max_steps, seed):
    """The original script's graph and Session loop (needs TF_USE_LEGACY_KERAS=1)."""
    import numpy as np  # pylint: disable=import-outside-toplevel
    import tensorflow.compat.v1 as tf  # pylint: disable=import-outside-toplevel
    tf.disable_v2_behavior()
    from ind_rnn.legacy import IndRNNCell  # pylint: disable=import-outside-toplevel
    tf.set_random_seed(seed)
    np.random.seed(seed)
    batch_size, units, recurrent_max = 50, 128, 2 ** (1 / time_steps)

    inputs_ph = tf.placeholder(tf.float32, [None, time_steps, 2])
    targets_ph = tf.placeholder(tf.float32, [None])
    first = IndRNNCell(units, recurrent_max_abs=recurrent_max,
                       recurrent_kernel_initializer=tf.random_uniform_initializer(
                           -recurrent_max, recurrent_max))
    second = IndRNNCell(units, recurrent_max_abs=recurrent_max)
    cell = tf.nn.rnn_cell.MultiRNNCell([first, second])
    output, _ = tf.nn.dynamic_rnn(cell, inputs_ph, dtype=tf.float32)
    weight = tf.get_variable("softmax_weight", [units, 1])
    bias = tf.get_variable("softmax_bias", [1], initializer=tf.constant_initializer(0.1))
    prediction = tf.squeeze(tf.matmul(output[:, -1], weight) + bias, axis=1)
    loss = tf.losses.mean_squared_error(targets_ph, prediction)
    global_step = tf.get_variable("global_step", shape=[], trainable=False,
                                  initializer=tf.zeros_initializer)
    learning_rate = tf.train.exponential_decay(2e-4, global_step, 20000, 0.1, staircase=True)
    optimize = tf.train.AdamOptimizer(learning_rate).minimize(loss, global_step=global_step)

    def get_batch():  # the original's NumPy batches
        values = np.random.rand(batch_size, time_steps)
        markers = np.zeros_like(values)
        half = time_steps // 2
        for row in range(batch_size):
            markers[row, [np.random.randint(half), np.random.randint(half, time_steps)]] = 1
        return np.dstack((values, markers)), np.sum(values * markers, axis=1)

    with tf.Session() as session:
        session.run(tf.global_variables_initializer())
        window = []
        for step in range(1, max_steps + 1):
            inputs, targets = get_batch()
            value, _ = session.run([loss, optimize], {inputs_ph: inputs, targets_ph: targets})
            window.append(value)
            if step % WINDOW == 0:
                mse = float(np.mean(window))
                window = []
                print(f"Step [x{WINDOW}] {step // WINDOW} MSE {mse:.6f}", flush=True)
                if mse < TARGET_MSE:
                    break


def command(run, time_steps, seed, log_dir):
    """The subprocess command and environment of `run` ("tf1" or "example")."""
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": REPO_ROOT}
    if run == "tf1":
        environment["TF_USE_LEGACY_KERAS"] = "1"
        return [sys.executable, os.path.abspath(__file__), "--tf1_worker", f"--seed={seed}",
                f"--worker_time_steps={time_steps}", f"--max_steps={FLAGS.max_steps}"], \
            environment
    return [sys.executable, os.path.join(REPO_ROOT, "examples", "addition_rnn.py"),
            f"--time_steps={time_steps}", f"--seed={seed}", f"--max_steps={FLAGS.max_steps}",
            f"--log_dir={log_dir}", "--noresume"], environment


def time_run(run, time_steps, seed):
    """Runs one subprocess; returns steps and seconds to the first window below 0.01."""
    with tempfile.TemporaryDirectory() as log_dir:
        argv, environment = command(run, time_steps, seed, log_dir)
        errors_file = open(os.path.join(log_dir, "stderr.txt"), "w+", encoding="utf-8")
        started = time.time()
        process = subprocess.Popen(argv, cwd=REPO_ROOT, env=environment, text=True,
                                   stdout=subprocess.PIPE, stderr=errors_file)
        result = {"run": run, "time_steps": time_steps, "seed": seed, "solved": False,
                  "steps": None, "seconds": None, "first_window_seconds": None}
        try:
            for line in process.stdout:
                match = LINE.match(line)
                if not match:
                    continue
                now = time.time() - started
                if result["first_window_seconds"] is None:
                    result["first_window_seconds"] = round(now, 2)
                steps = int(match.group(1)) * int(match.group(2))
                result.update(steps=steps, seconds=round(now, 2), last_mse=float(match.group(3)))
                if float(match.group(3)) < TARGET_MSE:
                    result["solved"] = True
                    break
                if now > FLAGS.timeout:
                    break
        finally:
            process.kill()
            process.communicate()
            errors_file.seek(0)
            errors = errors_file.read()
            errors_file.close()
        if result["steps"] is None:
            result["error"] = errors.strip().splitlines()[-5:]
        return result


def warm_up_kernels():
    """Builds (or loads from the cache) the example's IndRNN kernels in a subprocess.

    Run before the timed runs, so that none of them pays the one-time build
    (about 17 s on 2 Zen 4 cores), which the first run after an install or a
    source change would otherwise count. Returns the lines it printed: the
    CPU and level, and how the kernels were loaded.
    """
    _, environment = command("example", 100, 0, tempfile.gettempdir())
    code = ("import sys; sys.path.insert(0, {!r}); import run_conditions; "
            "from ind_rnn import native; from ind_rnn.native import build; "
            "print(build.describe()); print(run_conditions.load_kernels("
            "'IndRNN', native.load, run_conditions.indrnn_library_path()))"
            ).format(os.path.join(REPO_ROOT, "benchmarks"))
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=environment,
                          text=True, capture_output=True, check=False)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0:
        lines += ["kernel warm-up failed:"] + done.stderr.strip().splitlines()[-3:]
    return lines


def load_average():
    """The 1-minute load average (how busy the machine was)."""
    return round(os.getloadavg()[0], 2)


def main(argv):
    """Runs the pairs and prints the table (and the JSON results)."""
    del argv
    if FLAGS.tf1_worker:
        tf1_worker(FLAGS.worker_time_steps, FLAGS.max_steps, FLAGS.seed)
        return
    unknown = set(FLAGS.runs) - {"tf1", "example"}
    if unknown:
        raise app.UsageError(f"--runs: expected names from tf1, example; got {sorted(unknown)}.")
    try:
        lengths = [int(value) for value in FLAGS.time_steps]
    except ValueError:
        raise app.UsageError(f"--time_steps: expected integers, got {FLAGS.time_steps}.") \
            from None
    if "example" in FLAGS.runs:
        for line in warm_up_kernels():
            print(f"# {line}", flush=True)
    results = []
    for time_steps in lengths:
        for seed in range(FLAGS.repeats):
            for run in FLAGS.runs:
                before = load_average()
                result = time_run(run, time_steps, seed)
                result.update(load_before=before, load_after=load_average())
                print(json.dumps(result), flush=True)
                results.append(result)
    print(f"\n{'T':>6} {'seed':>4} {'run':>8} {'solved':>6} {'steps':>6} {'seconds':>8} "
          f"{'1st line s':>10} {'load':>10}")
    for result in results:
        print(f"{result['time_steps']:>6} {result['seed']:>4} {result['run']:>8} "
              f"{str(result['solved']):>6} {str(result['steps']):>6} "
              f"{str(result['seconds']):>8} {str(result['first_window_seconds']):>10} "
              f"{result['load_before']:>4}-{result['load_after']:<5}")
    for time_steps in lengths:
        for seed in range(FLAGS.repeats):
            pair = {result["run"]: result for result in results
                    if result["time_steps"] == time_steps and result["seed"] == seed}
            if {"tf1", "example"} <= set(pair) and all(r["solved"] for r in pair.values()):
                print(f"T={time_steps} seed {seed}: example solved "
                      f"{pair['tf1']['seconds'] / pair['example']['seconds']:.2f}x sooner, "
                      f"in {pair['example']['steps'] / pair['tf1']['steps']:.2f}x the steps")
    if FLAGS.json:
        with open(FLAGS.json, "w", encoding="utf-8") as file:
            json.dump(results, file, indent=1)


if __name__ == "__main__":
    app.run(main)
