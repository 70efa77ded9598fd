"""Resuming the example scripts: a run stopped or killed after k steps and restarted
ends with the step count, progress lines and metrics of an uninterrupted run.

Keras' BackupAndRestore backs a run up at the end of every logging window (one
Keras epoch); a restarted run continues at the step of the last backup, on the
batches an uninterrupted run draws there (the pipelines start at that step).
"""
import os
import signal
import json
import subprocess
import sys
import time

import pytest

from examples import addition_rnn
from examples import sequential_mnist
from tests.test_examples import REPO_ROOT, run_script, script_environment

# A tiny adding problem: a step takes milliseconds.
ADDING = dict(time_steps=10, units=8, log_every=20, checkpoint_every=20, target_mse=0.0,
              seed=3)
ADDING_STEPS = 200


@pytest.fixture(scope="module")
def uninterrupted_adding_run(tmp_path_factory):
    """The reference: the tiny adding problem trained to ADDING_STEPS in one go."""
    log_dir = tmp_path_factory.mktemp("uninterrupted")
    return run_script(addition_rnn, max_steps=ADDING_STEPS, log_dir=log_dir, **ADDING)


def test_stopped_and_restarted_run_matches_an_uninterrupted_one(tmp_path,
                                                               uninterrupted_adding_run):
    # Stop at step 40, then go on to the end in the same directories.
    first_lines, first = run_script(addition_rnn, max_steps=40, log_dir=tmp_path, **ADDING)
    rest_lines, rest = run_script(addition_rnn, max_steps=ADDING_STEPS, log_dir=tmp_path,
                                  **ADDING)
    lines, expected = uninterrupted_adding_run
    assert first["steps"] == 40 and rest["resumed_from"] == 40
    assert rest["steps"] == expected["steps"] == ADDING_STEPS
    # Every window printed exactly once, with the same numbers (no step lost or repeated).
    assert first_lines + rest_lines == lines
    assert rest["mse"] == expected["mse"] and rest["train_mse"] == expected["train_mse"]
    # The history (PNG, history.json) covers the whole run.
    history = json.loads((tmp_path / "history.json").read_text())
    assert [record["step"] for record in history] == list(range(20, ADDING_STEPS + 1, 20))


def _backed_up_epoch(backup_dir):
    """The epochs done according to BackupAndRestore's metadata (0 if none yet)."""
    try:
        with open(os.path.join(backup_dir, "training_metadata.json"), encoding="utf-8") as file:
            return json.load(file)["epoch"]
    except (OSError, ValueError):
        return 0


def _wait_for_backup(backup_dir, process, timeout, epochs=2):
    """Waits until the backup holds at least `epochs` epochs (windows)."""
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        if _backed_up_epoch(backup_dir) >= epochs:
            return True
        time.sleep(0.02)
    return False


def test_killed_run_resumes_at_the_step_of_its_last_backup(tmp_path, uninterrupted_adding_run):
    log_dir = tmp_path / "killed"
    backup_dir = str(log_dir / "checkpoints" / "backup")
    command = [sys.executable, "examples/addition_rnn.py", f"--max_steps={ADDING_STEPS}",
               f"--log_dir={log_dir}"] + [f"--{name}={value}" for name, value in ADDING.items()]
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=script_environment(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        saved = _wait_for_backup(backup_dir, process, timeout=300)
    finally:
        process.send_signal(signal.SIGKILL)  # no chance to save anything more
        process.wait()
    assert saved, "the script wrote no backup"
    backed_up = _backed_up_epoch(backup_dir)

    lines, resumed = run_script(addition_rnn, max_steps=ADDING_STEPS, log_dir=log_dir,
                                **ADDING)
    expected_lines, expected = uninterrupted_adding_run
    start = resumed["resumed_from"]
    assert start == backed_up * ADDING["log_every"]
    assert 0 < start < ADDING_STEPS, "the kill came too late to test anything"
    assert resumed["steps"] == ADDING_STEPS
    # It goes on at the step where the backup was made: the windows after it are
    # the uninterrupted run's, line for line, and the end result is the same.
    assert lines == expected_lines[backed_up:]
    assert resumed["mse"] == expected["mse"]
    history = json.loads((log_dir / "history.json").read_text())
    assert [record["step"] for record in history] == list(range(20, ADDING_STEPS + 1, 20))


def test_classifier_resume_keeps_batch_norm_and_evaluations(tmp_path):
    # Batch norm statistics, their re-estimation before evaluations, validation
    # records and the epoch order of the data all survive the restart.
    settings = dict(dataset="digits", num_layers=2, units=8, log_every=4, eval_every=8,
                    checkpoint_every=8, target_accuracy=1.0)
    first_lines, _ = run_script(sequential_mnist, max_steps=12, log_dir=tmp_path / "a",
                                **settings)  # stops between two validations
    rest_lines, rest = run_script(sequential_mnist, max_steps=48, log_dir=tmp_path / "a",
                                  **settings)
    lines, expected = run_script(sequential_mnist, max_steps=48, log_dir=tmp_path / "b",
                                 **settings)
    assert rest["resumed_from"] == 12 and rest["steps"] == expected["steps"] == 48
    assert first_lines + rest_lines == lines
    for metric in ("test_accuracy", "test_loss", "validation_loss"):
        assert rest[metric] == expected[metric]


def test_resuming_with_another_model_is_refused_clearly(tmp_path):
    tiny = dict(log_every=1, checkpoint_every=1, log_dir=tmp_path, time_steps=10)
    run_script(addition_rnn, max_steps=2, units=8, **tiny)
    with pytest.raises(SystemExit) as error:
        run_script(addition_rnn, max_steps=4, units=4, **tiny)
    assert "Cannot resume" in str(error.value) and "--noresume" in str(error.value)
    with pytest.raises(SystemExit, match="seed: 0 there, 5 here"):
        run_script(addition_rnn, max_steps=4, units=8, seed=5, **tiny)
    # --noresume starts again from scratch in the same directory.
    _, fresh = run_script(addition_rnn, max_steps=3, units=4, resume=False, **tiny)
    assert fresh["resumed_from"] == 0 and fresh["steps"] == 3
    history = json.loads((tmp_path / "history.json").read_text())
    assert [record["step"] for record in history] == [1, 2, 3]


def test_a_backup_whose_weights_and_metadata_disagree_is_refused(tmp_path):
    # A kill between BackupAndRestore writing the weights and writing the epoch
    # would resume the data at the wrong step: the run stops and says so instead.
    tiny = dict(log_every=2, checkpoint_every=2, log_dir=tmp_path, time_steps=10, units=4)
    run_script(addition_rnn, max_steps=4, **tiny)
    metadata = tmp_path / "checkpoints" / "backup" / "training_metadata.json"
    metadata.write_text(json.dumps({"epoch": 1, "batch": 0}))
    with pytest.raises(SystemExit, match="inconsistent: its weights are at step 4"):
        run_script(addition_rnn, max_steps=6, **tiny)
