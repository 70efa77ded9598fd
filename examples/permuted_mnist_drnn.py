"""Permuted pixel MNIST with a DilatedRNN (Chang et al. 2017), the original demo on TF2.

The original notebook's set-up (the defaults here): 784 one-pixel steps in
[0, 1], permuted with `np.random.RandomState(92916).permutation(784)`, cell
"RNN", 9 layers of 20 units with dilations 1, 2, 4, ..., 256, logits from
`drnn_classification`, softmax cross-entropy, RMSProp (learning rate 1e-3,
decay 0.9, TF1's epsilon 1e-10), batch 128, 30000 iterations, a progress line
every 100, validation and test accuracy every 5000.

Sequences shorter than 512 steps (the 64-step digits) keep only the
dilations below their length, as the original refused a dilation >= n_steps:
1, 2, ..., 32 and six layers of 20 for --dataset=digits. The optimiser is
`dilated_rnn.TF1RMSprop`, TF1's RMSProp exactly (Keras' `RMSprop` starts its
mean-square accumulator at 0 where TF1's started at 1).

    python examples/permuted_mnist_drnn.py                    # MNIST via tensorflow_datasets
    python examples/permuted_mnist_drnn.py --dataset=digits   # offline, 8x8 digits
    python examples/permuted_mnist_drnn.py --cell_type=GRU --hidden_structs=20,30,40,50 \\
        --dilations=4,8,16,32 --nopermute                     # the README's second example

The last line of the output is a JSON object with "steps", "test_accuracy",
"validation_accuracy", ...
"""
import os
import sys
import time

from absl import app
from absl import flags

if __package__ in (None, ""):  # run as `python examples/permuted_mnist_drnn.py`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from examples import common  # pylint: disable=wrong-import-position
from examples import training  # pylint: disable=wrong-import-position

SCRIPT_NAME = "permuted_mnist_drnn"
# The original demo's constants.
DILATIONS = tuple(2 ** power for power in range(9))  # 1 .. 256
HIDDEN_UNITS = 20
LEARNING_RATE = 1e-3
RMSPROP_DECAY = 0.9
BATCH_SIZE = 128
MAX_STEPS = 30000
EVAL_EVERY = 5000
STEPS_PER_EXECUTION = 10

common.define_training_flags()
common.define_data_flags()
common.define_dilated_rnn_flags()
flags.adopt_module_key_flags(common)  # --help lists the shared flags too
FLAGS = flags.FLAGS


def build_model(time_steps, hidden_structs, dilations, cell_type="RNN", num_classes=10):
    """The original's graph: `drnn_classification` on a `[T, 1]` input, as a Keras model."""
    import keras  # pylint: disable=import-outside-toplevel
    import dilated_rnn  # pylint: disable=import-outside-toplevel
    inputs = keras.Input((time_steps, 1), name="pixels")
    logits = dilated_rnn.drnn_classification(inputs, hidden_structs, dilations, time_steps,
                                             num_classes, input_dims=1, cell_type=cell_type)
    return keras.Model(inputs, logits, name="drnn_classification")


def make_optimizer(learning_rate):
    """The original's `tf.train.RMSPropOptimizer(learning_rate, decay=0.9)`, exactly."""
    import dilated_rnn  # pylint: disable=import-outside-toplevel
    return dilated_rnn.TF1RMSprop(learning_rate, rho=RMSPROP_DECAY)


def main(argv):
    """Trains the DilatedRNN classifier, prints progress lines, then the JSON result line."""
    del argv  # flags only
    import keras  # pylint: disable=import-outside-toplevel
    data, permute = common.load_data_from_flags(permute_default=True)
    hidden_structs, dilations = common.dilated_structure_from_flags(
        data.time_steps, HIDDEN_UNITS, DILATIONS)
    batch_size = common.flag_or("batch_size", BATCH_SIZE)
    common.prepare_run(FLAGS.seed)

    model = build_model(data.time_steps, hidden_structs, dilations, FLAGS.cell_type)
    plan = training.plan_run(
        SCRIPT_NAME, training.model_signature(
            model, task="permuted_mnist_drnn", dataset=data.name, permute=permute,
            cell_type=FLAGS.cell_type, dilations=dilations, batch_size=batch_size,
            seed=FLAGS.seed),
        max_steps=MAX_STEPS, eval_every=EVAL_EVERY, steps_per_execution=STEPS_PER_EXECUTION)
    model.compile(make_optimizer(common.flag_or("learning_rate", LEARNING_RATE)),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], steps_per_execution=plan.steps_per_execution)
    stop = training.StopAtTarget("val_accuracy", None, "above")  # the demo never stopped early
    # The demo evaluated the test set with every validation.
    test = training.EvaluateSplit("test", common.evaluation_batches(data.test),
                                  plan.eval_every_epochs)

    batches = common.training_batches(data.train, batch_size, FLAGS.seed, plan.initial_step)
    training.build_before_fit(model, batches)  # so that fit traces its step once

    started = time.time()
    model.fit(
        batches, shuffle=False,  # the pipeline shuffles (True: Keras warns it ignores it)
        steps_per_epoch=plan.log_every, epochs=training.epochs_to_run(plan, stop),
        validation_data=common.evaluation_batches(data.validation),
        validation_freq=plan.eval_every_epochs,
        callbacks=plan.callbacks([test, stop, training.ClassificationLines(plan)]),
        verbose=training.progress_verbosity())
    seconds = time.time() - started

    records = training.full_history(plan)
    result = training.classification_result(model, data, plan, records, stop, seconds)
    training.write_learning_curve(
        records, plan.log_dir,
        f"Dilated {FLAGS.cell_type}, {'permuted ' if permute else ''}{data.name}")
    training.emit_result({**result, "task": "permuted_mnist_drnn",
                          "cell_type": FLAGS.cell_type, "hidden_structs": hidden_structs,
                          "dilations": dilations, "permute": permute,
                          "parameters": model.count_params()})


if __name__ == "__main__":
    app.run(main)
