"""Sequential (pixel-by-pixel) MNIST with IndRNN (Li et al. 2018), the original script on Keras.

Each image is read one pixel per step (784 steps for MNIST), pixels scaled to
[-1, 1], and classified from the last step. The original's set-up (the
defaults): 6 IndRNN layers of 128 ReLU units, |u| <= 2^(1/784), recurrent
weights initialised uniform(0, max) (the last layer's uniform(0.5^(1/784),
max)), input kernels uniform(-0.001, 0.001), batch normalization over batch
and time after every layer, Adam 2e-4 (x0.1 every 600000 steps), gradients
clipped to global norm 5, batch 32; validation every 1000 steps, a checkpoint
every 2000, stop once the validation accuracy exceeds 0.99, then the test
accuracy. As in the original, before every validation and at the end the
batch norms' population statistics are recomputed from 500 training
sequences (`ind_rnn.BatchNormStatistics`), not taken from moving averages.
--permute feeds the pixels in a fixed random order (permuted MNIST);
--model=residual|dense trains the deep IndRNN variants instead.

    python examples/sequential_mnist.py                      # MNIST via tensorflow_datasets
    python examples/sequential_mnist.py --dataset=digits     # offline, 8x8 digits (64 steps)
    python examples/sequential_mnist.py --model=residual --num_layers=21 --permute

The last line of the output is a JSON object with "steps", "test_accuracy",
"validation_accuracy", ...
"""
import os
import sys
import time

from absl import app
from absl import flags
import numpy as np

if __package__ in (None, ""):  # run as `python examples/sequential_mnist.py`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from examples import common  # pylint: disable=wrong-import-position
from examples import training  # pylint: disable=wrong-import-position

SCRIPT_NAME = "sequential_mnist"
# The original's constants.
NUM_LAYERS = 6
NUM_UNITS = 128
LEARNING_RATE = 2e-4
LEARNING_RATE_DECAY_STEPS = 600000
ADAM_EPSILON = 1e-8  # TF1 AdamOptimizer's (Keras' Adam defaults to 1e-7)
CLIP_NORM = 5.0
BATCH_SIZE = 32
EVAL_EVERY = 1000
CHECKPOINT_EVERY = 2000
TARGET_ACCURACY = 0.99
BN_STATISTICS_BATCH = 500  # training sequences per population-statistics batch
# Ours: a bound on the run (the TF1 port reached 1.1% test error in 60k steps).
MAX_STEPS = 60000
STEPS_PER_EXECUTION = 10
MODELS = ("plain", "residual", "dense")

common.define_training_flags()
common.define_data_flags()
common.define_model_size_flags()
common.define_target_accuracy_flag()
flags.DEFINE_enum("model", "plain", list(MODELS),
                  "plain: the original stack of --num_layers IndRNN+BN layers. residual / "
                  "dense: the deep IndRNN variants (residual needs an odd --num_layers >= 3).")
flags.DEFINE_float("dropout", 0.0, "Dropout rate between layers (one mask per sequence).",
                   lower_bound=0.0, upper_bound=0.99)
flags.DEFINE_boolean("batch_norm", True, "Batch normalization after every layer.")
flags.DEFINE_integer("bn_recalibration_batches", 1,
                     "Before every validation and at the end, recompute the batch norms' "
                     "population statistics from this many batches of 500 training "
                     "sequences (drawn once, seeded), as the original did with one batch "
                     "(the default). 0: evaluate with the moving averages instead, which lag "
                     "behind weights that still change fast.", lower_bound=0)
flags.DEFINE_float("clip_norm", CLIP_NORM,
                   "Clip the gradients to this global norm (0: no clipping).", lower_bound=0.0)
flags.adopt_module_key_flags(common)  # --help lists the shared flags too
FLAGS = flags.FLAGS


def to_signed_pixels(inputs):
    """[0, 1] -> [-1, 1], the original's `2 * inputs - 1`."""
    return 2.0 * inputs - 1.0


def build_model(time_steps, model="plain", num_layers=NUM_LAYERS, units=NUM_UNITS,
                dropout=0.0, batch_norm=True, seed=None):
    """The IndRNN classifier from `ind_rnn.build_sequence_classifier` (logits out)."""
    import ind_rnn  # pylint: disable=import-outside-toplevel
    try:
        return ind_rnn.build_sequence_classifier(
            time_steps, 1, 10, model=model, num_layers=num_layers, units=units,
            dropout=dropout, batch_norm=batch_norm, seed=seed)
    except (TypeError, ValueError) as error:
        # e.g. an even --num_layers for the residual model
        raise app.UsageError(f"--model={model} --num_layers={num_layers}: {error}") from None


