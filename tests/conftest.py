"""Shared pytest set-up: quiet TensorFlow, deterministic seeds, fresh Keras state."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a test that takes more than ~20 s")


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Each test starts from the same seeds and the float32 policy."""
    keras.utils.set_random_seed(1234)
    keras.mixed_precision.set_global_policy("float32")
    yield
    keras.mixed_precision.set_global_policy("float32")
    # No forced gc.collect() (clear_session's default): with TensorFlow's objects
    # in the heap each full collection took 0.4-1 s, 522 of the suite's 997 s,
    # and skipping it left the peak memory as it was (1.12 against 1.11 GB on
    # three of the largest test files); Python's own collections still run.
    keras.backend.clear_session(free_memory=False)


@pytest.fixture
def rng():
    return np.random.RandomState(0)
