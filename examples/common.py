"""Plumbing shared by the example scripts, written once.

* Flags: training/logging/checkpoint flags, data flags, and the flags whose
  name several scripts use (their default is None: each script resolves it to
  its own original default with `flag_or`).
* Data: pixel-sequence classification data from MNIST (tensorflow_datasets)
  or, offline, scikit-learn's bundled 8x8 digits, through the same pipeline
  (optional fixed permutation, pixels scaled by each script).
* `ResumableTrainer`: a Keras training loop (one `tf.function` step) with
  progress output, TensorBoard logs, checkpoints every N steps and resume
  from the latest one. Every training batch is a pure function of the step
  number, so an interrupted and resumed run trains on exactly the batches of
  an uninterrupted one: no step is lost or repeated.
* Outputs: the learning-curve PNG and the final JSON line.
"""
import dataclasses
import functools
import json
import os
import sys
import time

from absl import app
from absl import flags
from absl import logging
import numpy as np

FLAGS = flags.FLAGS

# The DilatedRNN demo's permutation: np.random.RandomState(92916).permutation(784).
PERMUTATION_SEED = 92916
# Offline data: scikit-learn's 1797 digits, split once with a fixed seed.
DIGITS_VALIDATION_SIZE = 180
DIGITS_TEST_SIZE = 360
DIGITS_SPLIT_SEED = 0
# MNIST: the TF1 `input_data` split the originals used (first 5000 of train = validation).
MNIST_VALIDATION_SIZE = 5000
DEFAULT_LOG_ROOT = "runs"


# --------------------------------------------------------------------------- flags

def _define_once(name, define, *args, **kwargs):
    """Defines flag `name` unless a script imported earlier already did."""
    if name not in FLAGS:
        define(name, *args, **kwargs)


def define_training_flags():
    """Flags of the training loop, logging and checkpoints (every script)."""
    _define_once("max_steps", flags.DEFINE_integer, None,
                 "Number of training steps to reach (a resumed run counts the steps "
                 "already done). Default: the script's own.", lower_bound=1)
    _define_once("batch_size", flags.DEFINE_integer, None,
                 "Training batch size. Default: the original's.", lower_bound=1)
    _define_once("learning_rate", flags.DEFINE_float, None,
                 "Initial learning rate. Default: the original's.", lower_bound=0.0)
    _define_once("seed", flags.DEFINE_integer, 0,
                 "Seed of the weights and of the training batches.", lower_bound=0)
    _define_once("log_every", flags.DEFINE_integer, 100,
                 "Print the mean training metrics and log them to TensorBoard every N steps.",
                 lower_bound=1)
    _define_once("eval_every", flags.DEFINE_integer, None,
                 "Evaluate on the validation data every N steps. Default: the original's.",
                 lower_bound=1)
    _define_once("checkpoint_every", flags.DEFINE_integer, None,
                 "Save a checkpoint every N steps (and when training stops). Default: "
                 "the original's (2000) for sequential_mnist, 1000 otherwise.", lower_bound=1)
    _define_once("log_dir", flags.DEFINE_string, None,
                 "Directory of the TensorBoard logs and the learning-curve PNG. "
                 "Default: runs/<script name>.")
    _define_once("checkpoint_dir", flags.DEFINE_string, None,
                 "Directory of the checkpoints. Default: <log_dir>/checkpoints.")
    _define_once("resume", flags.DEFINE_boolean, True,
                 "Resume from the latest checkpoint in --checkpoint_dir, if any. With "
                 "--noresume training starts from scratch and overwrites the checkpoints.")


def define_data_flags():
    """Flags of the pixel-sequence classification data."""
    _define_once("dataset", flags.DEFINE_enum, "mnist", ["mnist", "digits"],
                 "mnist: MNIST 28x28 through tensorflow_datasets (784-step sequences). "
                 "digits: scikit-learn's bundled 8x8 digits (64-step sequences), offline.")
    _define_once("data_dir", flags.DEFINE_string, None,
                 "tensorflow_datasets data directory (default: ~/tensorflow_datasets).")
    _define_once("download", flags.DEFINE_boolean, True,
                 "Let tensorflow_datasets download MNIST when it is not in --data_dir.")
    _define_once("permute", flags.DEFINE_boolean, None,
                 "Feed the pixels in a fixed random order (permuted MNIST, permutation "
                 "seed 92916). Default: off for sequential_mnist, on for permuted_mnist_drnn.")


