"""ind_rnn.native.build.tune_allocator: large CPU tensors reuse pooled memory.

Each case runs in a fresh process: the setting must be made before
TensorFlow runs its first op.
"""
import json
import os
import subprocess
import sys

import pytest

_PROBE = r"""
import json, os, resource, sys
import tensorflow as tf
import {package}

@tf.function
def step(x):
    return tf.reduce_sum(tf.sin(x) * 2.0)  # a 32 MB intermediate tensor

x = tf.random.uniform([8 << 20])
step(x)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step(x)
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10
print(json.dumps({{"faults_per_step": faults,
                  "bfc": os.environ.get("TF_CPU_ALLOCATOR_USE_BFC")}}))
"""


def _probe(package, **environment):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    for name in ("TF_CPU_ALLOCATOR_USE_BFC", "RNN_KERNELS_TUNE_ALLOCATOR"):
        env.pop(name, None)
    env.update(environment)
    done = subprocess.run([sys.executable, "-c", _PROBE.format(package=package)], env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("package", ["ind_rnn", "dilated_rnn"])
def test_importing_the_package_pools_large_tensors(package):
    found = _probe(package)
    assert found["bfc"] == "true"
    # A fresh 32 MB tensor would fault in 8,192 pages a step.
    assert found["faults_per_step"] < 500, found


def test_the_user_setting_wins_and_the_switch_turns_it_off():
    assert _probe("ind_rnn", TF_CPU_ALLOCATOR_USE_BFC="false")["bfc"] == "false"
    assert _probe("ind_rnn", RNN_KERNELS_TUNE_ALLOCATOR="0")["bfc"] is None
