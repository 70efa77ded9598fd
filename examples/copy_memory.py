"""The copy-memory problem of the DilatedRNN paper (Chang et al. 2017, section 4.1).

Each input sequence has T + 20 steps: 10 symbols drawn from {0, ..., 7} to
remember, T - 1 blanks (symbol 8), the recall marker (symbol 9), then 10
more blanks; symbols are one-hot. The network must output the 10 remembered
symbols over the last 10 steps, and, as in the paper, the cross-entropy is
measured on those 10 steps only. Guessing gives a loss of ln 8 = 2.079 and
an accuracy of 1/8.

Models (`--architecture`; --hidden_structs / --dilations override the lists):
* dilated (default): the paper's DilatedRNN, 9 layers of 10 units, dilations
  1, 2, ..., 256 (those below T + 20);
* stacked: the multi-layer baseline, the same layers with every dilation 1;
* single: the single-layer baseline, one layer of 256 units.
Every layer uses --cell_type (RNN, LSTM, GRU); a dense layer maps each of
the last 10 outputs to the 10 symbols. RMSProp (1e-3, decay 0.9) and batch
128, as the DilatedRNN demo.

    python examples/copy_memory.py                              # T=500, dilated RNN
    python examples/copy_memory.py --architecture=single --cell_type=LSTM

The last line of the output is a JSON object with "steps", "loss" and
"accuracy" (on 1000 held-out sequences), ...
"""
import os
import sys
import time

from absl import app
from absl import flags
from absl import logging
import numpy as np

if __package__ in (None, ""):  # run as `python examples/copy_memory.py`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from examples import common  # pylint: disable=wrong-import-position
from examples import training  # pylint: disable=wrong-import-position

SCRIPT_NAME = "copy_memory"
# The paper's task and models.
TIME_STEPS = 500
NUM_SYMBOLS_TO_COPY = 10
NUM_DATA_SYMBOLS = 8        # symbols 0..7 are remembered
BLANK, MARKER = 8, 9
NUM_CLASSES = 10
ARCHITECTURES = {           # (units per layer, dilations)
    "dilated": (10, tuple(2 ** power for power in range(9))),
    "stacked": (10, (1,) * 9),
    "single": (256, (1,)),
}
# The DilatedRNN demo's optimisation.
LEARNING_RATE = 1e-3
RMSPROP_DECAY = 0.9
BATCH_SIZE = 128
# Ours: run length, evaluation.
MAX_STEPS = 3000
EVAL_EVERY = 500
EVALUATION_SIZE = 1000
EVALUATION_KEY = 0  # stateless-seed key of the held-out set; training batch s uses s >= 1
STEPS_PER_EXECUTION = 10

common.define_training_flags()
common.define_sequence_length_flag()
common.define_dilated_rnn_flags()
common.define_target_accuracy_flag()
flags.DEFINE_enum("architecture", "dilated", list(ARCHITECTURES),
                  "dilated: 9 layers of 10, dilations 1..256. stacked: the same with "
                  "dilation 1. single: one layer of 256.")
flags.adopt_module_key_flags(common)  # --help lists the shared flags too
FLAGS = flags.FLAGS


def copy_memory_batch(key, batch_size, time_steps):
    """A batch of the copy-memory problem, in TensorFlow.

    Args:
        key: the stateless random seed, an int64 tensor `[2]`.
        batch_size: number of sequences.
        time_steps: T, the number of steps between the last symbol to copy and
            the recall marker, plus one.

    Returns:
        `(inputs, targets)`: one-hot float32 `[batch, T + 20, 10]` and the
        int32 symbols to recall `[batch, 10]`.
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    symbols = tf.random.stateless_uniform([batch_size, NUM_SYMBOLS_TO_COPY], key, 0,
                                          NUM_DATA_SYMBOLS, tf.int32)
    blanks = tf.fill([batch_size, time_steps - 1], BLANK)
    marker = tf.fill([batch_size, 1], MARKER)
    recall = tf.fill([batch_size, NUM_SYMBOLS_TO_COPY], BLANK)
    sequence = tf.concat([symbols, blanks, marker, recall], axis=1)
    return tf.one_hot(sequence, NUM_CLASSES), symbols


def training_batches(seed, batch_size, time_steps, start_step=0):
    """The training stream as a `tf.data` pipeline: batch s (1-based) from key (seed, s)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    return (tf.data.Dataset.counter(start_step + 1)
            .map(lambda step: copy_memory_batch(
                tf.stack([tf.constant(seed, tf.int64), step]), batch_size, time_steps),
                 num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE))