def define_target_accuracy_flag():
    """`--target_accuracy`: stop once the validation accuracy exceeds it."""
    _define_once("target_accuracy", flags.DEFINE_float, None,
                 "Stop once the validation accuracy exceeds this. Default: 0.99 for "
                 "sequential_mnist (the original's), none for copy_memory.",
                 lower_bound=0.0, upper_bound=1.0)


def define_model_size_flags():
    """`--num_layers` / `--units`, shared by the IndRNN scripts."""
    _define_once("num_layers", flags.DEFINE_integer, None,
                 "Number of recurrent layers. Default: the original's.", lower_bound=1)
    _define_once("units", flags.DEFINE_integer, None,
                 "Units per recurrent layer. Default: the original's (128).", lower_bound=1)


def define_sequence_length_flag():
    """`--time_steps`, shared by the synthetic tasks."""
    _define_once("time_steps", flags.DEFINE_integer, None,
                 "Sequence length T. Default: the original's.", lower_bound=2)


def define_dilated_rnn_flags():
    """`--cell_type`, `--hidden_structs`, `--dilations` (the DilatedRNN scripts)."""
    _define_once("cell_type", flags.DEFINE_enum, "RNN", ["RNN", "LSTM", "GRU"],
                 "Cell of every dilated layer (the original's names).")
    _define_once("hidden_structs", flags.DEFINE_list, None,
                 "Units of each layer, comma separated. Default: the original's.")
    _define_once("dilations", flags.DEFINE_list, None,
                 "Dilation of each layer, comma separated, as many as --hidden_structs. "
                 "Default: the original's.")


def flag_or(name, default):
    """The value of flag `name`, or `default` when it was left at None."""
    value = FLAGS[name].value
    return default if value is None else value


def positive_int_list(flag_name, values):
    """Parses a comma-separated list flag into positive ints, or raises UsageError."""
    try:
        numbers = [int(value) for value in values]
    except ValueError:
        numbers = None
    if not numbers or min(numbers) < 1:
        raise app.UsageError(
            f"--{flag_name}: expected a comma-separated list of positive integers, "
            f"got {','.join(values)!r}.")
    return numbers


def dilations_below(time_steps, dilations):
    """The dilations shorter than the sequence (the original refused dilation >= n_steps)."""
    return [dilation for dilation in dilations if dilation < time_steps]


def dilated_structure_from_flags(time_steps, default_hidden, default_dilations):
    """`(hidden_structs, dilations)` from --hidden_structs / --dilations, checked.

    Left unset, --dilations defaults to those of `default_dilations` below
    `time_steps` and --hidden_structs to `default_hidden` units per layer.

    Raises:
        app.UsageError: a malformed list, lists of different lengths, or a
            dilation not below the sequence length.
    """
    dilations = (positive_int_list("dilations", FLAGS.dilations) if FLAGS.dilations
                 else dilations_below(time_steps, default_dilations))
    hidden_structs = (positive_int_list("hidden_structs", FLAGS.hidden_structs)
                      if FLAGS.hidden_structs else [default_hidden] * len(dilations))
    if len(hidden_structs) != len(dilations):
        raise app.UsageError(
            f"--hidden_structs and --dilations must have one entry per layer, got "
            f"{len(hidden_structs)} and {len(dilations)} ({hidden_structs} / {dilations}).")
    too_long = [dilation for dilation in dilations if dilation >= time_steps]
    if too_long:
        raise app.UsageError(
            f"--dilations: every dilation must be below the sequence length {time_steps}, "
            f"got {too_long}.")
    return hidden_structs, dilations


def run_directories(script_name):
    """`(log_dir, checkpoint_dir)` from the flags, with their defaults."""
    log_dir = FLAGS.log_dir or os.path.join(DEFAULT_LOG_ROOT, script_name)
    return log_dir, FLAGS.checkpoint_dir or os.path.join(log_dir, "checkpoints")


# ---------------------------------------------------------------------------- data

class DatasetUnavailableError(RuntimeError):
    """The requested dataset cannot be loaded (not downloaded, no network...)."""


