"""The example scripts: every `main()` with tiny flags (offline, seconds), their outputs
(progress lines, JSON line, TensorBoard, checkpoints, PNG), the default batch-norm
evaluation, their flag errors, and their tf.data pipelines against their definitions.

`run_script` (used by the other test_examples_* modules too) runs a script's
`main()` in-process the way absl's `app.run` would, and returns its stdout
lines and the final JSON object.
"""
import contextlib
import glob
import io
import json
import os
import subprocess
import sys
import warnings

from absl import app
from absl import flags
import keras
import numpy as np
import pytest

from examples import addition_rnn
from examples import common
from examples import copy_memory
from examples import permuted_mnist_drnn
from examples import sequential_mnist
from examples import training

FLAGS = flags.FLAGS
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_script(module, **flag_values):
    """Parses `flag_values` as command-line flags, runs `module.main`, returns its output.

    Returns:
        `(lines, result)`: the stdout lines before the last one, and the last
        line parsed as JSON (the scripts' contract: it is one JSON object).
    """
    argv = [module.__name__] + [f"--{name}={value}" for name, value in flag_values.items()]
    output = io.StringIO()
    FLAGS.unparse_flags()
    try:
        FLAGS(argv)
        with contextlib.redirect_stdout(output):
            module.main(argv[:1])
    finally:
        FLAGS.unparse_flags()
    lines = output.getvalue().strip().splitlines()
    return lines[:-1], json.loads(lines[-1])


def script_environment():
    """Environment for running a script in a subprocess: quiet TF, the repo importable."""
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": REPO_ROOT}


