"""Resuming the example scripts: a run stopped or killed after k steps and restarted
ends with the step count, progress lines and metrics of an uninterrupted run."""
import os
import signal
import subprocess
import sys
import time

import pytest

from examples import addition_rnn
from examples import sequential_mnist
from tests.test_examples import REPO_ROOT, run_script, script_environment

# A tiny adding problem: a step takes milliseconds.
ADDING = dict(time_steps=10, units=8, log_every=20, checkpoint_every=10, target_mse=0.0,
              seed=3)
ADDING_STEPS = 200


@pytest.fixture(scope="module")
def uninterrupted_adding_run(tmp_path_factory):
    """The reference: the tiny adding problem trained to ADDING_STEPS in one go."""
    log_dir = tmp_path_factory.mktemp("uninterrupted")
    return run_script(addition_rnn, max_steps=ADDING_STEPS, log_dir=log_dir, **ADDING)


def test_stopped_and_restarted_run_matches_an_uninterrupted_one(tmp_path,
                                                               uninterrupted_adding_run):
    # Stop at step 30, inside the 21..40 logging window, then go on to the end.
    first_lines, first = run_script(addition_rnn, max_steps=30, log_dir=tmp_path, **ADDING)
    rest_lines, rest = run_script(addition_rnn, max_steps=ADDING_STEPS, log_dir=tmp_path,
                                  **ADDING)
    lines, expected = uninterrupted_adding_run
    assert first["steps"] == 30 and rest["resumed_from"] == 30
    assert rest["steps"] == expected["steps"] == ADDING_STEPS
    # Every window printed exactly once, with the same numbers (no step lost or repeated).
    assert first_lines + rest_lines == lines
    assert rest["mse"] == expected["mse"] and rest["train_mse"] == expected["train_mse"]


def _wait_for_checkpoint(checkpoint_dir, process, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(os.path.join(checkpoint_dir, "checkpoint")):
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def test_killed_run_resumes_where_its_checkpoint_left_off(tmp_path, uninterrupted_adding_run):
    log_dir = tmp_path / "killed"
    command = [sys.executable, "examples/addition_rnn.py", f"--max_steps={ADDING_STEPS}",
               f"--log_dir={log_dir}"] + [f"--{name}={value}" for name, value in ADDING.items()]
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=script_environment(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        saved = _wait_for_checkpoint(str(log_dir / "checkpoints"), process, timeout=300)
    finally:
        process.send_signal(signal.SIGKILL)  # no chance to save anything more
        process.wait()
    assert saved, "the script wrote no checkpoint"

    lines, resumed = run_script(addition_rnn, max_steps=ADDING_STEPS, log_dir=log_dir,
                                **ADDING)
    expected_lines, expected = uninterrupted_adding_run
    start = resumed["resumed_from"]
    assert 0 < start < ADDING_STEPS, "the kill came too late to test anything"
    assert resumed["steps"] == ADDING_STEPS
    # The lines of the windows closed after the restart are the uninterrupted run's.
    windows_left = ADDING_STEPS // ADDING["log_every"] - start // ADDING["log_every"]
    assert lines == expected_lines[-windows_left:]
    assert resumed["mse"] == expected["mse"]


def test_classifier_resume_keeps_batch_norm_and_evaluations(tmp_path):
    # Batch norm statistics, their re-estimation before evaluations, validation
    # records and the epoch order of the data all survive the restart.
    settings = dict(dataset="digits", num_layers=2, units=8, log_every=4, eval_every=8,
                    checkpoint_every=4, bn_recalibration_batches=3, target_accuracy=1.0)
    first_lines, _ = run_script(sequential_mnist, max_steps=12, log_dir=tmp_path / "a",
                                **settings)
    rest_lines, rest = run_script(sequential_mnist, max_steps=48, log_dir=tmp_path / "a",
                                  **settings)
    lines, expected = run_script(sequential_mnist, max_steps=48, log_dir=tmp_path / "b",
                                 **settings)
    assert rest["resumed_from"] == 12 and rest["steps"] == expected["steps"] == 48
    assert first_lines + rest_lines == lines
    for metric in ("test_accuracy", "test_loss", "validation_loss"):
        assert rest[metric] == expected[metric]


def test_resuming_with_another_model_is_refused_clearly(tmp_path):
    run_script(addition_rnn, max_steps=2, log_every=1, log_dir=tmp_path, time_steps=10,
               units=8)
    with pytest.raises(SystemExit) as error:
        run_script(addition_rnn, max_steps=4, log_every=1, log_dir=tmp_path, time_steps=10,
                   units=4)
    assert "Cannot resume" in str(error.value) and "--noresume" in str(error.value)
    # --noresume starts again from scratch in the same directory.
    _, fresh = run_script(addition_rnn, max_steps=3, log_every=1, log_dir=tmp_path,
                          time_steps=10, units=4, resume=False)
    assert fresh["resumed_from"] == 0 and fresh["steps"] == 3