@dataclasses.dataclass(frozen=True)
class LabelledSequences:
    """`inputs` `[N, T, 1]` float32 pixels in [0, 1]; `labels` `[N]` int32."""
    inputs: np.ndarray
    labels: np.ndarray

    def __len__(self):
        return len(self.labels)

    def map_inputs(self, function):
        return LabelledSequences(function(self.inputs), self.labels)


@dataclasses.dataclass(frozen=True)
class PixelSequences:
    """Train / validation / test pixel sequences of one dataset."""
    name: str
    train: LabelledSequences
    validation: LabelledSequences
    test: LabelledSequences
    num_classes: int = 10

    @property
    def time_steps(self):
        return self.train.inputs.shape[1]

    def map_inputs(self, function):
        """The same data with `function` applied to every split's inputs."""
        return dataclasses.replace(self, train=self.train.map_inputs(function),
                                   validation=self.validation.map_inputs(function),
                                   test=self.test.map_inputs(function))


def _as_sequences(images, labels):
    """Images `[N, ...]` with values in [0, 1] -> one pixel per step `[N, T, 1]`."""
    inputs = np.asarray(images, np.float32).reshape(len(images), -1, 1)
    return LabelledSequences(inputs, np.asarray(labels, np.int32))


def load_digits():
    """scikit-learn's bundled 8x8 digits (no download) as 64-step sequences.

    Pixels (0..16) are scaled to [0, 1], like MNIST's (0..255). The 1797
    images are shuffled once with a fixed seed and split 1257 / 180 / 360
    into train / validation / test.
    """
    from sklearn import datasets  # pylint: disable=import-outside-toplevel
    digits = datasets.load_digits()
    order = np.random.RandomState(DIGITS_SPLIT_SEED).permutation(len(digits.target))
    images, labels = digits.images[order] / 16.0, digits.target[order]
    test_start = len(labels) - DIGITS_TEST_SIZE
    validation_start = test_start - DIGITS_VALIDATION_SIZE
    return PixelSequences(
        "digits",
        train=_as_sequences(images[:validation_start], labels[:validation_start]),
        validation=_as_sequences(images[validation_start:test_start],
                                 labels[validation_start:test_start]),
        test=_as_sequences(images[test_start:], labels[test_start:]))


def _mnist_missing(location, reason):
    return (f"MNIST is not available in {location} ({reason}). Either download it once "
            "with network access (--dataset=mnist --download, optionally --data_dir=DIR), "
            "or train offline on scikit-learn's bundled 8x8 digits with --dataset=digits.")


def load_mnist(data_dir=None, download=True):
    """MNIST through tensorflow_datasets as 784-step sequences in [0, 1].

    Validation is the first 5000 training images and train the other 55000,
    as in the TF1 `input_data` loader the originals used.

    Raises:
        DatasetUnavailableError: MNIST is not prepared in `data_dir` and
            downloading is off or fails, or tensorflow_datasets is missing.
    """
    try:
        import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
    except ImportError as error:
        raise DatasetUnavailableError(_mnist_missing(
            data_dir or "the default data directory",
            "tensorflow-datasets is not installed")) from error
    builder = tfds.builder("mnist", data_dir=data_dir)
    if not builder.is_prepared():
        if not download:
            raise DatasetUnavailableError(_mnist_missing(
                builder.data_dir, "not downloaded, and --nodownload was given"))
        try:
            builder.download_and_prepare()
        except Exception as error:  # pylint: disable=broad-except
            # Offline, the failure can be any of many network/IO exception types.
            raise DatasetUnavailableError(_mnist_missing(
                builder.data_dir, f"the download failed: {error}")) from error
    train_images, train_labels = tfds.as_numpy(
        builder.as_dataset(split="train", batch_size=-1, as_supervised=True))
    test_images, test_labels = tfds.as_numpy(
        builder.as_dataset(split="test", batch_size=-1, as_supervised=True))
    train_images, test_images = train_images / 255.0, test_images / 255.0
    return PixelSequences(
        "mnist",
        train=_as_sequences(train_images[MNIST_VALIDATION_SIZE:],
                            train_labels[MNIST_VALIDATION_SIZE:]),
        validation=_as_sequences(train_images[:MNIST_VALIDATION_SIZE],
                                 train_labels[:MNIST_VALIDATION_SIZE]),
        test=_as_sequences(test_images, test_labels))


