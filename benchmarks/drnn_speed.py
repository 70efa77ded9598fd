"""DilatedRNN training speed against a naive Keras port, in one process.

The model is the paper's 9-layer pixel-MNIST demo (hidden 20, dilations
1, 2, ..., 256, batch 128, 784 steps of 1 input, 10 classes), trained with
RMSProp (lr 1e-3, rho 0.9) on one fixed random batch. For each cell type it
times, from a fresh model:

* "first step": building the model, compiling it and the first
  `train_on_batch` (tracing, XLA compilation, the step itself);
* "step": the median of the next `--steps` `train_on_batch` calls, the
  models' steps interleaved (naive, ours, naive, ours, ...) so that the
  machine's load weighs on all of them alike;
* "CPU s/step": the median CPU time of those steps, all threads together.
  On a machine that other work keeps busy, wall-time ratios depend on how
  the scheduler shares the cores (this library's kernels keep both cores
  busy and suffer most); CPU-time ratios measure the work itself and do not
  count the parallelism, so they are the conservative figure.

The speed-ups are against the faster naive configuration.

Models:

* `naive (keras RNN, XLA step)` / `naive (keras RNN, no XLA)`: the naive
  port, one `keras.layers.RNN` per layer over the dilated
  `[rate*batch, ceil(T/rate), dim]` sequence, with the same TF1 cells (so the
  same maths and parameter count). Keras' default `jit_compile="auto"`
  XLA-compiles its training step; the run without XLA is often faster, so
  both are timed and the speed-up is against the faster of the two.
* `DilatedRNNClassifier`: this library's Keras model (default settings).
* `drnn_classification`: the TF1-named function on a `keras.Input`.

`--loss every-step` times a class per step instead (the naive port and
`DilatedRNN(return_sequences=True)`, each followed by Dense): every output
then gets a gradient. With the demo's loss on the last output only, a layer
of dilation r gets nonzero gradients on 1 / r of its rows, and the native
backward skips the rest (see `drnn_ops.cc`); this mode shows the speed
without that.

Run `python benchmarks/drnn_speed.py` (about 4 minutes on 2 cores);
`--steps 20` for steadier medians, `--cells GRU` for one cell type, `--quick`
for a short smoke run.
"""
import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import dilated_rnn  # noqa: E402
from dilated_rnn import cells as cells_lib  # noqa: E402
from dilated_rnn import native  # noqa: E402


