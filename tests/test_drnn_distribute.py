"""DilatedRNN under tf.distribute.MirroredStrategy over two logical CPUs.

Logical devices must be configured before TensorFlow initialises its
devices, which the test process has long done, so the check runs in a
subprocess: one training step on two replicas must update the weights
exactly as one step on one device with the whole batch."""
import json
import os
import subprocess
import sys

SCRIPT = r'''
import json, os
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from dilated_rnn import DilatedRNN

def build():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 1))
    features = DilatedRNN([6, 6], [1, 4], cell_type=CELL_TYPE)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3)(features))
    model.compile(keras.optimizers.SGD(0.5),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model

rng = np.random.RandomState(0)
x = rng.normal(size=(8, 12, 1)).astype("float32")
y = rng.randint(0, 3, size=8)
single = build()
before = single.get_weights()
single.train_on_batch(x, y)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    mirrored = build()
mirrored.train_on_batch(x, y)
print(json.dumps({
    "replicas": strategy.num_replicas_in_sync,
    "moved": max(float(np.abs(a - b).max())
                 for a, b in zip(single.get_weights(), before)),
    "difference": max(float(np.abs(a - b).max())
                      for a, b in zip(single.get_weights(),
                                      mirrored.get_weights())),
}))
'''


def _run(cell_type):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=os.pathsep.join(
                   [root] + os.environ.get("PYTHONPATH", "").split(os.pathsep)))
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT.replace("CELL_TYPE", repr(cell_type))],
        env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_mirrored_strategy_on_two_cpus_matches_one_device():
    result = _run("GRU")
    assert result["replicas"] == 2
    assert result["moved"] > 1e-3  # the step did change the weights
    assert result["difference"] < 1e-5