def pixel_permutation(time_steps, seed=PERMUTATION_SEED):
    """The fixed pixel order of the permuted task (the DilatedRNN demo's for MNIST)."""
    return np.random.RandomState(seed).permutation(time_steps)


def load_pixel_sequences(dataset, data_dir=None, download=True, permute=False):
    """Loads `dataset` ("mnist" or "digits"), optionally with permuted pixels.

    Returns:
        `PixelSequences` with pixels in [0, 1]; each script rescales them.

    Raises:
        DatasetUnavailableError: see `load_mnist`.
        ValueError: an unknown dataset name.
    """
    if dataset == "mnist":
        data = load_mnist(data_dir, download)
    elif dataset == "digits":
        data = load_digits()
    else:
        raise ValueError(f"--dataset: expected 'mnist' or 'digits', got {dataset!r}.")
    if permute:
        order = pixel_permutation(data.time_steps)
        data = data.map_inputs(lambda inputs: inputs[:, order])
    return data


def load_data_from_flags(permute_default):
    """`load_pixel_sequences` with the data flags; exits with a clear message if missing."""
    permute = flag_or("permute", permute_default)
    try:
        data = load_pixel_sequences(FLAGS.dataset, FLAGS.data_dir, FLAGS.download, permute)
    except DatasetUnavailableError as error:
        raise SystemExit(f"Error: {error}") from None
    logging.info("%s: %d train / %d validation / %d test sequences of %d steps%s.",
                 data.name, len(data.train), len(data.validation), len(data.test),
                 data.time_steps, " (permuted)" if permute else "")
    return data, permute


@functools.lru_cache(maxsize=4)
def _epoch_order(num_examples, seed, epoch):
    return np.random.default_rng([seed, epoch]).permutation(num_examples)


def batch_indices(num_examples, batch_size, step, seed):
    """Example indices of training batch `step` (1-based), a pure function of its args.

    The examples are visited epoch after epoch, each epoch in its own seeded
    random order, and batches run across epoch boundaries, like the
    originals' `shuffle().repeat().batch()`. Because nothing depends on
    earlier calls, a resumed run draws exactly the batches of an
    uninterrupted one.
    """
    positions = np.arange((step - 1) * batch_size, step * batch_size)
    epochs, offsets = np.divmod(positions, num_examples)
    indices = np.empty(batch_size, np.int64)
    for epoch in np.unique(epochs):
        in_epoch = epochs == epoch
        indices[in_epoch] = _epoch_order(num_examples, seed, int(epoch))[offsets[in_epoch]]
    return indices


def classification_batches(split, batch_size, seed):
    """`batch_at(step) -> (inputs, labels)` over `split` (see `batch_indices`)."""
    def batch_at(step):
        indices = batch_indices(len(split), batch_size, step, seed)
        return split.inputs[indices], split.labels[indices]
    return batch_at


# ------------------------------------------------------------------------ metrics

def softmax_cross_entropy(logits, labels):
    """Mean sparse softmax cross-entropy, in NumPy (float64)."""
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_probabilities = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    picked = np.take_along_axis(log_probabilities, np.asarray(labels)[..., None], axis=-1)
    return float(-picked.mean())


def accuracy(logits, labels):
    """Fraction of argmax predictions equal to `labels`, in NumPy."""
    return float(np.mean(np.argmax(logits, axis=-1) == np.asarray(labels)))


def evaluate_classifier(model, split, batch_size=500):
    """`{"loss", "accuracy"}` of a logits model on a `LabelledSequences` split."""
    logits = model.predict(split.inputs, batch_size=batch_size, verbose=0)
    return {"loss": softmax_cross_entropy(logits, split.labels),
            "accuracy": accuracy(logits, split.labels)}


def sparse_softmax_cross_entropy(labels, logits):
    """Mean softmax cross-entropy of integer `labels` and `logits` (TensorFlow)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(labels, tf.int32), logits=logits))


def batch_accuracy(labels, logits):
    """Fraction of argmax predictions equal to `labels` (TensorFlow)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    predictions = tf.argmax(logits, axis=-1, output_type=tf.int32)
    return tf.reduce_mean(tf.cast(tf.equal(predictions, tf.cast(labels, tf.int32)), tf.float32))


