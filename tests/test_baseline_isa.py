"""The fused kernels' portable code, built at the baseline level, against the references.

The kernels are compiled with `-march=native`, so on a machine with AVX2 or
AVX-512 the plain (SSE-width) code paths never run in the other tests. Here
one subprocess builds both packages' kernels at `RNN_KERNELS_ISA=x86-64-v2`
(SSE4.2, no AVX: see `ind_rnn.native.build`) into a cache folder of their own
and runs a small selection of the native-vs-reference tests on them: hidden
sizes that are no multiple of a vector width (5, 20, 37 besides the other
tests' 3, 4, 6), float32 and float64, RNN / LSTM / GRU, masks, IndRNN inputs
projected inside the kernel (<= 4 features) and before it, the skipping of
zero-gradient steps, and the non-finite tests of `test_nonfinite.py`.

Where the CPU has AVX-512, the same selection also runs on an x86-64-v4
build: g++ tunes `-march=native` for 256-bit vectors on most AVX-512 CPUs, so
only that build runs the IndRNN kernel's auto-vectorised 512-bit loops (the
DilatedRNN kernel's explicit vectors are 512-bit in both).

The first run pays two g++ builds per level (about a minute each on 2
cores); the folders (`~/.cache/rnn_kernels_<level>`; for the baseline
`$RNN_KERNELS_BASELINE_CACHE` if set) keep them for the next runs, keyed by
source, TensorFlow and CPU as usual.

`test_native_kernels_match_reference_on_awkward_widths` also runs in this
process, at the native level.
"""
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from dilated_rnn import BasicLSTMCell, BasicRNNCell, DilatedRNN, GRUCell
from ind_rnn import IndRNN
from ind_rnn.native import build
from tests import drnn_reference
from tests import indrnn_numpy_reference as indrnn_reference

BASELINE = "x86-64-v2"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = {"ind_rnn": os.path.join(ROOT, "ind_rnn", "native", "indrnn_ops.cc"),
           "dilated_rnn": os.path.join(ROOT, "dilated_rnn", "native", "drnn_ops.cc")}


# --------------------------------------------------------------------------
# Widths that are no multiple of 4, 8 or 16 (here and in the subprocess).
# --------------------------------------------------------------------------
DRNN_CELLS = {"RNN": BasicRNNCell, "LSTM": BasicLSTMCell, "GRU": GRUCell}
AWKWARD_DRNN = [  # cell, units of the two layers, dtype, masked
    ("RNN", (5, 37), "float32", True),
    ("RNN", (20, 5), "float64", False),
    ("LSTM", (20, 37), "float32", False),
    ("LSTM", (5, 20), "float64", True),
    ("GRU", (37, 5), "float64", False),
    ("GRU", (20, 37), "float32", True),
]


def _assert_close(got, want, dtype, err_msg=""):
    """Within rounding: float32 sums of many terms (the weight gradients) are
    off by a few units of the float32 precision of their largest terms."""
    want = np.asarray(want)
    scale = max(1.0, float(np.abs(want).max())) if want.size else 1.0
    rtol, atol = (1e-9, 1e-10) if dtype == "float64" else (1e-4, 1e-5)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol * scale, err_msg=err_msg)


def _mask(rng, batch, steps):
    mask = rng.rand(batch, steps) > 0.25
    mask[0, -3:] = False  # padding at the end of a row
    return mask