def batch_norm_statistics(train, batches, seed):
    """The `BatchNormStatistics` callback over `batches` x 500 training sequences."""
    import ind_rnn  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    inputs = train[0]
    rows = np.random.default_rng([seed, 1]).permutation(len(inputs))[
        :batches * BN_STATISTICS_BATCH]
    sample = tf.data.Dataset.from_tensor_slices(inputs[np.sort(rows)]).batch(BN_STATISTICS_BATCH)
    return ind_rnn.BatchNormStatistics(sample, batches=batches)


def make_optimizer(learning_rate, clip_norm):
    """TF1's Adam (epsilon 1e-8) with the original's staircase decay and global-norm clipping."""
    import keras  # pylint: disable=import-outside-toplevel
    schedule = keras.optimizers.schedules.ExponentialDecay(
        learning_rate, LEARNING_RATE_DECAY_STEPS, 0.1, staircase=True)
    return keras.optimizers.Adam(schedule, epsilon=ADAM_EPSILON,
                                 global_clipnorm=clip_norm or None)


def main(argv):
    """Trains the IndRNN classifier, prints progress lines, then the JSON result line."""
    del argv  # flags only
    import keras  # pylint: disable=import-outside-toplevel
    data, permute = common.load_data_from_flags(permute_default=False)
    data = data.map_inputs(to_signed_pixels)
    num_layers = common.flag_or("num_layers", NUM_LAYERS)
    batch_size = common.flag_or("batch_size", BATCH_SIZE)
    target_accuracy = common.flag_or("target_accuracy", TARGET_ACCURACY)
    common.prepare_run(FLAGS.seed)

    model = build_model(data.time_steps, FLAGS.model, num_layers,
                        common.flag_or("units", NUM_UNITS), FLAGS.dropout, FLAGS.batch_norm,
                        seed=FLAGS.seed)
    plan = training.plan_run(
        SCRIPT_NAME, training.model_signature(
            model, task="sequential_mnist", dataset=data.name, permute=permute,
            architecture=FLAGS.model, batch_size=batch_size, seed=FLAGS.seed),
        max_steps=MAX_STEPS, checkpoint_every=CHECKPOINT_EVERY, eval_every=EVAL_EVERY,
        steps_per_execution=STEPS_PER_EXECUTION)
    model.compile(make_optimizer(common.flag_or("learning_rate", LEARNING_RATE),
                                 FLAGS.clip_norm),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], steps_per_execution=plan.steps_per_execution)
    stop = training.StopAtTarget("val_accuracy", target_accuracy, "above")
    callbacks = [stop, training.ClassificationLines(plan)]
    recalibration = FLAGS.bn_recalibration_batches if FLAGS.batch_norm else 0
    if recalibration:
        callbacks.insert(0, batch_norm_statistics(data.train, recalibration, FLAGS.seed))
    elif hasattr(model, "batch_norm_statistics"):
        model.batch_norm_statistics = 0  # the moving averages, as asked

    batches = common.training_batches(data.train, batch_size, FLAGS.seed, plan.initial_step)
    training.build_before_fit(model, batches)  # so that fit traces its step once

    started = time.time()
    model.fit(
        batches, shuffle=False,  # the pipeline shuffles (True: Keras warns it ignores it)
        steps_per_epoch=plan.log_every, epochs=training.epochs_to_run(plan, stop),
        validation_data=common.evaluation_batches(data.validation),
        validation_freq=plan.eval_every_epochs, callbacks=plan.callbacks(callbacks),
        verbose=training.progress_verbosity())
    seconds = time.time() - started

    records = training.full_history(plan)
    result = training.classification_result(model, data, plan, records, stop, seconds)
    training.write_learning_curve(
        records, plan.log_dir, f"IndRNN ({FLAGS.model}, {num_layers} layers), "
                               f"{'permuted ' if permute else ''}{data.name}")
    training.emit_result({**result, "task": "sequential_mnist", "model": FLAGS.model,
                          "num_layers": num_layers, "permute": permute,
                          "target_accuracy": target_accuracy,
                          "bn_recalibration_batches": recalibration})


if __name__ == "__main__":
    app.run(main)