def held_out_batches(seed, time_steps, size=EVALUATION_SIZE):
    """The 1000 held-out sequences (key (seed, 0)), in batches of 250."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    inputs, targets = copy_memory_batch(tf.constant([seed, EVALUATION_KEY], tf.int64), size,
                                        time_steps)
    return tf.data.Dataset.from_tensor_slices((inputs, targets)).batch(250)


def build_model(time_steps, hidden_structs, dilations, cell_type="RNN", name="copy_memory"):
    """A `dilated_rnn.DilatedRNN` over the sequence, then logits for the last 10 steps.

    Returns:
        A `keras.Model` from `[batch, T + 20, 10]` to logits `[batch, 10, 10]`.
    """
    import keras  # pylint: disable=import-outside-toplevel
    import dilated_rnn  # pylint: disable=import-outside-toplevel
    inputs = keras.Input((time_steps + 2 * NUM_SYMBOLS_TO_COPY, NUM_CLASSES), name="symbols")
    outputs = dilated_rnn.DilatedRNN(hidden_structs, dilations, cell_type=cell_type,
                                     return_sequences=True, name="dilated_rnn")(inputs)
    recall = keras.layers.Cropping1D((outputs.shape[1] - NUM_SYMBOLS_TO_COPY, 0),
                                     name="recall_steps")(outputs)
    logits = keras.layers.Dense(NUM_CLASSES, name="symbol_logits")(recall)
    return keras.Model(inputs, logits, name=name)


def make_optimizer(learning_rate):
    """The DilatedRNN demo's `tf.train.RMSPropOptimizer(learning_rate, decay=0.9)`, exactly."""
    import dilated_rnn  # pylint: disable=import-outside-toplevel
    return dilated_rnn.TF1RMSprop(learning_rate, rho=RMSPROP_DECAY)


def print_record(plan):
    """A progress line per training window and per evaluation."""
    import keras  # pylint: disable=import-outside-toplevel

    def print_epoch(epoch, logs):
        step = plan.step_of(epoch)
        print(f"Step {step} loss {logs['loss']:.6f} acc {logs['accuracy']:.4f}", flush=True)
        if "val_loss" in logs:
            print(f"Step {step} valid_loss {logs['val_loss']:.6f} "
                  f"valid_acc {logs['val_accuracy']:.4f}", flush=True)
    return keras.callbacks.LambdaCallback(on_epoch_end=print_epoch)


def main(argv):
    """Trains on the copy-memory problem; prints progress, then the JSON result line."""
    del argv  # flags only
    import keras  # pylint: disable=import-outside-toplevel
    time_steps = common.flag_or("time_steps", TIME_STEPS)
    units, architecture_dilations = ARCHITECTURES[FLAGS.architecture]
    hidden_structs, dilations = common.dilated_structure_from_flags(
        time_steps + 2 * NUM_SYMBOLS_TO_COPY, units, architecture_dilations)
    batch_size = common.flag_or("batch_size", BATCH_SIZE)
    common.prepare_run(FLAGS.seed)

    model = build_model(time_steps, hidden_structs, dilations, FLAGS.cell_type,
                        name=f"copy_memory_{FLAGS.architecture}")
    plan = training.plan_run(
        SCRIPT_NAME, training.model_signature(
            model, task="copy_memory", time_steps=time_steps, cell_type=FLAGS.cell_type,
            dilations=dilations, batch_size=batch_size, seed=FLAGS.seed),
        max_steps=MAX_STEPS, eval_every=EVAL_EVERY, steps_per_execution=STEPS_PER_EXECUTION)
    model.compile(make_optimizer(common.flag_or("learning_rate", LEARNING_RATE)),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], steps_per_execution=plan.steps_per_execution)
    stop = training.StopAtTarget("val_accuracy", common.flag_or("target_accuracy", None),
                                 "above")
    held_out = held_out_batches(FLAGS.seed, time_steps)

    batches = training_batches(FLAGS.seed, batch_size, time_steps, plan.initial_step)
    training.build_before_fit(model, batches)  # so that fit traces its step once

    started = time.time()
    model.fit(batches, shuffle=False,  # drawn in order (True: Keras warns it ignores it)
              steps_per_epoch=plan.log_every, epochs=training.epochs_to_run(plan, stop),
              validation_data=held_out, validation_freq=plan.eval_every_epochs,
              callbacks=plan.callbacks([stop, print_record(plan)]),
              verbose=training.progress_verbosity())
    seconds = time.time() - started

    records = training.full_history(plan)
    final = model.evaluate(held_out, verbose=0, return_dict=True)
    steps = records[-1]["step"] if records else 0
    logging.info("Stopped after %d steps: held-out loss %.4f, accuracy %.4f.", steps,
                 final["loss"], final["accuracy"])
    training.write_learning_curve(
        records, plan.log_dir,
        f"Copy memory, T={time_steps}, {FLAGS.architecture} {FLAGS.cell_type}")
    training.emit_result({
        "task": "copy_memory", "time_steps": time_steps, "architecture": FLAGS.architecture,
        "cell_type": FLAGS.cell_type, "hidden_structs": hidden_structs,
        "dilations": dilations, "steps": steps, "loss": final["loss"],
        "accuracy": final["accuracy"], "guess_loss": float(np.log(NUM_DATA_SYMBOLS)),
        "parameters": model.count_params(), "stop_reason": training.stop_reason(records, stop),
        "resumed_from": plan.initial_step, "train_seconds": round(seconds, 1)})


if __name__ == "__main__":
    app.run(main)