def tensorboard_tags(log_dir, split):
    """The scalar tags written to `log_dir/split`'s event files."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    tags = set()
    for path in glob.glob(os.path.join(log_dir, split, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(value.tag for value in event.summary.value)
    return tags


# ------------------------------------------------------------------ every main()

def test_addition_rnn_runs_and_reports(tmp_path):
    log_dir = tmp_path / "adding"
    lines, result = run_script(addition_rnn, time_steps=10, units=8, max_steps=20,
                               log_every=10, checkpoint_every=10, log_dir=log_dir)
    # The original's progress line, one per window (of 10 steps here).
    assert [line.split(" MSE ")[0] for line in lines] == ["Step [x10] 1", "Step [x10] 2"]
    assert result["steps"] == 20 and result["task"] == "adding"
    assert float(lines[-1].split(" MSE ")[1]) == pytest.approx(result["train_mse"], abs=1e-6)
    assert 0 < result["mse"] < 10 and result["stop_reason"] == "max_steps"
    assert os.path.getsize(log_dir / "learning_curve.png") > 1000
    history = json.loads((log_dir / "history.json").read_text())
    assert [record["step"] for record in history] == [10, 20]
    assert "epoch_loss" in tensorboard_tags(str(log_dir), "train")
    # ModelCheckpoint every 10 steps (one window each), BackupAndRestore's backup.
    assert sorted(os.listdir(log_dir / "checkpoints")) == [
        "backup", "ckpt-0001.weights.h5", "ckpt-0002.weights.h5"]
    assert {"latest.weights.h5", "training_metadata.json"} <= set(
        os.listdir(log_dir / "checkpoints" / "backup"))


def test_addition_rnn_lstm_baseline_runs(tmp_path):
    _, result = run_script(addition_rnn, cell="lstm", time_steps=8, units=8,
                           max_steps=5, log_every=5, checkpoint_every=5, log_dir=tmp_path)
    assert result["cell"] == "lstm" and result["steps"] == 5


def test_addition_rnn_long_sequence_initialisation():
    # The IndRNN authors' advice for T = 5000: u ~ uniform(0, max), the last layer's near 1.
    model = addition_rnn.build_model(5000, units=64, recurrent_init="long")
    bound = 2 ** (1 / 5000)
    first, last = (model.get_layer(name).cell.recurrent_kernel.numpy()
                   for name in ("indrnn_1", "indrnn_2"))
    assert 0 <= first.min() and first.max() <= bound and first.min() < 0.5
    assert 0.5 ** (1 / 5000) <= last.min() and last.max() <= bound


def test_addition_rnn_stops_at_the_target(tmp_path):
    # A target above the chance MSE (~0.167, ~0.5 at the start) stops at the first window.
    flag_values = dict(time_steps=10, units=8, max_steps=100, log_every=5, target_mse=5.0,
                       checkpoint_every=5, log_dir=tmp_path)
    lines, result = run_script(addition_rnn, **flag_values)
    assert len(lines) == 1 and result["steps"] == 5 and result["stop_reason"] == "target"
    # Run again: the backup already met the target, so nothing more is trained.
    lines, again = run_script(addition_rnn, **flag_values)
    assert lines == [] and again["steps"] == 5 and again["resumed_from"] == 5
    assert again["stop_reason"] == "target" and again["mse"] == result["mse"]


def test_sequential_mnist_runs_on_digits(tmp_path):
    lines, result = run_script(sequential_mnist, dataset="digits", num_layers=2,
                               units=8, max_steps=6, log_every=3, eval_every=6,
                               checkpoint_every=6, log_dir=tmp_path)
    assert lines[0].startswith("Step 3 Loss ") and " Acc " in lines[0]
    assert lines[-1].startswith("Step 6 valid_loss ")
    assert result["steps"] == 6 and result["time_steps"] == 64 and not result["permute"]
    assert 0 <= result["test_accuracy"] <= 1 and result["dataset"] == "digits"
    assert result["bn_recalibration_batches"] == 1
    assert {"epoch_loss", "epoch_accuracy"} <= tensorboard_tags(str(tmp_path), "validation")


def test_sequential_mnist_recomputes_batch_norm_statistics_by_default(tmp_path, monkeypatch):
    # The original's evaluation: before every validation and at the end, the
    # population statistics of 500 training sequences (not the moving averages).
    made = []

    def spy(*args):
        callback = original(*args)
        made.append(callback)
        return callback
    original = sequential_mnist.batch_norm_statistics
    monkeypatch.setattr(sequential_mnist, "batch_norm_statistics", spy)
    run_script(sequential_mnist, dataset="digits", num_layers=2, units=8, max_steps=8,
               log_every=2, eval_every=4, checkpoint_every=8, log_dir=tmp_path / "a")
    (callback,) = made
    import ind_rnn  # pylint: disable=import-outside-toplevel
    assert isinstance(callback, ind_rnn.BatchNormStatistics)
    assert callback.calls == 2 + 1  # validations at steps 4 and 8, then the end of fit
    assert sum(int(batch.shape[0]) for batch in callback.data) == 500
    assert set(callback.counts.values()) == {500 * 64}  # every step of 500 sequences
    # --bn_recalibration_batches=0: the moving averages, no re-estimation.
    made.clear()
    _, result = run_script(sequential_mnist, dataset="digits", num_layers=2, units=8,
                           max_steps=2, log_every=2, checkpoint_every=2,
                           bn_recalibration_batches=0, log_dir=tmp_path / "b")
    assert made == [] and result["bn_recalibration_batches"] == 0


def test_sequential_mnist_runs_a_deep_variant_on_permuted_digits(tmp_path):
    _, result = run_script(sequential_mnist, dataset="digits", model="residual",
                           num_layers=3, units=8, max_steps=2, log_every=1, permute=True,
                           eval_every=2, checkpoint_every=2, log_dir=tmp_path)
    assert result["model"] == "residual" and result["permute"] and result["steps"] == 2


def test_permuted_mnist_drnn_runs_on_digits(tmp_path):
    lines, result = run_script(permuted_mnist_drnn, dataset="digits",
                               hidden_structs="4,4", dilations="1,2", max_steps=4,
                               log_every=2, eval_every=4, checkpoint_every=4,
                               log_dir=tmp_path)
    # The demo evaluates validation and test together.
    assert lines[-2].startswith("Step 4 valid_loss ") and lines[-1].startswith("Step 4 test_")
    assert result["permute"] and result["steps"] == 4 and 0 <= result["test_accuracy"] <= 1
    # TF1 BasicRNNCell kernel [in + H, H] and bias [H] per layer, then 4x10 + 10 logits.
    assert result["parameters"] == (1 * 4 + 4 * 4 + 4) + (4 * 4 + 4 * 4 + 4) + (4 * 10 + 10)


def structure_with_flags(time_steps, default_hidden, default_dilations, **flag_values):
    """`common.dilated_structure_from_flags` under the given flags."""
    FLAGS.unparse_flags()
    FLAGS(["x"] + [f"--{name}={value}" for name, value in flag_values.items()])
    try:
        return common.dilated_structure_from_flags(time_steps, default_hidden,
                                                   default_dilations)
    finally:
        FLAGS.unparse_flags()


def test_drnn_default_structure_keeps_the_dilations_below_the_length():
    # The demo's 20 units and dilations 1..256: all of them for MNIST's 784 steps,
    # those below 64 for the digits (the original refused dilation >= n_steps).
    defaults = (permuted_mnist_drnn.HIDDEN_UNITS, permuted_mnist_drnn.DILATIONS)
    assert structure_with_flags(784, *defaults) == ([20] * 9, [1, 2, 4, 8, 16, 32, 64, 128, 256])
    assert structure_with_flags(64, *defaults) == ([20] * 6, [1, 2, 4, 8, 16, 32])
    assert structure_with_flags(64, *defaults, dilations="2,4") == ([20, 20], [2, 4])


def test_copy_memory_runs(tmp_path):
    lines, result = run_script(copy_memory, time_steps=6, hidden_structs="5,5",
                               dilations="1,4", max_steps=4, log_every=2, eval_every=4,
                               checkpoint_every=4, log_dir=tmp_path)
    assert lines[0].startswith("Step 2 loss ") and lines[-1].startswith("Step 4 valid_loss")
    assert result["steps"] == 4 and 0 <= result["accuracy"] <= 1 and result["loss"] > 0
    assert result["guess_loss"] == pytest.approx(np.log(8))


def test_copy_memory_architectures_are_the_papers():
    length = 500 + 20
    assert structure_with_flags(length, *copy_memory.ARCHITECTURES["dilated"]) == (
        [10] * 9, [1, 2, 4, 8, 16, 32, 64, 128, 256])
    assert structure_with_flags(length, *copy_memory.ARCHITECTURES["stacked"]) == (
        [10] * 9, [1] * 9)
    assert structure_with_flags(length, *copy_memory.ARCHITECTURES["single"]) == ([256], [1])


TINY_RUNS = {
    addition_rnn: dict(time_steps=10, units=8, max_steps=4, log_every=2, checkpoint_every=2),
    sequential_mnist: dict(dataset="digits", num_layers=2, units=8, max_steps=4, log_every=2,
                           eval_every=4, checkpoint_every=4),
    permuted_mnist_drnn: dict(dataset="digits", hidden_structs="4,4", dilations="1,2",
                              max_steps=4, log_every=2, eval_every=4, checkpoint_every=4),
    copy_memory: dict(time_steps=6, hidden_structs="5,5", dilations="1,4", max_steps=4,
                      log_every=2, eval_every=4, checkpoint_every=4),
}


def test_adding_runs_a_window_per_compiled_call_only_for_short_sequences(tmp_path, monkeypatch):
    assert addition_rnn.steps_per_execution(100) == 100
    assert addition_rnn.steps_per_execution(1000) == 10
    # The default is cut to a divisor of --log_every (2 here): one window a call.
    calls = []
    compile_model = keras.Model.compile

    def recorded_compile(self, *args, **kwargs):
        calls.append(kwargs.get("steps_per_execution"))
        return compile_model(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "compile", recorded_compile)
    run_script(addition_rnn, log_dir=tmp_path, **TINY_RUNS[addition_rnn])
    assert calls == [2]  # gcd(100, --log_every=2)


@pytest.mark.parametrize("module", list(TINY_RUNS), ids=lambda module: module.__name__)
def test_fit_traces_the_train_step_once_and_does_not_warn(module, tmp_path, monkeypatch):
    # Keras makes the optimizer's slots and the metrics' variables inside the first
    # trace, then traces again; `training.build_before_fit` makes them first. And
    # fit's default shuffle=True draws a warning for a tf.data pipeline.
    traces = []
    train_step = keras.Model.train_step

    def counted_train_step(self, *args, **kwargs):
        traces.append(type(self).__name__)
        return train_step(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "train_step", counted_train_step)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, result = run_script(module, log_dir=tmp_path, **TINY_RUNS[module])
    assert result["steps"] == 4
    assert len(traces) == 1, traces
    assert not [str(w.message) for w in caught if "shuffle" in str(w.message)]


# ---------------------------------------------------------------- errors / flags

def test_missing_mnist_names_both_options_without_a_traceback(tmp_path):
    completed = subprocess.run(
        [sys.executable, "examples/sequential_mnist.py", "--dataset=mnist",
         f"--data_dir={tmp_path}", "--nodownload", f"--log_dir={tmp_path}"],
        cwd=REPO_ROOT, env=script_environment(), capture_output=True, text=True, timeout=300,
        check=False)
    assert completed.returncode != 0
    assert "Traceback" not in completed.stderr
    assert "--dataset=digits" in completed.stderr and "--download" in completed.stderr
    assert completed.stdout.strip() == ""  # no JSON line for a run that did not happen


def test_missing_mnist_in_process_exits_with_the_message(tmp_path):
    FLAGS.unparse_flags()
    FLAGS(["x", "--dataset=mnist", f"--data_dir={tmp_path}", "--nodownload"])
    try:
        with pytest.raises(SystemExit, match="--dataset=digits"):
            permuted_mnist_drnn.main(["x"])
    finally:
        FLAGS.unparse_flags()


@pytest.mark.parametrize("argv, words", [
    (["--cell=gru"], ["cell", "indrnn", "lstm"]),
    (["--dataset=cifar"], ["dataset", "mnist", "digits"]),
    (["--max_steps=0"], ["max_steps", "positive"]),
    (["--architecture=wide"], ["architecture", "dilated"]),
    (["--model=conv"], ["model", "plain", "residual", "dense"]),
])
def test_bad_flag_values_name_the_flag_and_the_allowed_values(argv, words):
    FLAGS.unparse_flags()
    with pytest.raises(flags.Error) as error:
        FLAGS(["x"] + argv)
    FLAGS.unparse_flags()
    for word in words:
        assert word in str(error.value)


@pytest.mark.parametrize("values, words", [
    ({"dilations": "1,x"}, ["--dilations", "positive integers"]),
    ({"dilations": "1,0"}, ["--dilations", "positive integers"]),
    ({"dilations": "1,2", "hidden_structs": "4"}, ["--hidden_structs", "--dilations", "2"]),
    ({"dilations": "1,64"}, ["--dilations", "below the sequence length 64", "64"]),
])
def test_bad_dilated_structures_are_usage_errors(tmp_path, values, words):
    FLAGS.unparse_flags()
    FLAGS(["x", "--dataset=digits", f"--log_dir={tmp_path}"]
          + [f"--{name}={value}" for name, value in values.items()])
    try:
        with pytest.raises(app.UsageError) as error:
            permuted_mnist_drnn.main(["x"])
    finally:
        FLAGS.unparse_flags()
    for word in words:
        assert word in str(error.value)


def test_an_even_residual_depth_is_a_usage_error(tmp_path):
    FLAGS.unparse_flags()
    FLAGS(["x", "--dataset=digits", "--model=residual", "--num_layers=4",
           f"--log_dir={tmp_path}"])
    try:
        with pytest.raises(app.UsageError, match="--num_layers=4"):
            sequential_mnist.main(["x"])
    finally:
        FLAGS.unparse_flags()


@pytest.mark.parametrize("values, words", [
    ({"max_steps": 30, "log_every": 20}, ["--max_steps=30", "multiple", "--log_every=20"]),
    ({"checkpoint_every": 15}, ["--checkpoint_every=15", "--log_every=10"]),
    ({"steps_per_execution": 3}, ["--steps_per_execution=3", "divide", "--log_every=10"]),
])
def test_schedules_off_the_logging_window_are_usage_errors(tmp_path, values, words):
    values = {"log_every": 10, "max_steps": 20, "checkpoint_every": 10, **values}
    FLAGS.unparse_flags()
    FLAGS(["x", "--time_steps=10", "--units=4", f"--log_dir={tmp_path}"]
          + [f"--{name}={value}" for name, value in values.items()])
    try:
        with pytest.raises(app.UsageError) as error:
            addition_rnn.main(["x"])
    finally:
        FLAGS.unparse_flags()
    for word in words:
        assert word in str(error.value)


# ------------------------------------------------------------ data and helpers

def _key(seed, step):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    return tf.constant([seed, step], tf.int64)


def test_adding_problem_batch_matches_its_definition():
    inputs, targets = (tensor.numpy() for tensor in
                       addition_rnn.adding_problem_batch(_key(3, 1), 64, 9))
    assert inputs.shape == (64, 9, 2) and targets.shape == (64, 1)
    assert inputs.dtype == np.float32 and targets.dtype == np.float32
    for values, markers, target in zip(inputs[..., 0], inputs[..., 1], targets[:, 0]):
        marked = [step for step in range(9) if markers[step] == 1.0]
        assert len(marked) == 2 and sum(markers) == 2.0
        assert marked[0] < 4 <= marked[1]  # one in each half (half = 9 // 2)
        assert target == pytest.approx(values[marked[0]] + values[marked[1]])
        assert 0 <= values.min() and values.max() < 1


def test_training_batches_depend_only_on_the_step():
    # The pipeline resumed after step 3 yields batch 4 of the uninterrupted stream.
    stream = [inputs.numpy() for inputs, _ in
              addition_rnn.training_batches(7, 4, 10).take(5)]
    resumed = next(iter(addition_rnn.training_batches(7, 4, 10, start_step=3)))[0].numpy()
    np.testing.assert_array_equal(resumed, stream[3])
    assert not np.array_equal(stream[3], stream[4])
    # The held-out set uses key 0, which no training batch uses.
    np.testing.assert_array_equal(addition_rnn.held_out_batch(7, 10, size=4)[0].numpy(),
                                  addition_rnn.adding_problem_batch(_key(7, 0), 4, 10)[0])


def test_copy_memory_batch_matches_its_definition():
    inputs, targets = (tensor.numpy() for tensor in
                       copy_memory.copy_memory_batch(_key(0, 1), 5, 7))
    assert inputs.shape == (5, 27, 10) and targets.shape == (5, 10)
    for one_hot, recall in zip(inputs, targets):
        symbols = one_hot.argmax(axis=-1)
        expected = list(recall) + [8] * 6 + [9] + [8] * 10  # symbols, T-1 blanks, marker, 10
        assert symbols.tolist() == expected
        assert one_hot.sum() == 27 and recall.max() <= 7


def test_classification_batches_visit_every_example_once_per_epoch():
    labels = np.arange(10, dtype=np.int32)
    split = (labels.astype(np.float32).reshape(10, 1, 1), labels)
    stream = np.concatenate([batch_labels.numpy() for _, batch_labels in
                             common.training_batches(split, 4, seed=1).take(10)])
    epochs = stream.reshape(4, 10)  # 40 positions = 4 epochs
    for epoch in epochs:
        assert sorted(epoch) == list(range(10))
    assert not np.array_equal(epochs[0], epochs[1])  # reshuffled every epoch
    # Resumed after step 2, batch 3 runs across the first epoch boundary, as before.
    _, resumed = next(iter(common.training_batches(split, 4, seed=1, start_step=2)))
    np.testing.assert_array_equal(resumed.numpy(), stream[8:12])


def test_digits_are_64_step_sequences_of_the_sklearn_images():
    from sklearn import datasets  # pylint: disable=import-outside-toplevel
    digits = datasets.load_digits()
    data = common.load_digits()
    splits = (data.train, data.validation, data.test)
    assert [len(labels) for _, labels in splits] == [1257, 180, 360]
    assert data.time_steps == 64 and data.train[0].shape[2] == 1
    everything = np.concatenate([inputs for inputs, _ in splits])
    labels = np.concatenate([labels for _, labels in splits])
    # Same images (row-major pixels / 16) and labels, each exactly once.
    expected = digits.images.reshape(1797, 64) / 16.0
    order = np.lexsort(everything[:, :, 0].T)
    expected_order = np.lexsort(expected.T)
    np.testing.assert_allclose(everything[order, :, 0], expected[expected_order], atol=1e-7)
    np.testing.assert_array_equal(np.sort(labels), np.sort(digits.target))


def test_permutation_is_the_demos_and_the_same_for_every_split():
    order = np.random.RandomState(92916).permutation(64)
    plain = common.load_pixel_sequences("digits")
    permuted = common.load_pixel_sequences("digits", permute=True)
    for name in ("train", "validation", "test"):
        np.testing.assert_array_equal(getattr(permuted, name)[0],
                                      getattr(plain, name)[0][:, order])
        np.testing.assert_array_equal(getattr(permuted, name)[1], getattr(plain, name)[1])


def test_learning_curve_has_a_panel_per_metric(tmp_path):
    history = [{"step": 10, "loss": 1.0, "accuracy": 0.5, "val_loss": 1.2,
                "val_accuracy": 0.4}, {"step": 20, "loss": 0.5, "accuracy": 0.8}]
    path = training.plot_learning_curves(history, str(tmp_path / "curve.png"), "title")
    import matplotlib.image  # pylint: disable=import-outside-toplevel
    height, width = matplotlib.image.imread(path).shape[:2]
    assert width > height  # two panels side by side


@pytest.mark.parametrize("module, own", [
    (addition_rnn, {"cell", "target_mse", "recurrent_init", "time_steps", "units"}),
    (sequential_mnist, {"model", "bn_recalibration_batches", "dataset", "target_accuracy"}),
    (permuted_mnist_drnn, {"cell_type", "dilations", "permute"}),
    (copy_memory, {"architecture", "time_steps", "hidden_structs"}),
])
def test_help_documents_every_flag_of_a_script(module, own):
    # --help shows the script's key flags: its own and the shared ones it adopts.
    key_flags = {flag.name: flag for flag in FLAGS.get_key_flags_for_module(module)}
    shared = {"max_steps", "batch_size", "learning_rate", "seed", "log_every", "eval_every",
              "checkpoint_every", "steps_per_execution", "log_dir", "checkpoint_dir", "resume"}
    assert shared | own <= set(key_flags)
    for flag in key_flags.values():
        assert len(flag.help) > 20, flag.name