def print_classification_record(record):
    """The originals' progress lines: "Step N Loss l Acc a" and "Step N valid_loss ..."."""
    if record["split"] == "train":
        line = f"Step {record['step']} Loss {record['loss']:.6f} Acc {record['accuracy']:.4f}"
    else:
        prefix = {"validation": "valid"}.get(record["split"], record["split"])
        line = (f"Step {record['step']} {prefix}_loss {record['loss']:.6f} "
                f"{prefix}_acc {record['accuracy']:.4f}")
    print(line, flush=True)


def train_classifier(model, optimizer, data, batch_size, settings, *, seed, title,
                     signature, target_accuracy=None, evaluate_test=False,
                     prepare_evaluation=None):
    """Trains a logits model on pixel sequences with `ResumableTrainer`, then tests it.

    Training batches come from `classification_batches`; every
    `settings.eval_every` steps the validation split (and, with
    `evaluate_test`, the test split, as the DilatedRNN demo did) is
    evaluated. Training stops at `settings.max_steps` or once the validation
    accuracy exceeds `target_accuracy`. `prepare_evaluation(step)`, if given,
    runs before every evaluation (e.g. to re-estimate batch-norm statistics).
    Writes the learning curve.

    Returns:
        The result fields shared by the classification scripts: "steps",
        "test_accuracy", "test_loss", "validation_accuracy", "stop_reason", ...

    Raises:
        SystemExit: the checkpoint to resume from belongs to another run.
    """
    prepare_evaluation = prepare_evaluation or (lambda step: None)

    def evaluate(step):
        prepare_evaluation(step)
        splits = {"validation": data.validation}
        if evaluate_test:
            splits["test"] = data.test
        return {name: evaluate_classifier(model, split) for name, split in splits.items()}

    def reached_target(record):
        return (target_accuracy is not None and record["split"] == "validation"
                and record["accuracy"] > target_accuracy)

    trainer = ResumableTrainer(
        model, optimizer, sparse_softmax_cross_entropy,
        classification_batches(data.train, batch_size, seed), settings,
        metric_fns={"accuracy": batch_accuracy}, evaluate=evaluate, stop_when=reached_target,
        on_record=print_classification_record, signature=signature)
    try:
        outcome = trainer.run()
    except CheckpointMismatchError as error:
        raise SystemExit(f"Error: {error}") from None
    prepare_evaluation(outcome.steps)
    test, validation = evaluate_classifier(model, data.test), evaluate_classifier(
        model, data.validation)
    logging.info("Stopped after %d steps (%s): test accuracy %.4f.", outcome.steps,
                 outcome.stop_reason, test["accuracy"])
    write_learning_curve(outcome.history, settings.log_dir, title)
    return {"steps": outcome.steps, "test_accuracy": test["accuracy"], "test_loss": test["loss"],
            "validation_accuracy": validation["accuracy"], "validation_loss": validation["loss"],
            "dataset": data.name, "time_steps": data.time_steps,
            "stop_reason": outcome.stop_reason, "resumed_from": outcome.resumed_from,
            "train_seconds": round(outcome.seconds, 1)}


# ----------------------------------------------------------------------- training

@dataclasses.dataclass
class TrainingSettings:
    """How long to train and where to log / checkpoint.

    Attributes:
        max_steps: total number of optimizer steps to reach.
        log_every: steps per training-metrics record (printed, logged, plotted).
        checkpoint_every: steps between checkpoints.
        log_dir: TensorBoard logs and the learning curve go here.
        checkpoint_dir: checkpoints go here.
        eval_every: steps between validation records (None: never).
        resume: restore the latest checkpoint of `checkpoint_dir` if any.
    """
    max_steps: int
    log_every: int
    checkpoint_every: int
    log_dir: str
    checkpoint_dir: str
    eval_every: int = None
    resume: bool = True

    @classmethod
    def from_flags(cls, script_name, max_steps, checkpoint_every=1000, eval_every=None):
        """Settings from the training flags, with the script's defaults."""
        log_dir, checkpoint_dir = run_directories(script_name)
        return cls(max_steps=flag_or("max_steps", max_steps), log_every=FLAGS.log_every,
                   checkpoint_every=flag_or("checkpoint_every", checkpoint_every),
                   log_dir=log_dir, checkpoint_dir=checkpoint_dir,
                   eval_every=flag_or("eval_every", eval_every), resume=FLAGS.resume)


