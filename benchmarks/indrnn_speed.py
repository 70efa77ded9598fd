"""Training-step speed of the fast IndRNN layer, as ratios within one run.

Workloads (issue 2):
  (a) 1 IndRNN layer, input 1, hidden 128, batch 32, T 784 (sequential MNIST);
  (b) 6 layers of 128, same data;
  (c) 2 layers, input 2, batch 50, T 1000 (adding problem).
Each is timed as a full training step (forward + backward + Adam) for
  * `ind_rnn.IndRNN` with each implementation (fused C++ kernels, XLA loop,
    plain TensorFlow loop),
  * `keras.layers.RNN(IndRNNCell)` (Keras' generic loop over the same cell),
  * `keras.layers.LSTM(128)`,
  * for (b) and (c), the matmul-only floor: the same input projections, no
    recurrence.
Times are medians after warm-up; ratios compare timings of the same run only,
since absolute times drift on shared machines. The ratio to the floor, the
tightest target, comes from rounds that alternate the native layer's steps
with the floor's (benchmarks/step_timing.py: `interleaved_ratio`), so that
drift over the run weighs on both alike.

A fourth workload, `depth`, is not run by default: one layer (hidden 128,
batch 32, T 784) over inputs of 1 to 64 features, with the native kernels
projecting the inputs inside the recurrence against projecting them first
with one matmul. It is where `ind_rnn.recurrence.MAX_DEPTH_PROJECTED_IN_KERNEL`
comes from.

The header names the CPU, its x86-64 level and the level the kernels are
built for; the last line gives the load over the run (see
benchmarks/run_conditions.py).

Flags:
  --workloads=a,b,c     which workloads: a, b, c, depth (default a,b,c)
  --repeats=N           timed steps per fast variant, median taken (default 10)
  --rounds=N            (b), (c): native against its floor in N interleaved rounds of 3 steps
                        each, the order alternating; the ratio is the median of the rounds'
                        ratios (default 12)
  --slow_repeats=N      timed steps per slow baseline, Keras RNN and LSTM (default 3)
  --warmup=N            untimed steps before timing (default 2)
  --isa=LEVEL           x86-64-v2, x86-64-v3, x86-64-v4, native or any -march value:
                        the fused kernels' level ($RNN_KERNELS_ISA), built and cached
                        on its own (default: $RNN_KERNELS_ISA, else native)

Usage:
  python benchmarks/indrnn_speed.py            # workloads a, b, c, default repeats
  python benchmarks/indrnn_speed.py --workloads=a,c --repeats=20
  python benchmarks/indrnn_speed.py --workloads=depth
  python benchmarks/indrnn_speed.py --isa=x86-64-v2   # the kernels built for SSE4.2
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from ind_rnn import IndRNN, IndRNNCell, native, recurrence, xla_available  # noqa: E402
import run_conditions  # noqa: E402  (benchmarks/run_conditions.py)
from step_timing import interleaved_ratio, median_step_seconds  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("workloads", ["a", "b", "c"], "Which workloads to run: a, b, c, depth.")
flags.DEFINE_integer("repeats", 10, "Timed steps per fast variant (median taken).")
flags.DEFINE_integer("slow_repeats", 3, "Timed steps per slow baseline (Keras RNN, LSTM).")
flags.DEFINE_integer("warmup", 2, "Untimed steps before timing.")
flags.DEFINE_integer("rounds", 12, "(b), (c): rounds of 3 native and 3 floor steps, alternated.")
flags.DEFINE_string("isa", None, run_conditions.ISA_HELP)

WORKLOADS = {
    "a": dict(title="(a) 1x128, in 1, B 32, T 784", layers=1, input_dim=1, batch=32, steps=784),
    "b": dict(title="(b) 6x128, in 1, B 32, T 784", layers=6, input_dim=1, batch=32, steps=784),
    "c": dict(title="(c) 2x128, in 2, B 50, T 1000", layers=2, input_dim=2, batch=50, steps=1000),
}
UNITS = 128


def _fast(implementation):
    def make(steps, last):
        return IndRNN(UNITS, recurrent_max_abs=2 ** (1 / steps), return_sequences=not last,
                      implementation=implementation)
    return make


def _keras_rnn(steps, last):
    return keras.layers.RNN(IndRNNCell(UNITS, recurrent_max_abs=2 ** (1 / steps)),
                            return_sequences=not last)


def _lstm(steps, last):
    del steps
    return keras.layers.LSTM(UNITS, return_sequences=not last)


def _floor(steps, last):
    """The same input projection (and ReLU) per layer, without any recurrence."""
    del steps
    projection = keras.layers.Dense(UNITS, activation="relu")
    if not last:
        return projection
    return keras.Sequential([projection, keras.layers.Lambda(lambda h: h[:, -1])])


def _model(make_layer, workload):
    inputs = keras.Input((workload["steps"], workload["input_dim"]))
    hidden = inputs
    for index in range(workload["layers"]):
        hidden = make_layer(workload["steps"], last=index == workload["layers"] - 1)(hidden)
    return keras.Model(inputs, keras.layers.Dense(1)(hidden))


def training_step(make_layer, workload):
    """A compiled training step (forward, backward, Adam) of a fresh model; returns its loss."""
    rng = np.random.RandomState(0)
    x = tf.constant(rng.rand(workload["batch"], workload["steps"], workload["input_dim"]),
                    tf.float32)
    y = tf.constant(rng.rand(workload["batch"], 1), tf.float32)
    model = _model(make_layer, workload)
    optimizer = keras.optimizers.Adam(2e-4)

    @tf.function
    def train_step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(x, training=True) - y))
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    return train_step


def time_training_step(make_layer, workload, repeats):
    """Median seconds of one compiled training step (forward, backward, Adam)."""
    return median_step_seconds(training_step(make_layer, workload), FLAGS.warmup, repeats)


def time_against_floor(workload):
    """(native s/step, floor s/step, native / floor, (lowest, highest) ratio), interleaved."""
    return interleaved_ratio(training_step(_fast("native"), workload),
                             training_step(_floor, workload), FLAGS.warmup, FLAGS.rounds)


def time_input_depths(depths=(1, 2, 4, 8, 16, 32, 64)):
    """Native kernels: inputs projected inside the recurrence vs by a matmul first."""
    print("\n(depth) 1x128, B 32, T 784: native kernels, input projection inside the "
          "recurrence vs one matmul before it")
    print("| input features | inside (s/step) | matmul first (s/step) | inside / first |")
    print("|---|---|---|---|")
    in_kernel_limit = recurrence.MAX_DEPTH_PROJECTED_IN_KERNEL
    try:
        for depth in depths:
            workload = dict(layers=1, input_dim=depth, batch=32, steps=784)
            timings = []
            for limit in (depth, depth - 1):  # inside, then matmul first
                recurrence.MAX_DEPTH_PROJECTED_IN_KERNEL = limit
                timings.append(time_training_step(_fast("native"), workload, FLAGS.repeats))
            print(f"| {depth} | {timings[0]:.4f} | {timings[1]:.4f} | "
                  f"{timings[0] / timings[1]:.2f} |")
    finally:
        recurrence.MAX_DEPTH_PROJECTED_IN_KERNEL = in_kernel_limit


def main(argv):
    del argv
    unknown = set(FLAGS.workloads) - set(WORKLOADS) - {"depth"}
    if unknown:
        raise app.UsageError(f"--workloads: unknown {sorted(unknown)}, allowed a, b, c, depth.")
    run_conditions.apply_isa_flag(FLAGS.isa)  # before the kernels load
    monitor = run_conditions.LoadMonitor()
    print(monitor.header(run_conditions.load_kernels("IndRNN", native.load,
                                                       run_conditions.indrnn_library_path()),
                         f"TensorFlow {tf.__version__}, Keras {keras.__version__}, XLA "
                         f"available: {xla_available()}"), flush=True)
    if "depth" in FLAGS.workloads:
        time_input_depths()
    rows = []
    for key in [key for key in FLAGS.workloads if key in WORKLOADS]:
        workload = WORKLOADS[key]
        floor = None  # (native / floor, (lowest, highest)) from interleaved rounds
        if key in ("b", "c"):
            native_seconds, floor_seconds, *floor = time_against_floor(workload)
        else:
            native_seconds = time_training_step(_fast("native"), workload, FLAGS.repeats)
        timings = {
            "IndRNN (native)": native_seconds,
            "IndRNN (XLA)": time_training_step(_fast("xla"), workload, FLAGS.repeats),
            "IndRNN (plain TF)": time_training_step(_fast("tf"), workload, FLAGS.repeats),
            "RNN(IndRNNCell)": time_training_step(_keras_rnn, workload, FLAGS.slow_repeats),
            "LSTM": time_training_step(_lstm, workload, FLAGS.slow_repeats),
        }
        if floor is not None:
            timings["matmul floor"] = floor_seconds
        fast = timings["IndRNN (native)"]
        print(f"\n{workload['title']}")
        print("| variant | s/step | time / IndRNN (native) |\n|---|---|---|")
        for name, seconds in timings.items():
            print(f"| {name} | {seconds:.4f} | {seconds / fast:.2f}x |")
        if floor is not None:
            print(f"native / matmul floor, interleaved: median {floor[0]:.2f} over "
                  f"{FLAGS.rounds} rounds (lowest {floor[1][0]:.2f}, highest "
                  f"{floor[1][1]:.2f})")
        rows.append((workload["title"], timings, floor))
    print("\nSummary (speed-up = baseline time / IndRNN time, same run):")
    for title, timings, floor in rows:
        fast = timings["IndRNN (native)"]
        keras_rnn = timings["RNN(IndRNNCell)"]
        summary = (f"{title}: native vs RNN(IndRNNCell) {keras_rnn / fast:.1f}x, "
                   f"vs LSTM {timings['LSTM'] / fast:.1f}x; XLA path "
                   f"{keras_rnn / timings['IndRNN (XLA)']:.1f}x, plain-TF path "
                   f"{keras_rnn / timings['IndRNN (plain TF)']:.1f}x vs RNN(IndRNNCell)")
        if floor is not None:
            summary += (f", time / matmul floor {floor[0]:.2f} (median of interleaved rounds, "
                        f"range {floor[1][0]:.2f}-{floor[1][1]:.2f})")
        print(summary)
    print(monitor.footer())


if __name__ == "__main__":
    app.run(main)
