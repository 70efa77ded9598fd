"""Real learning: on the offline 8x8 digits (64-step pixel sequences), a short
seeded run of each classification script reaches >= 90% test accuracy.

Chance is 10%. Full-length runs reach ~97% (see benchmarks/reproduce.py); these
short runs are sized to finish in about a minute each on two CPU cores.
"""
import pytest

from examples import permuted_mnist_drnn
from examples import sequential_mnist
from tests.test_examples import run_script

TARGET = 0.90


@pytest.mark.slow
def test_indrnn_learns_sequential_digits(tmp_path):
    # A smaller, faster-learning plain IndRNN than the original's 6 x 128 at 2e-4,
    # evaluated as the original (batch-norm statistics of 500 training sequences).
    _, result = run_script(sequential_mnist, dataset="digits", num_layers=3, units=64,
                           learning_rate=2e-3, max_steps=800, eval_every=800,
                           log_every=100, seed=0, log_dir=tmp_path)
    assert result["steps"] == 800
    assert result["test_accuracy"] >= TARGET, result


@pytest.mark.slow
def test_dilated_rnn_learns_permuted_digits(tmp_path):
    # The demo's own settings (RNN cells of 20, dilations 1..32, RMSProp 1e-3, batch 128).
    _, result = run_script(permuted_mnist_drnn, dataset="digits", max_steps=500,
                           eval_every=500, log_every=100, seed=0, log_dir=tmp_path)
    assert result["steps"] == 500 and result["permute"]
    assert result["test_accuracy"] >= TARGET, result