class _Dilate(keras.layers.Layer):
    """[batch, T, dim] -> [rate*batch, ceil(T/rate), dim], phase-major."""

    def __init__(self, rate, **kwargs):
        super().__init__(**kwargs)
        self.rate = rate

    def call(self, x):
        rate, steps = self.rate, x.shape[1]
        padded = -(-steps // rate) * rate
        x = keras.ops.pad(x, [[0, 0], [0, padded - steps], [0, 0]])
        x = keras.ops.reshape(x, (-1, padded // rate, rate, x.shape[-1]))
        x = keras.ops.transpose(x, (2, 0, 1, 3))
        return keras.ops.reshape(x, (-1, padded // rate, x.shape[-1]))


class _Undilate(keras.layers.Layer):
    """Inverse of _Dilate, dropping the padded tail."""

    def __init__(self, rate, steps, **kwargs):
        super().__init__(**kwargs)
        self.rate, self.steps = rate, steps

    def call(self, y):
        rate, dilated_steps, units = self.rate, y.shape[1], y.shape[-1]
        y = keras.ops.reshape(y, (rate, -1, dilated_steps, units))
        y = keras.ops.transpose(y, (1, 2, 0, 3))
        y = keras.ops.reshape(y, (-1, dilated_steps * rate, units))
        return y[:, :self.steps, :]


def naive_model(cell_type, hidden, dilations, steps, n_classes,
                every_step=False):
    inputs = keras.Input((steps, 1))
    x = inputs
    for cell, rate in zip(cells_lib.construct_cells(hidden, cell_type),
                          dilations):
        y = keras.layers.RNN(cell, return_sequences=True)(_Dilate(rate)(x))
        x = _Undilate(rate, steps)(y)
    if every_step:
        return keras.Model(inputs, keras.layers.Dense(n_classes)(x))
    fused = keras.ops.reshape(x[:, -dilations[0]:, :],
                              (-1, dilations[0] * hidden[-1]))
    return keras.Model(inputs, keras.layers.Dense(n_classes)(fused))


def classifier_model(cell_type, hidden, dilations, steps, n_classes,
                     every_step=False):
    if every_step:  # a class per step: the layer's sequence, then Dense
        inputs = keras.Input((steps, 1))
        x = dilated_rnn.DilatedRNN(hidden, dilations, cell_type=cell_type,
                                   return_sequences=True)(inputs)
        return keras.Model(inputs, keras.layers.Dense(n_classes)(x))
    return dilated_rnn.DilatedRNNClassifier(hidden, dilations, n_classes,
                                            cell_type=cell_type)


def legacy_model(cell_type, hidden, dilations, steps, n_classes,
                 every_step=False):
    if every_step:
        raise ValueError("drnn_classification reads only the last outputs")
    inputs = keras.Input((steps, 1))
    logits = dilated_rnn.drnn_classification(
        inputs, hidden, dilations, steps, n_classes, cell_type=cell_type)
    return keras.Model(inputs, logits)


MODELS = {
    "naive (keras RNN, XLA step)": (naive_model, "auto"),
    "naive (keras RNN, no XLA)": (naive_model, False),
    "DilatedRNNClassifier": (classifier_model, "auto"),
    "drnn_classification": (legacy_model, "auto"),
}


def first_step(build, jit_compile, cell_type, args, batch):
    """Builds and compiles a model and runs its first step; returns both."""
    keras.utils.set_random_seed(0)
    start = time.perf_counter()
    model = build(cell_type, [args.hidden] * args.layers, args.dilations,
                  args.n_steps, 10, every_step=args.loss == "every-step")
    model.compile(
        optimizer=keras.optimizers.RMSprop(learning_rate=1e-3, rho=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile)
    model.train_on_batch(*batch)
    return model, time.perf_counter() - start


def step_times(models, batch, steps):
    """Median wall and CPU time of a step per model, the models' steps
    interleaved so that a change in the machine's load hits them all alike."""
    times = {name: ([], []) for name in models}
    # One untimed round first: a model retraces once after its first step
    # built it, or after set_random_seed for the next model changed the seed.
    for model in models.values():
        model.train_on_batch(*batch)
    for _ in range(steps):
        for name, model in models.items():
            wall, cpu = time.perf_counter(), time.process_time()
            model.train_on_batch(*batch)
            times[name][0].append(time.perf_counter() - wall)
            times[name][1].append(time.process_time() - cpu)
    return {name: (statistics.median(w), statistics.median(c))
            for name, (w, c) in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cells", nargs="+", default=["RNN", "GRU", "LSTM"])
    parser.add_argument("--models", nargs="+", default=list(MODELS),
                        choices=list(MODELS))
    parser.add_argument("--steps", type=int, default=5,
                        help="timed training steps after the first")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--n-steps", type=int, default=784)
    parser.add_argument("--hidden", type=int, default=20)
    parser.add_argument("--layers", type=int, default=9)
    parser.add_argument(
        "--loss", choices=["last", "every-step"], default="last",
        help="'last': the demo, a class from the last output; 'every-step': "
             "a class per step, so that every output gets a gradient (the "
             "native backward then has no zero-gradient rows to skip)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 3 layers, 64 steps, batch 16")
    args = parser.parse_args()
    if args.quick:
        args.layers, args.n_steps, args.batch, args.steps = 3, 64, 16, 2
    args.dilations = [2 ** i for i in range(args.layers)]

    # The C++ kernels are compiled once per machine and cached; time that
    # apart from the models' first steps.
    cached = os.path.exists(native.library_path())
    start = time.perf_counter()
    loaded = native.load() is not None
    print(f"# C++ kernels: {'loaded' if loaded else 'UNAVAILABLE'} in "
          f"{time.perf_counter() - start:.1f} s "
          f"({'cached' if cached else 'built now, once per machine'})")
    rng = np.random.RandomState(0)
    labels_shape = (args.batch,) + ((args.n_steps,) if args.loss ==
                                    "every-step" else ())
    batch = (rng.rand(args.batch, args.n_steps, 1).astype("float32"),
             rng.randint(0, 10, size=labels_shape))
    if args.loss == "every-step":
        args.models = [m for m in args.models if m != "drnn_classification"]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"# TF {tf.__version__}, Keras {keras.__version__}, "
          f"{os.cpu_count()} CPUs, load average {load} at the start; "
          f"{args.layers} layers of {args.hidden}, dilations "
          f"1..{args.dilations[-1]}, batch {args.batch}, T {args.n_steps}, "
          f"median of {args.steps} steps, loss on the {args.loss} output(s)",
          flush=True)
    print("| cell | model | params | first step (s) | step (s) | speed-up "
          "| CPU s/step | CPU speed-up |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for cell_type in args.cells:
        models, firsts = {}, {}
        for name in args.models:
            build, jit_compile = MODELS[name]
            models[name], firsts[name] = first_step(build, jit_compile,
                                                    cell_type, args, batch)
        steps = step_times(models, batch, args.steps)
        naive = [steps[n] for n in steps if n.startswith("naive")]
        for name, model in models.items():
            wall, cpu = steps[name]
            ratios = [f"{min(n[k] for n in naive) / steps[name][k]:.1f}x"
                      if naive else "" for k in (0, 1)]
            shown = ("DilatedRNN + Dense" if args.loss == "every-step"
                     and name == "DilatedRNNClassifier" else name)
            print(f"| {cell_type} | {shown} | {model.count_params():,} | "
                  f"{firsts[name]:.1f} | {wall:.3f} | {ratios[0]} | "
                  f"{cpu:.3f} | {ratios[1]} |", flush=True)
        keras.backend.clear_session()


if __name__ == "__main__":
    main()