@pytest.mark.parametrize("cell_type, units, dtype, masked", AWKWARD_DRNN)
def test_native_kernels_match_reference_on_awkward_widths(cell_type, units, dtype, masked):
    rng = np.random.RandomState(len(cell_type) * 100 + units[0])
    batch, steps, depth = 3, 11, 3
    cells = [DRNN_CELLS[cell_type](u, dtype=dtype) for u in units]
    layer = DilatedRNN(cells=cells, dilations=[1, 3], return_sequences=True, dtype=dtype,
                       implementation="native")
    layer.build((None, steps, depth))
    layer.set_weights([(rng.normal(size=w.shape) * 0.5).astype(dtype)
                       for w in layer.get_weights()])
    x = tf.constant(rng.randn(batch, steps, depth).astype(dtype))
    mask = _mask(rng, batch, steps) if masked else None
    cotangent = tf.constant(rng.randn(batch, steps, units[-1]).astype(dtype))
    def reference(inputs):
        return drnn_reference.masked_stack_loop(layer.cells, layer.dilations, inputs, mask)
    results = []
    for run in (lambda inputs: layer(inputs, mask=mask), reference):
        with tf.GradientTape() as tape:
            tape.watch(x)
            outputs = run(x)
            loss = tf.reduce_sum(outputs * cotangent)
        results.append([outputs] + tape.gradient(loss, [x] + layer.trainable_weights))
    for got, want in zip(*results):
        _assert_close(got.numpy(), want.numpy(), dtype)


@pytest.mark.parametrize("cell_type", sorted(DRNN_CELLS))
def test_native_kernels_give_the_same_bits_on_every_call(cell_type):
    # The gates' float sigmoid once computed the elements that Eigen's loops
    # peel to reach an aligned address with a scalar formula of other last
    # bits; which elements those were moved with malloc's alignment, so that
    # at AVX-512 the same call gave results that differed in the last bit
    # from call to call. Scratch allocations between the calls move it here.
    rng = np.random.RandomState(7)
    layer = DilatedRNN(cells=[DRNN_CELLS[cell_type](units) for units in (20, 13)],
                       dilations=[1, 2], return_sequences=True, implementation="native")
    layer.build((None, 40, 3))
    layer.set_weights([rng.uniform(-0.5, 0.5, w.shape).astype("float32")
                       for w in layer.get_weights()])
    x = tf.constant(rng.randn(16, 40, 3).astype("float32"))
    cotangent = tf.constant(rng.randn(16, 40, 13).astype("float32"))
    runs, keep = [], []
    for call in range(6):
        keep.append(np.empty(1 + 7 * call, np.uint8))  # moves the next allocations
        with tf.GradientTape() as tape:
            tape.watch(x)
            outputs = layer(x)
            loss = tf.reduce_sum(outputs * cotangent)
        runs.append([t.numpy() for t in [outputs] + tape.gradient(loss, [x] + layer.weights)])
    for call, run in enumerate(runs[1:], 1):
        for index, (got, first) in enumerate(zip(run, runs[0])):
            assert np.array_equal(got, first), \
                f"call {call}, result {index}: max difference {np.abs(got - first).max()}"


@pytest.mark.parametrize("units, depth, dtype, masked", [
    (5, 2, "float32", True), (20, 7, "float64", True), (37, 4, "float64", False),
    (37, 9, "float32", False)])
def test_native_indrnn_matches_numpy_on_awkward_widths(units, depth, dtype, masked):
    rng = np.random.RandomState(units + depth)
    batch, steps = 3, 10
    layer = IndRNN(units, return_sequences=True, implementation="native", dtype=dtype,
                   activation="tanh" if masked else "relu")
    layer.build((None, steps, depth))
    weights = [rng.randn(depth, units) * 0.5, rng.uniform(-1.1, 1.1, units), rng.randn(units) * 0.2]
    layer.set_weights([w.astype(dtype) for w in weights])
    x = tf.constant(rng.randn(batch, steps, depth).astype(dtype))
    h0 = tf.constant(rng.randn(batch, units).astype(dtype))
    mask = _mask(rng, batch, steps) if masked else None
    upstream = rng.randn(batch, steps, units)
    with tf.GradientTape() as tape:
        tape.watch([x, h0])
        states = layer(x, initial_state=h0, mask=mask)
        loss = tf.reduce_sum(states * upstream.astype(dtype))
    grads = tape.gradient(loss, layer.trainable_weights + [x, h0])
    kernel, recurrent, bias = [np.asarray(w, np.float64) for w in layer.get_weights()]
    args = [x.numpy().astype(np.float64), kernel, recurrent, bias, h0.numpy().astype(np.float64)]
    activation = "tanh" if masked else "relu"
    expected_states, _ = indrnn_reference.forward(*args, activation, 0.0, None, mask)
    if mask is not None:
        # The layer outputs zeros at the masked steps before a row's first
        # valid one (Keras' convention), the carried state after it.
        seen = (np.cumsum(mask, axis=1) > 0)[..., None]
        expected_states, upstream = expected_states * seen, upstream * seen
    expected = indrnn_reference.backward(upstream, *args, activation, 0.0, None, mask)
    _assert_close(states.numpy(), expected_states, dtype)
    for got, name in zip(grads, ["input_kernel", "recurrent_kernel", "bias", "inputs", "h0"]):
        _assert_close(got.numpy(), expected[name], dtype, err_msg=name)


