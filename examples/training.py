"""A run of an example script: `model.fit`'s schedule, callbacks, resume and outputs.

One Keras "epoch" of these scripts is one logging window of `--log_every`
steps: its progress line, History entry, TensorBoard point and CSV row, and
the `BackupAndRestore` backup, all come at its end. `plan_run` reads the
flags (see `examples.common`) into a `RunPlan`; `RunPlan.callbacks` gives
Keras' own callbacks (`TensorBoard`, `ModelCheckpoint`, `CSVLogger`,
`BackupAndRestore`) after the script's own (`StopAtTarget`, progress lines).
"""
import dataclasses
import glob
import json
import math
import os
import shutil
import sys

from absl import app
from absl import flags
from absl import logging
import keras

from examples.common import DEFAULT_LOG_ROOT, flag_or

FLAGS = flags.FLAGS


class StopAtTarget(keras.callbacks.Callback):
    """Stops training at the end of the first epoch whose `monitor` meets the target.

    Args:
        monitor: the epoch log to watch, e.g. "mse" or "val_accuracy" (epochs
            without it, such as those without validation, are skipped).
        target: the threshold (None: never stop).
        mode: "below" (stop when the value < target) or "above" (> target).
    """

    def __init__(self, monitor, target, mode):
        super().__init__()
        if mode not in ("below", "above"):
            raise ValueError(f"mode: expected 'below' or 'above', got {mode!r}.")
        self.monitor, self.target, self.mode = monitor, target, mode

    def met(self, logs):
        """Whether epoch logs (or a history record) `logs` meet the target."""
        value = (logs or {}).get(self.monitor)
        if value is None or self.target is None:
            return False
        return value < self.target if self.mode == "below" else value > self.target

    def on_epoch_end(self, epoch, logs=None):
        if self.met(logs):
            self.model.stop_training = True


@dataclasses.dataclass
class RunPlan:
    """A run's schedule, directories and resume state, from the flags.

    Attributes:
        log_every: steps per Keras epoch (one logging window).
        epochs: `max_steps / log_every`, the `epochs` argument of `fit`.
        eval_every_epochs: `validation_freq` (None: no validation).
        checkpoint_every: steps between `ModelCheckpoint` saves.
        steps_per_execution: for `model.compile`.
        log_dir, checkpoint_dir, backup_dir: where things go.
        initial_epoch: epochs already done by the run resumed (0: fresh).
        history: the epoch records of the run so far (the history-*.csv rows).
    """
    log_every: int
    epochs: int
    eval_every_epochs: int
    checkpoint_every: int
    steps_per_execution: int
    log_dir: str
    checkpoint_dir: str
    backup_dir: str
    initial_epoch: int = 0
    history: list = dataclasses.field(default_factory=list)

    @property
    def initial_step(self):
        return self.initial_epoch * self.log_every

    @property
    def history_csv(self):
        """This invocation's CSV log (earlier invocations wrote their own)."""
        return os.path.join(self.log_dir, f"history-{self.initial_epoch:05d}.csv")

    def callbacks(self, extra=()):
        """`extra` callbacks, then TensorBoard, ModelCheckpoint, CSVLogger, BackupAndRestore.

        The extra ones (stop, progress lines, evaluations) run first so that
        what they add to the epoch logs is logged; the CSV row is written
        before the backup, so a kill between the two repeats a row (dropped
        when reading) rather than losing one.
        """
        return list(extra) + [
            keras.callbacks.TensorBoard(self.log_dir, write_graph=False, profile_batch=0),
            keras.callbacks.ModelCheckpoint(
                os.path.join(self.checkpoint_dir, "ckpt-{epoch:04d}.weights.h5"),
                save_weights_only=True, save_freq=self.checkpoint_every),
            keras.callbacks.CSVLogger(self.history_csv),
            # save_freq="epoch": Keras 3 restores only the epoch of a backup (the
            # batch it writes is ignored), so backups inside an epoch would
            # repeat that epoch's first steps after a restart.
            keras.callbacks.BackupAndRestore(self.backup_dir, save_freq="epoch",
                                             delete_checkpoint=False),
            _RestoredStepCheck(self),
        ]

    def step_of(self, epoch):
        """The step count at the end of (0-based) `epoch`."""
        return (epoch + 1) * self.log_every