@dataclasses.dataclass
class TrainingOutcome:
    """What `ResumableTrainer.run` did: total steps, records, why it stopped."""
    steps: int
    history: list
    stop_reason: str
    resumed_from: int
    seconds: float

    def last(self, split):
        """The last record of `split` ("train", "validation", ...), or None."""
        records = [record for record in self.history if record["split"] == split]
        return records[-1] if records else None


class CheckpointMismatchError(RuntimeError):
    """The checkpoint to resume from was written by a different set-up."""


class ResumableTrainer:
    """Trains a Keras model step by step, with logs, checkpoints and resume.

    The checkpoint holds every model variable (batch-norm statistics and
    dropout seed states included), every optimizer variable (its step
    counter, hence the learning-rate schedule, included) and the progress:
    the metric records so far, the partly filled logging window and the
    run's `signature`. Together with batches that depend only on the step
    number, this makes a resumed run continue exactly where the interrupted
    one stopped.

    Args:
        model: a built `keras.Model`.
        optimizer: a Keras optimizer; its `iterations` is the step count.
        loss_fn: `loss_fn(targets, outputs) -> scalar tensor`.
        batch_at: `batch_at(step) -> (inputs, targets)`, step 1-based; must be
            a pure function of `step`.
        settings: `TrainingSettings`.
        loss_name: the name the loss is recorded under (e.g. "mse").
        metric_fns: optional `{name: fn(targets, outputs) -> scalar tensor}`
            averaged over each logging window like the loss.
        evaluate: optional `evaluate(step) -> {split: {name: float}}`, e.g.
            the validation (and test) metrics, called every
            `settings.eval_every` steps.
        stop_when: optional `stop_when(record) -> bool`; training stops after
            the first record (train window or evaluation) for which it holds.
        on_record: optional `on_record(record)`, e.g. to print it.
        signature: a JSON-able dict of the settings a checkpoint must agree
            with to be resumed (model shape, data, task).
    """

    def __init__(self, model, optimizer, loss_fn, batch_at, settings, *, loss_name="loss",
                 metric_fns=None, evaluate=None, stop_when=None, on_record=None,
                 signature=None):
        self.model = model
        self.optimizer = optimizer
        self.batch_at = batch_at
        self.settings = settings
        self.loss_name = loss_name
        self.evaluate = evaluate
        self.stop_when = stop_when or (lambda record: False)
        self.on_record = on_record or (lambda record: None)
        self.signature = json.loads(json.dumps(signature or {}))
        self.history = []
        self._window = {"steps": 0, "sums": {}}
        self._train_step = _make_train_step(model, optimizer, loss_fn, loss_name,
                                            metric_fns or {})
        self._writers = {}
        self._saved_step = None
        self._checkpoint, self._manager, self._progress = self._make_checkpoint()

    # -- checkpoints --------------------------------------------------------------
    def _make_checkpoint(self):
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        # The optimizer's slots must exist before they can be saved or restored.
        self.optimizer.build(self.model.trainable_variables)
        progress = tf.Variable("", dtype=tf.string, trainable=False)
        # Plain lists, not the model object: Keras' object graph leaves out the
        # dropout seed states, which a bit-exact resume needs.
        checkpoint = tf.train.Checkpoint(model_variables=list(self.model.variables),
                                         optimizer_variables=list(self.optimizer.variables),
                                         progress=progress)
        manager = tf.train.CheckpointManager(checkpoint, self.settings.checkpoint_dir,
                                             max_to_keep=2)
        return checkpoint, manager, progress

    @property
    def step(self):
        """Optimizer steps done so far (restored ones included)."""
        return int(self.optimizer.iterations.numpy())

    def _save(self):
        self._progress.assign(json.dumps({"history": self.history, "window": self._window,
                                          "signature": self.signature}))
        path = self._manager.save(checkpoint_number=self.step)
        self._saved_step = self.step
        logging.info("Saved checkpoint %s", path)

    def _restore(self):
        """Restores the latest checkpoint if resuming; returns its step (0 if none)."""
        latest = self._manager.latest_checkpoint
        if not (self.settings.resume and latest):
            return 0
        try:
            self._checkpoint.restore(latest).assert_existing_objects_matched()
        except (AssertionError, ValueError) as error:
            raise CheckpointMismatchError(self._mismatch_message(latest, error)) from error
        progress = json.loads(self._progress.numpy().decode("utf-8"))
        if progress["signature"] != self.signature:
            saved = progress["signature"]
            differences = ", ".join(
                f"{key}: {saved.get(key)!r} there, {self.signature.get(key)!r} here"
                for key in sorted(set(saved) | set(self.signature))
                if saved.get(key) != self.signature.get(key))
            raise CheckpointMismatchError(self._mismatch_message(
                latest, f"it belongs to a different run ({differences})"))
        self.history, self._window = progress["history"], progress["window"]
        logging.info("Resumed from %s at step %d.", latest, self.step)
        return self.step

    def _mismatch_message(self, path, detail):
        return (f"Cannot resume from {path}: {detail}. Use the flags of that run, another "
                "--checkpoint_dir, or --noresume to start again from scratch.")

    # -- records ------------------------------------------------------------------
    def _writer(self, split):
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        if split not in self._writers:
            self._writers[split] = tf.summary.create_file_writer(
                os.path.join(self.settings.log_dir, split))
        return self._writers[split]

    def _add_record(self, split, metrics):
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        record = {"step": self.step, "split": split,
                  **{name: float(value) for name, value in metrics.items()}}
        self.history.append(record)
        with self._writer(split).as_default():
            for name, value in metrics.items():
                # tf.summary.write with the scalars plugin's metadata is what
                # tf.summary.scalar does, without needing TensorBoard installed.
                tf.summary.write(name, tf.constant(value, tf.float32), step=self.step,
                                 metadata=_SCALAR_METADATA)
        self.on_record(record)
        return self.stop_when(record)

    def _accumulate(self, values):
        sums = self._window["sums"]
        for name, value in values.items():
            sums[name] = sums.get(name, 0.0) + float(value)
        self._window["steps"] += 1

    def _close_window(self):
        steps, sums = self._window["steps"], self._window["sums"]
        self._window = {"steps": 0, "sums": {}}
        return self._add_record("train", {name: total / steps for name, total in sums.items()})

    def _already_finished(self):
        """True if the restored records already met the stop criterion."""
        last_of_split = {}
        for record in self.history:
            last_of_split[record["split"]] = record
        return any(self.stop_when(record) for record in last_of_split.values())

    # -- the loop -----------------------------------------------------------------
    def run(self):
        """Trains until `max_steps` or the stop criterion; returns a `TrainingOutcome`."""
        resumed_from = self._restore()
        stop_reason = "target" if self._already_finished() else "max_steps"
        started = time.time()
        progress_bar = _WindowProgressBar(self.settings.log_every)
        while stop_reason != "target" and self.step < self.settings.max_steps:
            step = self.step + 1
            inputs, targets = self.batch_at(step)
            values = {name: value.numpy() for name, value in
                      self._train_step(inputs, targets).items()}
            self._accumulate(values)
            progress_bar.update(step, values)
            if self._end_of_period(step) and self._record_period(step):
                stop_reason = "target"
            if step % self.settings.checkpoint_every == 0 or stop_reason == "target":
                self._save()
        if self.step > resumed_from and self._saved_step != self.step:
            self._save()  # the final state
        for writer in self._writers.values():
            writer.flush()
        return TrainingOutcome(self.step, list(self.history), stop_reason, resumed_from,
                               time.time() - started)

    def _end_of_period(self, step):
        eval_due = self.settings.eval_every and step % self.settings.eval_every == 0
        return step % self.settings.log_every == 0 or eval_due

    def _record_period(self, step):
        """Adds the records due at `step`; True if one of them met the stop criterion."""
        stop = False
        if step % self.settings.log_every == 0:
            stop = self._close_window() or stop
        if self.evaluate and self.settings.eval_every and step % self.settings.eval_every == 0:
            for split, metrics in self.evaluate(step).items():
                stop = self._add_record(split, metrics) or stop
        return stop


