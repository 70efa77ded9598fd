"""What the example scripts share: their flags and their data.

* Flags: the training / logging / checkpoint flags every script has, the
  data flags, and flags whose name several scripts use (default None: each
  script resolves it to its own original default with `flag_or`).
* Data: pixel-sequence classification data from MNIST (tensorflow_datasets)
  or, offline, scikit-learn's bundled 8x8 digits, and the `tf.data`
  pipelines over it. Every training batch is a function of its step number
  alone, so a resumed run trains on exactly the batches of an uninterrupted one.

`examples/training.py` turns these flags into `model.fit`'s arguments and
callbacks.
"""
import dataclasses

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
    """Flags of training, logging and checkpoints (every script)."""
    _define_once("max_steps", flags.DEFINE_integer, None,
                 "Number of training steps to reach, a multiple of --log_every (a resumed "
                 "run counts the steps already done). Default: the script's own.",
                 lower_bound=1)
    _define_once("batch_size", flags.DEFINE_integer, None,
                 "Training batch size. Default: the original's.", lower_bound=1)
    _define_once("learning_rate", flags.DEFINE_float, None,
                 "Initial learning rate. Default: the original's.", lower_bound=0.0)
    _define_once("seed", flags.DEFINE_integer, 0,
                 "Seed of the weights and of the training batches.", lower_bound=0)
    _define_once("log_every", flags.DEFINE_integer, 100,
                 "Steps per logging window (one Keras epoch): its mean training metrics are "
                 "printed, logged to TensorBoard and history, and the run is backed up.",
                 lower_bound=1)
    _define_once("eval_every", flags.DEFINE_integer, None,
                 "Evaluate on the validation data every N steps, a multiple of --log_every. "
                 "Default: the original's.", lower_bound=1)
    _define_once("checkpoint_every", flags.DEFINE_integer, None,
                 "Save the weights to <checkpoint_dir>/ckpt-<K>.weights.h5 every N steps "
                 "(K = steps / --log_every; a multiple of --log_every). Default: the "
                 "original's (2000) for sequential_mnist, 1000 otherwise.", lower_bound=1)
    _define_once("steps_per_execution", flags.DEFINE_integer, None,
                 "Training steps per call of the compiled train function (Keras' "
                 "steps_per_execution), a divisor of --log_every. Default: the script's "
                 "measured best.", lower_bound=1)
    log_dir_help = ("Directory of the TensorBoard logs, the history (history-*.csv, "
                    "history.json) and the learning-curve PNG. Default: runs/<script name>.")
    _define_once("log_dir", flags.DEFINE_string, None, log_dir_help)
    # absl.logging defines --log_dir too (for log files it writes only when asked):
    # the flag is shared, with this help, and listed by the scripts' --help.
    FLAGS["log_dir"].help = log_dir_help
    flags.declare_key_flag("log_dir")
    _define_once("checkpoint_dir", flags.DEFINE_string, None,
                 "Directory of the checkpoints and of the backup to resume from. "
                 "Default: <log_dir>/checkpoints.")
    _define_once("resume", flags.DEFINE_boolean, True,
                 "Resume from the backup in <checkpoint_dir>/backup, if any (re-running "
                 "the same command continues the run). With --noresume training starts "
                 "from scratch and the old backup and history are deleted.")


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


def dilated_structure_from_flags(time_steps, default_hidden, default_dilations):
    """`(hidden_structs, dilations)` from --hidden_structs / --dilations, checked.

    Left unset, --dilations defaults to those of `default_dilations` below
    `time_steps` (the original refused dilation >= n_steps) and
    --hidden_structs to `default_hidden` units per layer.

    Raises:
        app.UsageError: a malformed list, lists of different lengths, or a
            dilation not below the sequence length.
    """
    dilations = (positive_int_list("dilations", FLAGS.dilations) if FLAGS.dilations
                 else [dilation for dilation in default_dilations if dilation < time_steps])
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


def prepare_run(seed):
    """Seeds Python, NumPy and TensorFlow (the weights) and quiets TF's INFO logs."""
    import keras  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    tf.get_logger().setLevel("WARNING")
    keras.utils.set_random_seed(seed)


# ---------------------------------------------------------------------------- data

class DatasetUnavailableError(RuntimeError):
    """The requested dataset cannot be loaded (not downloaded, no network...)."""


@dataclasses.dataclass(frozen=True)
class PixelSequences:
    """Train / validation / test splits, each `(inputs [N, T, 1] float32, labels [N] int32)`."""
    name: str
    train: tuple
    validation: tuple
    test: tuple
    num_classes: int = 10

    @property
    def time_steps(self):
        return self.train[0].shape[1]

    def map_inputs(self, function):
        """The same data with `function` applied to every split's inputs."""
        return dataclasses.replace(self, **{
            split: (function(getattr(self, split)[0]), getattr(self, split)[1])
            for split in ("train", "validation", "test")})


def _as_sequences(images, labels):
    """Images `[N, ...]` with values in [0, 1] -> one pixel per step `[N, T, 1]`."""
    return (np.asarray(images, np.float32).reshape(len(images), -1, 1),
            np.asarray(labels, np.int32))


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
        "digits", train=_as_sequences(images[:validation_start], labels[:validation_start]),
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
    """Loads `dataset` ("mnist" or "digits"), pixels in [0, 1], optionally permuted.

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
    """`(data, permute)` from the data flags; exits with a clear message if missing."""
    permute = flag_or("permute", permute_default)
    try:
        data = load_pixel_sequences(FLAGS.dataset, FLAGS.data_dir, FLAGS.download, permute)
    except DatasetUnavailableError as error:
        raise SystemExit(f"Error: {error}") from None
    logging.info("%s: %d train / %d validation / %d test sequences of %d steps%s.",
                 data.name, len(data.train[1]), len(data.validation[1]), len(data.test[1]),
                 data.time_steps, " (permuted)" if permute else "")
    return data, permute


def training_batches(split, batch_size, seed, start_step=0):
    """The training batches as a `tf.data` pipeline, starting after step `start_step`.

    Examples are visited epoch after epoch, epoch e in the random order
    `stateless_shuffle(seed=[seed, e])`, batches running across epoch
    boundaries (the originals' `shuffle().repeat().batch()`). Batch s is a
    function of s alone, so starting at the epoch and offset of the first
    `start_step` batches resumes the stream exactly.
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    inputs, labels = (tf.constant(array) for array in split)
    size = len(split[1])
    first_epoch, offset = divmod(start_step * batch_size, size)
    indices = (tf.data.Dataset.counter(first_epoch)
               .map(lambda epoch: tf.random.experimental.stateless_shuffle(
                   tf.range(size, dtype=tf.int64), seed=tf.stack([tf.cast(seed, tf.int64),
                                                                  epoch])))
               .unbatch()
               .skip(offset)
               .batch(batch_size))
    return (indices.map(lambda rows: (tf.gather(inputs, rows), tf.gather(labels, rows)),
                        num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE))


def evaluation_batches(split, batch_size=500):
    """A labelled split as a batched `tf.data` pipeline, in order."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    return tf.data.Dataset.from_tensor_slices(split).batch(batch_size).prefetch(2)