class _RestoredStepCheck(keras.callbacks.Callback):
    """After BackupAndRestore: the optimizer's step must be where the data starts."""

    def __init__(self, plan):
        super().__init__()
        self.plan = plan

    def on_train_begin(self, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        if step != self.plan.initial_step:
            raise SystemExit(
                f"Error: the backup in {self.plan.backup_dir} is inconsistent: its weights are "
                f"at step {step}, its metadata at step {self.plan.initial_step} (was the run "
                "killed while it was being written?). Re-run with --noresume, or load a "
                f"checkpoint from {self.plan.checkpoint_dir}.")


def _multiple(name, value, log_every):
    if value % log_every:
        raise app.UsageError(f"--{name}={value} must be a multiple of --log_every={log_every}.")
    return value // log_every


def plan_run(script_name, signature, *, max_steps, checkpoint_every=1000, eval_every=None,
             steps_per_execution=1):
    """The `RunPlan` of the flags, after the resume checks.

    With --resume and a backup in <checkpoint_dir>/backup, the run continues
    where the backup left off (BackupAndRestore restores the weights and the
    optimizer at the start of `fit`; the data pipelines start at
    `plan.initial_step`). A backup of another set-up (a different
    `signature`) is refused, naming what differs. With --noresume the backup
    and the history are deleted first.

    Raises:
        app.UsageError: step counts that are not multiples of --log_every, or a
            --steps_per_execution that does not divide it.
        SystemExit: the backup belongs to another set-up.
    """
    log_every = FLAGS.log_every
    log_dir = FLAGS.log_dir or os.path.join(DEFAULT_LOG_ROOT, script_name)
    checkpoint_dir = FLAGS.checkpoint_dir or os.path.join(log_dir, "checkpoints")
    eval_every = flag_or("eval_every", eval_every)
    execution = flag_or("steps_per_execution", math.gcd(steps_per_execution, log_every))
    if log_every % execution:
        raise app.UsageError(f"--steps_per_execution={execution} must divide "
                             f"--log_every={log_every}.")
    plan = RunPlan(
        log_every=log_every,
        epochs=_multiple("max_steps", flag_or("max_steps", max_steps), log_every),
        eval_every_epochs=eval_every and _multiple("eval_every", eval_every, log_every),
        checkpoint_every=_multiple("checkpoint_every",
                                   flag_or("checkpoint_every", checkpoint_every),
                                   log_every) * log_every,
        steps_per_execution=execution, log_dir=log_dir, checkpoint_dir=checkpoint_dir,
        backup_dir=os.path.join(checkpoint_dir, "backup"))
    signature = {**json.loads(json.dumps(signature)), "log_every": log_every}
    signature_path = os.path.join(plan.backup_dir, "signature.json")
    metadata_path = os.path.join(plan.backup_dir, "training_metadata.json")
    if FLAGS.resume and os.path.exists(metadata_path) and os.path.exists(signature_path):
        with open(signature_path, encoding="utf-8") as file:
            saved = json.load(file)
        if saved != signature:
            differences = ", ".join(
                f"{key}: {saved.get(key)!r} there, {signature.get(key)!r} here"
                for key in sorted(set(saved) | set(signature))
                if saved.get(key) != signature.get(key))
            raise SystemExit(
                f"Error: Cannot resume from {plan.backup_dir}: it belongs to a different run "
                f"({differences}). Use the flags of that run, another --checkpoint_dir, or "
                "--noresume to start again from scratch.")
        with open(metadata_path, encoding="utf-8") as file:  # what BackupAndRestore restores
            plan.initial_epoch = json.load(file)["epoch"]
    else:  # a fresh start: no old backup, no old history
        shutil.rmtree(plan.backup_dir, ignore_errors=True)
    plan.history = _read_history(plan.log_dir, plan.initial_epoch)
    os.makedirs(plan.backup_dir, exist_ok=True)
    with open(signature_path, "w", encoding="utf-8") as file:
        json.dump(signature, file)
    if plan.initial_epoch:
        logging.info("Resuming from %s at step %d.", plan.backup_dir, plan.initial_step)
    return plan


def _read_history(log_dir, epochs_done):
    """The `CSVLogger` rows of the first `epochs_done` epochs; deletes the other files.

    Each invocation writes its own history-<first epoch>.csv; a later file's
    row of an epoch replaces an earlier one's (an epoch redone after a kill).
    """
    import csv  # pylint: disable=import-outside-toplevel
    rows = {}
    for path in sorted(glob.glob(os.path.join(log_dir, "history-*.csv"))):
        if int(os.path.basename(path)[len("history-"):-len(".csv")]) >= epochs_done:
            os.remove(path)  # written after the backup resumed from (or a fresh start)
            continue
        with open(path, encoding="utf-8", newline="") as file:
            for row in csv.DictReader(file):
                if int(row["epoch"]) < epochs_done:
                    rows[int(row["epoch"])] = {
                        key: int(value) if key == "epoch" else _number(value)
                        for key, value in row.items()}
    return [rows[epoch] for epoch in sorted(rows)]


def _number(text):
    try:
        value = float(text)
    except (TypeError, ValueError):  # "NA": not measured in that epoch
        return None
    return None if math.isnan(value) else value


def full_history(plan):
    """Every epoch record of the run, this invocation's and the earlier ones'.

    Read back from the CSV logs (after `fit`: Keras' History holds only this
    invocation, and its lists skip the epochs without validation).

    Returns:
        A list of dicts with "step" and the epoch logs ("loss", "val_accuracy"...).
    """
    return read_history(plan.log_dir, plan.log_every)


def read_history(log_dir, log_every):
    """The epoch records in `log_dir`'s CSV logs, e.g. of a run still going or killed.

    Returns:
        A list of dicts with "step" and the epoch logs ("loss", "val_accuracy"...).
    """
    return [{"step": (row.pop("epoch") + 1) * log_every,
             **{key: value for key, value in row.items() if value is not None}}
            for row in _read_history(log_dir, sys.maxsize)]


def stop_reason(records, stop):
    """ "target" if the last record met `stop`'s target, else "max_steps"."""
    return "target" if records and stop.met(records[-1]) else "max_steps"


def epochs_to_run(plan, stop):
    """`fit`'s `epochs`: nothing more if the records so far already met the target."""
    if plan.history and stop.met(plan.history[-1]):
        return plan.initial_epoch
    return plan.epochs


def progress_verbosity():
    """Keras' progress bar on interactive terminals; in log files the lines are enough."""
    return 1 if sys.stdout.isatty() else 0


def build_before_fit(model, batches):
    """Creates the optimizer's slots and the compiled metrics' variables before `fit`.

    Keras creates both inside the first trace of its train step, and a trace
    that creates variables is traced again: two traces of the whole step at
    every start. Built here (the metrics from one zero input of the batches'
    shape, then reset), `fit` traces its step once.

    Args:
        model: a compiled `keras.Model`.
        batches: the `tf.data.Dataset` of `(inputs, targets)` given to `fit`;
            only its `element_spec` is read.
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    model.optimizer.build(model.trainable_variables)

    def one_example(spec):  # zeros of one batch row's shape (an unknown length: 1)
        return tf.zeros([1] + [size or 1 for size in spec.shape[1:].as_list()], spec.dtype)

    inputs_spec, targets_spec = batches.element_spec[:2]
    inputs = tf.nest.map_structure(one_example, inputs_spec)
    model.compute_metrics(inputs, tf.nest.map_structure(one_example, targets_spec),
                          model(inputs, training=False))
    model.reset_metrics()


# ------------------------------------------------------------------------ outputs

def plot_learning_curves(records, path, title):
    """Writes a PNG with one panel per metric, training and validation (`val_`) lines."""
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")  # no display needed
    from matplotlib import pyplot  # pylint: disable=import-outside-toplevel
    names = sorted({key.split("_", 1)[1] if key.startswith(("val_", "test_")) else key
                    for record in records for key in record} - {"step", "learning_rate"})
    if not names:
        logging.warning("No records yet: no learning curve written.")
        return None
    figure, axes = pyplot.subplots(1, len(names), squeeze=False, figsize=(4.5 * len(names), 3.5))
    for axis, name in zip(axes[0], names):
        for prefix, label in (("", "train"), ("val_", "validation"), ("test_", "test")):
            points = [(record["step"], record[prefix + name]) for record in records
                      if prefix + name in record]
            if points:
                axis.plot(*zip(*points), label=label, marker="." if len(points) < 30 else None)
        if "accuracy" not in name and all(value > 0 for record in records
                                          for key, value in record.items() if key != "step"):
            axis.set_yscale("log")  # losses span orders of magnitude
        axis.set(xlabel="step", ylabel=name)
        axis.grid(True, alpha=0.3)
        axis.legend()
    figure.suptitle(title)
    figure.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
    return path


def write_learning_curve(records, log_dir, title):
    """Writes `history.json` (every epoch record) and `learning_curve.png` into `log_dir`."""
    os.makedirs(log_dir, exist_ok=True)
    with open(os.path.join(log_dir, "history.json"), "w", encoding="utf-8") as file:
        json.dump(records, file)
    return plot_learning_curves(records, os.path.join(log_dir, "learning_curve.png"), title)


def emit_result(result):
    """Prints `result` as one JSON object: the last line of the script's output."""
    sys.stdout.flush()
    print(json.dumps(result, sort_keys=True), flush=True)
    return result


def model_signature(model, **settings):
    """What a backup must agree with to be resumed: variable shapes and `settings`."""
    # Shapes only: Keras numbers auto-named objects per process, so paths vary.
    return {"variable_shapes": [list(variable.shape) for variable in model.variables],
            **settings}


class ClassificationLines(keras.callbacks.Callback):
    """The originals' progress lines at the end of each epoch (logging window).

    "Step N Loss l Acc a" for the window's training mean, then "Step N
    valid_loss l valid_acc a" (and "test_...") when the epoch evaluated.
    """

    def __init__(self, plan):
        super().__init__()
        self.plan = plan

    def on_epoch_end(self, epoch, logs=None):
        logs, step = logs or {}, self.plan.step_of(epoch)
        print(f"Step {step} Loss {logs['loss']:.6f} Acc {logs['accuracy']:.4f}", flush=True)
        for prefix, name in (("val_", "valid"), ("test_", "test")):
            if f"{prefix}loss" in logs:
                print(f"Step {step} {name}_loss {logs[prefix + 'loss']:.6f} "
                      f"{name}_acc {logs[prefix + 'accuracy']:.4f}", flush=True)


class EvaluateSplit(keras.callbacks.Callback):
    """Evaluates `data` every `every` epochs and adds "<name>_<metric>" to the epoch logs.

    Placed before the logging callbacks, so they log the results too (the
    DilatedRNN demo evaluated its test set with every validation).
    """

    def __init__(self, name, data, every):
        super().__init__()
        self.name, self.data, self.every = name, data, every

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and self.every and (epoch + 1) % self.every == 0:
            results = self.model.evaluate(self.data, verbose=0, return_dict=True)
            logs.update({f"{self.name}_{key}": value for key, value in results.items()})


def classification_result(model, data, plan, records, stop, seconds):
    """The classifiers' JSON fields: final validation and test metrics, steps, ..."""
    from examples.common import evaluation_batches  # pylint: disable=import-outside-toplevel
    test = model.evaluate(evaluation_batches(data.test), verbose=0, return_dict=True)
    validation = model.evaluate(evaluation_batches(data.validation), verbose=0,
                                return_dict=True)
    steps = records[-1]["step"] if records else 0
    logging.info("Stopped after %d steps: test accuracy %.4f.", steps, test["accuracy"])
    return {"steps": steps, "test_accuracy": test["accuracy"], "test_loss": test["loss"],
            "validation_accuracy": validation["accuracy"],
            "validation_loss": validation["loss"], "dataset": data.name,
            "time_steps": int(data.time_steps), "stop_reason": stop_reason(records, stop),
            "resumed_from": plan.initial_step, "train_seconds": round(seconds, 1)}