def _scalar_summary_metadata():
    from tensorflow.core.framework import summary_pb2  # pylint: disable=import-outside-toplevel
    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))


_SCALAR_METADATA = _scalar_summary_metadata()


def _make_train_step(model, optimizer, loss_fn, loss_name, metric_fns):
    """One compiled optimizer step; returns the loss and metrics of the batch."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    @tf.function
    def train_step(inputs, targets):
        with tf.GradientTape() as tape:
            outputs = model(inputs, training=True)
            loss = loss_fn(targets, outputs)
            regularized_loss = loss + tf.add_n(model.losses) if model.losses else loss
        variables = model.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(regularized_loss, variables), variables))
        values = {loss_name: loss}
        values.update({name: fn(targets, outputs) for name, fn in metric_fns.items()})
        return values

    def run_step(inputs, targets):
        return train_step(tf.convert_to_tensor(inputs), tf.convert_to_tensor(targets))
    return run_step


class _WindowProgressBar:
    """A Keras progress bar per logging window, shown on interactive terminals only.

    In a log file a bar that redraws itself is noise; there the per-window
    lines the scripts print are the progress output.
    """

    def __init__(self, window):
        self.window = window
        self.enabled = sys.stdout.isatty()
        self._bar = None

    def update(self, step, values):
        if not self.enabled:
            return
        import keras  # pylint: disable=import-outside-toplevel
        position = (step - 1) % self.window + 1
        if self._bar is None or position == 1:
            self._bar = keras.utils.Progbar(self.window, stateful_metrics=None)
        self._bar.update(position, list(values.items()), finalize=position == self.window)


def model_signature(model, **extra):
    """A checkpoint signature: the model's variable shapes plus `extra` settings."""
    # Shapes only: Keras numbers auto-named objects per process, so paths vary.
    shapes = [list(variable.shape) for variable in model.variables]
    return {"variable_shapes": shapes, **extra}


