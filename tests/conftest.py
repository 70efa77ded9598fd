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
    keras.backend.clear_session()


@pytest.fixture
def rng():
    return np.random.RandomState(0)