# --------------------------------------------------------------------------
# The same kernels' tests again, built at x86-64-v2, in one subprocess.
# --------------------------------------------------------------------------
SELECTION = [
    # IndRNN: float64 scan, both input paths, masks; float32 layer, both activations.
    "tests/test_indrnn_layer.py::test_project_and_scan_matches_numpy"
    "[masked-native-projected-in-kernel]",
    "tests/test_indrnn_layer.py::test_project_and_scan_matches_numpy"
    "[unmasked-native-projections-precomputed]",
    "tests/test_indrnn_layer.py::test_forward_and_gradients_match_numpy"
    "[relu-native-projected-in-kernel]",
    "tests/test_indrnn_layer.py::test_forward_and_gradients_match_numpy"
    "[tanh-native-projections-precomputed]",
    "tests/test_indrnn_layer.py::test_masked_gradients_match_numpy[native-projections-precomputed]",
    # DilatedRNN: every cell, masks, the skipping of zero-gradient steps.
    "tests/test_drnn_layer.py::test_matches_plain_loop_for_every_cell_and_engine[RNN-native]",
    "tests/test_drnn_layer.py::test_matches_plain_loop_for_every_cell_and_engine[LSTM-native]",
    "tests/test_drnn_layer.py::test_matches_plain_loop_for_every_cell_and_engine[GRU-native]",
    "tests/test_drnn_layer.py::test_masked_gradients_match_per_sequence_reference[native]",
    "tests/test_drnn_layer.py::test_gradients_when_the_loss_reads_few_outputs[GRU-last]",
    "tests/test_drnn_layer.py::test_gradients_when_the_loss_reads_few_outputs[LSTM-early]",
    "tests/test_drnn_layer.py::test_gradients_when_the_loss_reads_few_outputs[RNN-scattered]",
    # Widths 5, 20, 37, float32 and float64 (this file).
    "tests/test_baseline_isa.py::test_native_kernels_match_reference_on_awkward_widths",
    "tests/test_baseline_isa.py::test_native_indrnn_matches_numpy_on_awkward_widths",
    "tests/test_baseline_isa.py::test_native_kernels_give_the_same_bits_on_every_call",
    # The IndRNN kernels' fused loops: depth 1 in the loop, masked, last state only; no bias.
    "tests/test_indrnn_native_paths.py::test_inputs_projected_in_the_kernel"
    "[relu-masked-last-grad-1-float32-37]",
    "tests/test_indrnn_native_paths.py::test_inputs_projected_in_the_kernel"
    "[tanh-unmasked-per-step-grad-4-float32-37]",
    "tests/test_indrnn_native_paths.py::test_projections_without_a_bias"
    "[native-masked-per-step-grad-float32-37]",
]


def _nonfinite_selection():
    from tests import test_nonfinite  # pylint: disable=import-outside-toplevel
    selection = [f"tests/test_nonfinite.py::test_indrnn_scan_matches_numpy_with_nonfinite_values"
                 f"[{seed}-native]" for seed in test_nonfinite.SEEDS]
    selection += [f"tests/test_nonfinite.py::test_drnn_matches_plain_loop_with_nonfinite_values"
                  f"[{seed}-{cell}-native]" for seed in test_nonfinite.SEEDS
                  for cell in test_nonfinite.DRNN_CELLS]
    selection += [f"tests/test_nonfinite.py::test_indrnn_masked_steps_with_nonfinite_values"
                  f"[{path}-native]" for path in ("projected-in-kernel", "projected-before")]
    selection.append("tests/test_nonfinite.py::test_indrnn_issue_example_keeps_the_nan")
    return selection