# ------------------------------------------------------------------------ outputs

def plot_learning_curves(history, path, title):
    """Writes a PNG with one panel per recorded metric, one line per split."""
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")  # no display needed
    from matplotlib import pyplot  # pylint: disable=import-outside-toplevel
    metric_names = sorted({name for record in history for name in record}
                          - {"step", "split"})
    if not metric_names:
        logging.warning("No records yet: no learning curve written.")
        return None
    figure, axes = pyplot.subplots(1, len(metric_names), squeeze=False,
                                   figsize=(4.5 * len(metric_names), 3.5))
    for axis, name in zip(axes[0], metric_names):
        for split in dict.fromkeys(record["split"] for record in history):
            points = [(record["step"], record[name]) for record in history
                      if record["split"] == split and name in record]
            if points:
                axis.plot(*zip(*points), label=split, marker="." if len(points) < 30 else None)
        if "accuracy" not in name and all(record.get(name, 1) > 0 for record in history):
            axis.set_yscale("log")  # losses span orders of magnitude
        axis.set_xlabel("step")
        axis.set_ylabel(name)
        axis.grid(True, alpha=0.3)
        axis.legend()
    figure.suptitle(title)
    figure.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
    logging.info("Wrote the learning curve %s", path)
    return path


def write_learning_curve(history, log_dir, title):
    """Writes `history.json` (every record) and `learning_curve.png` into `log_dir`."""
    os.makedirs(log_dir, exist_ok=True)
    with open(os.path.join(log_dir, "history.json"), "w", encoding="utf-8") as file:
        json.dump(history, file)
    return plot_learning_curves(history, os.path.join(log_dir, "learning_curve.png"), title)


def emit_result(result):
    """Prints `result` as one JSON object: the last line of the script's output."""
    sys.stdout.flush()
    print(json.dumps(result, sort_keys=True), flush=True)
    return result


def prepare_run(seed):
    """Seeds Python, NumPy and TensorFlow (the weights' initialisation) and
    keeps TensorFlow's own INFO chatter (one line per checkpoint) out of the log."""
    import keras  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    tf.get_logger().setLevel("WARNING")
    keras.utils.set_random_seed(seed)
