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

from absl import app
from absl import flags
from absl import logging
import numpy as np

if __package__ in (None, ""):  # run as `python examples/copy_memory.py`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from examples import common  # pylint: disable=wrong-import-position

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
RMSPROP_EPSILON = 1e-10
BATCH_SIZE = 128
# Ours: run length, evaluation.
MAX_STEPS = 3000
EVAL_EVERY = 500
EVALUATION_SIZE = 1000
EVALUATION_KEY = 0  # seed-sequence key of the held-out set; training batch s uses s >= 1

common.define_training_flags()
common.define_sequence_length_flag()
common.define_dilated_rnn_flags()
common.define_target_accuracy_flag()
flags.DEFINE_enum("architecture", "dilated", list(ARCHITECTURES),
                  "dilated: 9 layers of 10, dilations 1..256. stacked: the same with "
                  "dilation 1. single: one layer of 256.")
FLAGS = flags.FLAGS


def copy_memory_batch(rng, batch_size, time_steps):
    """A batch of the copy-memory problem.

    Args:
        rng: a `numpy.random.Generator`.
        batch_size: number of sequences.
        time_steps: T, the number of steps between the last symbol to copy and
            the recall marker, plus one.

    Returns:
        `(inputs, targets)`: one-hot float32 `[batch, T + 20, 10]` and the
        int32 symbols to recall `[batch, 10]`.
    """
    length = time_steps + 2 * NUM_SYMBOLS_TO_COPY
    symbols = rng.integers(0, NUM_DATA_SYMBOLS, (batch_size, NUM_SYMBOLS_TO_COPY))
    sequence = np.full((batch_size, length), BLANK, np.int64)
    sequence[:, :NUM_SYMBOLS_TO_COPY] = symbols
    sequence[:, -(NUM_SYMBOLS_TO_COPY + 1)] = MARKER
    inputs = np.eye(NUM_CLASSES, dtype=np.float32)[sequence]
    return inputs, symbols.astype(np.int32)


def batch_for_step(seed, step, batch_size, time_steps):
    """Training batch `step`: its own seeded generator, so resuming replays nothing."""
    return copy_memory_batch(np.random.default_rng([seed, step]), batch_size, time_steps)


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


def evaluate(model, held_out):
    """`{"loss", "accuracy"}` on the recall steps, computed in NumPy."""
    inputs, targets = held_out
    logits = model.predict(inputs, batch_size=250, verbose=0)
    return {"loss": common.softmax_cross_entropy(logits, targets),
            "accuracy": common.accuracy(logits, targets)}


def print_record(record):
    """A progress line per training window / evaluation."""
    prefix = {"train": "", "validation": "valid_"}[record["split"]]
    print(f"Step {record['step']} {prefix}loss {record['loss']:.6f} "
          f"{prefix}acc {record['accuracy']:.4f}", flush=True)


def main(argv):
    """Trains on the copy-memory problem; prints progress, then the JSON result line."""
    del argv  # flags only
    time_steps = common.flag_or("time_steps", TIME_STEPS)
    units, architecture_dilations = ARCHITECTURES[FLAGS.architecture]
    hidden_structs, dilations = common.dilated_structure_from_flags(
        time_steps + 2 * NUM_SYMBOLS_TO_COPY, units, architecture_dilations)
    batch_size = common.flag_or("batch_size", BATCH_SIZE)
    target_accuracy = common.flag_or("target_accuracy", None)
    settings = common.TrainingSettings.from_flags(SCRIPT_NAME, MAX_STEPS, eval_every=EVAL_EVERY)
    common.prepare_run(FLAGS.seed)

    import keras  # pylint: disable=import-outside-toplevel
    model = build_model(time_steps, hidden_structs, dilations, FLAGS.cell_type,
                        name=f"copy_memory_{FLAGS.architecture}")
    held_out = copy_memory_batch(np.random.default_rng([FLAGS.seed, EVALUATION_KEY]),
                                 EVALUATION_SIZE, time_steps)
    trainer = common.ResumableTrainer(
        model, keras.optimizers.RMSprop(common.flag_or("learning_rate", LEARNING_RATE),
                                        rho=RMSPROP_DECAY, epsilon=RMSPROP_EPSILON),
        common.sparse_softmax_cross_entropy,
        lambda step: batch_for_step(FLAGS.seed, step, batch_size, time_steps), settings,
        metric_fns={"accuracy": common.batch_accuracy},
        evaluate=lambda step: {"validation": evaluate(model, held_out)},
        stop_when=lambda record: (target_accuracy is not None
                                  and record["split"] == "validation"
                                  and record["accuracy"] > target_accuracy),
        on_record=print_record,
        signature=common.model_signature(model, task="copy_memory", time_steps=time_steps,
                                         cell_type=FLAGS.cell_type, dilations=dilations,
                                         batch_size=batch_size, seed=FLAGS.seed))
    try:
        outcome = trainer.run()
    except common.CheckpointMismatchError as error:
        raise SystemExit(f"Error: {error}") from None

    final = evaluate(model, held_out)
    logging.info("Stopped after %d steps (%s): held-out loss %.4f, accuracy %.4f.",
                 outcome.steps, outcome.stop_reason, final["loss"], final["accuracy"])
    common.write_learning_curve(
        outcome.history, settings.log_dir,
        f"Copy memory, T={time_steps}, {FLAGS.architecture} {FLAGS.cell_type}")
    common.emit_result({
        "task": "copy_memory", "time_steps": time_steps, "architecture": FLAGS.architecture,
        "cell_type": FLAGS.cell_type, "hidden_structs": hidden_structs,
        "dilations": dilations, "steps": outcome.steps, "loss": final["loss"],
        "accuracy": final["accuracy"], "guess_loss": float(np.log(NUM_DATA_SYMBOLS)),
        "parameters": model.count_params(), "stop_reason": outcome.stop_reason,
        "resumed_from": outcome.resumed_from, "train_seconds": round(outcome.seconds, 1)})


if __name__ == "__main__":
    app.run(main)
