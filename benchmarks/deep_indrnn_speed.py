"""Training-step speed of a 21-layer residual IndRNN, fast layer vs Keras' RNN loop.

Both models have the same residual topology and weights' shapes (issue 6):
an input IndRNN layer, then 10 pre-activation blocks BN -> IndRNN -> BN ->
IndRNN + identity, then BN and a dense head on the last step: 21 IndRNN
layers.
  * "res-IndRNN": `ind_rnn.build_sequence_classifier(model="residual")`,
    whose layers are the fast `ind_rnn.IndRNN`;
  * "Keras RNN stack": the same graph written with
    `keras.layers.RNN(IndRNNCell)`, `keras.layers.BatchNormalization` and
    `keras.layers.Add`.
Each is timed as a compiled training step (forward + backward + Adam);
times are medians after warm-up, and the ratio compares timings of the same
run only, since absolute times drift on shared machines.

The header names the CPU, its x86-64 level and the level the kernels are
built for; the last line gives the load over the run (see
benchmarks/run_conditions.py).

Flags:
  --num_layers=N     IndRNN layers, odd: 1 + 2 * blocks (default 21)
  --time_steps=T     sequence length (default 128)
  --units=N          width of every IndRNN layer (default 128)
  --batch_size=N     batch size (default 32)
  --input_dim=N      features per step (default 1)
  --repeats=N        timed steps of the fast model, median taken (default 5)
  --slow_repeats=N   timed steps of the Keras RNN stack, median taken (default 3)
  --warmup=N         untimed steps before timing, after the first, traced one (default 1)
  --isa=LEVEL        x86-64-v2, x86-64-v3, x86-64-v4, native or any -march value: the
                     fused kernels' level ($RNN_KERNELS_ISA), built and cached on its
                     own (default: $RNN_KERNELS_ISA, else native)

Usage:
  python benchmarks/deep_indrnn_speed.py                       # T 128, ~2-4 minutes on 2 cores
  python benchmarks/deep_indrnn_speed.py --time_steps=784 --repeats=10 --slow_repeats=3
  python benchmarks/deep_indrnn_speed.py --isa=x86-64-v3      # the kernels built for AVX2
"""
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from ind_rnn import IndRNNCell, build_sequence_classifier, native  # noqa: E402
from ind_rnn.models import LastStep  # noqa: E402
import run_conditions  # noqa: E402  (benchmarks/run_conditions.py)
from step_timing import median_step_seconds  # noqa: E402  (benchmarks/step_timing.py)

FLAGS = flags.FLAGS
flags.DEFINE_integer("num_layers", 21, "IndRNN layers (odd: 1 + 2 * blocks).")
flags.DEFINE_integer("time_steps", 128, "Sequence length T.")
flags.DEFINE_integer("units", 128, "Width of every IndRNN layer.")
flags.DEFINE_integer("batch_size", 32, "Batch size.")
flags.DEFINE_integer("input_dim", 1, "Features per step.")
flags.DEFINE_integer("repeats", 5, "Timed steps of the fast model (median taken).")
flags.DEFINE_integer("slow_repeats", 3, "Timed steps of the Keras RNN stack (median taken).")
flags.DEFINE_integer("warmup", 1, "Untimed steps before timing (after the first, traced one).")
flags.DEFINE_string("isa", None, run_conditions.ISA_HELP)

NUM_CLASSES = 10


def fast_model():
    return build_sequence_classifier(FLAGS.time_steps, FLAGS.input_dim, NUM_CLASSES,
                                     model="residual", num_layers=FLAGS.num_layers,
                                     units=FLAGS.units)


def keras_rnn_model():
    """The same residual graph with keras.layers.RNN(IndRNNCell) layers."""
    bound = 2 ** (1 / FLAGS.time_steps)

    def ind_rnn(last=False):
        low = 0.5 ** (1 / FLAGS.time_steps) if last else 0.0
        return keras.layers.RNN(
            IndRNNCell(FLAGS.units, recurrent_max_abs=bound,
                       recurrent_kernel_initializer=keras.initializers.RandomUniform(low, bound),
                       input_kernel_initializer="he_uniform"),
            return_sequences=True)

    inputs = keras.Input((FLAGS.time_steps, FLAGS.input_dim))
    sequences = ind_rnn()(inputs)
    num_blocks = (FLAGS.num_layers - 1) // 2
    for index in range(num_blocks):
        residual = keras.layers.BatchNormalization()(sequences)
        residual = ind_rnn()(residual)
        residual = keras.layers.BatchNormalization()(residual)
        residual = ind_rnn(last=index == num_blocks - 1)(residual)
        sequences = keras.layers.Add()([sequences, residual])
    sequences = keras.layers.BatchNormalization()(sequences)
    return keras.Model(inputs, keras.layers.Dense(NUM_CLASSES)(LastStep()(sequences)))


def time_training_step(model, repeats):
    """(first step incl. tracing, median step) seconds of a compiled training step."""
    rng = np.random.RandomState(0)
    x = tf.constant(rng.uniform(-1, 1, (FLAGS.batch_size, FLAGS.time_steps, FLAGS.input_dim)),
                    tf.float32)
    y = tf.constant(rng.randint(0, NUM_CLASSES, FLAGS.batch_size))
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    optimizer = keras.optimizers.Adam(2e-4, global_clipnorm=5.0)

    @tf.function
    def train_step():
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    start = time.perf_counter()
    loss = float(train_step())
    first = time.perf_counter() - start
    if not np.isfinite(loss):
        raise RuntimeError(f"non-finite loss {loss}")
    return first, median_step_seconds(train_step, FLAGS.warmup, repeats)


def main(argv):
    del argv
    if FLAGS.num_layers < 3 or FLAGS.num_layers % 2 == 0:
        raise app.UsageError("--num_layers must be odd and >= 3 (1 + 2 * blocks).")
    run_conditions.apply_isa_flag(FLAGS.isa)  # before the kernels load
    monitor = run_conditions.LoadMonitor()
    print(monitor.header(run_conditions.load_kernels("IndRNN", native.load,
                                                       run_conditions.indrnn_library_path()),
                         f"TensorFlow {tf.__version__}, Keras {keras.__version__}"), flush=True)
    print(f"{FLAGS.num_layers}-layer residual IndRNN, {FLAGS.units} units, "
          f"batch {FLAGS.batch_size}, T {FLAGS.time_steps}, input {FLAGS.input_dim}")
    results = {}
    for label, build, repeats in (("res-IndRNN (ind_rnn.IndRNN)", fast_model, FLAGS.repeats),
                                  ("Keras RNN(IndRNNCell) stack", keras_rnn_model,
                                   FLAGS.slow_repeats)):
        model = build()
        first, median = time_training_step(model, repeats)
        results[label] = median
        print(f"{label:30s} params {model.count_params():>9,d}  first step {first:7.2f} s  "
              f"step {median * 1000:9.1f} ms", flush=True)
    fast, slow = results.values()
    print(f"speed-up of res-IndRNN over the Keras RNN stack: {slow / fast:.1f}x")
    print(monitor.footer())


if __name__ == "__main__":
    app.run(main)
