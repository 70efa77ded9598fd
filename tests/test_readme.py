"""README.md: every ```python block runs as written, and says what it runs.

Each block runs in a fresh namespace, the way a user pastes it; the one block
that continues the user's own code (the batch-norm statistics) gets a small
model and datasets of its names. The values the blocks state in their comments
are checked against what they compute.
"""
import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def python_blocks():
    with open(README, encoding="utf-8") as readme:
        return re.findall(r"^```python\n(.*?)^```", readme.read(), re.S | re.M)


def run_block(text, namespace=None):
    namespace = dict(namespace or {})
    exec(compile(text, "README.md", "exec"), namespace)  # pylint: disable=exec-used
    return namespace


def block_with(words):
    matches = [block for block in python_blocks() if words in block]
    assert len(matches) == 1, f"{len(matches)} README blocks hold {words!r}"
    return matches[0]


def test_readme_has_the_blocks_these_tests_run():
    assert len(python_blocks()) == 5


def test_indrnn_block_the_cell_and_the_fast_layer_give_the_same_numbers():
    names = run_block(block_with("from ind_rnn import IndRNN, IndRNNCell"))
    slow, fast = names["slow"], names["fast"]
    inputs = np.random.RandomState(0).uniform(-1, 1, (3, 20, 2)).astype("float32")
    last_step = slow(inputs)
    fast(inputs)  # builds it
    fast.set_weights(slow.get_weights())  # "same weights (input_kernel, recurrent_kernel, bias)"
    assert [w.path.split("/")[-1] for w in fast.weights] == [
        "input_kernel", "recurrent_kernel", "bias"]
    np.testing.assert_allclose(fast(inputs)[:, -1], last_step, rtol=1e-5, atol=1e-6)


def test_deep_indrnn_block_builds_and_compiles_the_21_layer_residual_model():
    model = run_block(block_with("build_sequence_classifier"))["model"]
    assert model.input_shape == (None, 784, 1) and model.output_shape == (None, 10)
    assert model.optimizer.global_clipnorm == 5.0
    assert len([w for w in model.weights if w.path.endswith("recurrent_kernel")]) == 21


def test_batch_norm_statistics_block_runs_on_a_users_model():
    from ind_rnn import build_sequence_classifier  # pylint: disable=import-outside-toplevel
    rng = np.random.RandomState(0)
    x_train = rng.uniform(0, 1, (64, 8, 1)).astype("float32")
    labels = rng.randint(0, 3, 64)
    model = build_sequence_classifier(8, 1, 3, num_layers=2, units=4)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    train_ds = tf.data.Dataset.from_tensor_slices((x_train, labels)).batch(16)
    names = run_block(block_with("BatchNormStatistics"),
                      {"model": model, "train_ds": train_ds, "val_ds": train_ds.take(1),
                       "x_train": x_train})
    assert names["model"] is model and model.optimizer.iterations.numpy() == 4


def test_dilated_rnn_block_builds_its_models_and_states_the_mean_recurrent_length():
    text = block_with("mean_recurrent_length(")
    names = run_block(text)
    stated = re.search(r"mean_recurrent_length\(.*\)\s*# ([0-9.]+)", text).group(1)
    assert names["mean_recurrent_length"]([2 ** i for i in range(9)]) == float(stated)
    # "a plain RNN, [1]: 128.5", over the same period of 256 steps.
    assert names["mean_recurrent_length"]([1], period=256) == 128.5
    # "the time length may be unknown": the model runs on two lengths.
    model = names["model"]
    for time_steps in (5, 12):
        assert model(np.zeros((2, time_steps, 1), "float32")).shape == (2, 10)
    classifier = names["classifier"]
    assert classifier(np.zeros((2, 16, 1), "float32")).shape == (2, 10)


def test_drnn_classification_block_has_the_papers_7210_parameters():
    model = run_block(block_with("drnn_classification("))["model"]
    assert model.count_params() == 7210 and model.output_shape == (None, 10)