# Run in the subprocess: both libraries must load (else "native" would fall
# back to the XLA loop and the tests would pass without running the kernels).
_RUNNER = """
import sys
import pytest
from ind_rnn import native as ind_native
from dilated_rnn import native as drnn_native
from ind_rnn.native import build
assert build.requested_isa() == {isa!r}, build.requested_isa()
for name, module in (("ind_rnn", ind_native), ("dilated_rnn", drnn_native)):
    assert module.load() is not None, name + ": the kernels failed to build at {isa}"
sys.exit(pytest.main(["-q", "-p", "no:cacheprovider"] + sys.argv[1:]))
"""


# The levels built here besides native: the baseline everywhere, and AVX-512
# where the CPU has it (g++ tunes -march=native for 256-bit vectors on most
# AVX-512 CPUs, so the auto-vectorised IndRNN loops use 512-bit registers only
# in an x86-64-v4 build). What registers each build may and must use:
LEVELS = {BASELINE: dict(must="xmm", must_not=r"%[yz]mm\d+"),
          "x86-64-v4": dict(must="zmm", must_not=None)}


def _level_cache(isa):
    if isa == BASELINE and os.environ.get("RNN_KERNELS_BASELINE_CACHE"):
        return os.environ["RNN_KERNELS_BASELINE_CACHE"]
    return os.path.join(os.path.expanduser("~"), ".cache", f"rnn_kernels_{isa}")


def _skip_unless_buildable(isa, monkeypatch):
    # The level check of the build itself: it refuses a level this CPU (or a
    # machine that is not x86-64) cannot run, naming both.
    monkeypatch.setenv(build.ISA_VARIABLE, isa)
    try:
        build.requested_isa()
    except ValueError as error:
        pytest.skip(str(error))
    if shutil.which(os.environ.get("CXX") or "g++") is None and shutil.which("c++") is None:
        pytest.skip("no C++ compiler: the native kernels cannot be built")


@pytest.mark.parametrize("isa", list(LEVELS))
def test_kernel_tests_pass_on_a_build_at_each_level(isa, monkeypatch):
    _skip_unless_buildable(isa, monkeypatch)
    cache = _level_cache(isa)
    env = {**os.environ, build.ISA_VARIABLE: isa, "IND_RNN_CACHE": cache,
           "DILATED_RNN_CACHE": cache, "IND_RNN_NATIVE": "1", "DILATED_RNN_NATIVE": "1",
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TF_USE_LEGACY_KERAS", None)  # the selected tests are Keras 3 tests
    result = subprocess.run(
        [sys.executable, "-c", _RUNNER.format(isa=isa)] + SELECTION + _nonfinite_selection(),
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500, check=False)
    summary = (result.stdout[-6000:] + "\n" + result.stderr[-3000:]).strip()
    assert result.returncode == 0, f"the {isa} build's tests failed:\n{summary}"
    assert re.search(r"\d+ passed", result.stdout), summary

    # Both libraries were built at that level: the baseline uses no AVX
    # register anywhere, the AVX-512 build uses 512-bit ones.
    objdump = shutil.which("objdump")
    for package, source in SOURCES.items():
        library = build.library_path(source, cache, isa)
        assert os.path.exists(library), f"{package}: no {isa} library at {library}"
        if objdump is None:
            continue
        disassembly = subprocess.run([objdump, "-d", "--no-show-raw-insn", library],
                                     capture_output=True, text=True, check=True).stdout
        registers = LEVELS[isa]
        assert registers["must"] in disassembly, \
            f"{package}: no {registers['must']} code in the {isa} build ({library})"
        if registers["must_not"]:
            wide = re.findall(registers["must_not"], disassembly)
            assert not wide, f"{package}: {len(wide)} AVX register uses in the {isa} build"
