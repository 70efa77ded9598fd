"""DilatedRNN training speed on the user's paths, against a naive Keras port and TF1's graph.

The model is the paper's 9-layer pixel-MNIST demo (hidden 20, dilations
1, 2, ..., 256, batch 128, 784 steps of 1 input, 10 classes), trained with
RMSProp (lr 1e-3, rho 0.9) on fixed random data. For each cell type, from a
fresh model of each kind (benchmarks/drnn_models_for_speed.py):

* "first step": building the model, compiling it and the first
  `train_on_batch` (tracing, XLA compilation, the step itself);
* path `train_on_batch`: the median of `--steps` calls on one fixed batch;
* path `fit`: `model.fit` on a fixed dataset of `--fit-batches` batches
  (numpy arrays and `batch_size`, shuffled as `fit` does by default), one
  epoch per `fit` call; the first epoch is not timed, the figure is the
  median over the next `--epochs - 1` epochs of the epoch's time (from
  `on_epoch_begin` to `on_epoch_end`: iterator, steps, callbacks) over its
  steps. A summary compares it, and the median
  step within epochs, with the train_on_batch step, and gives what an epoch
  takes beyond its steps (Keras' own work per epoch, which weighs on short
  epochs only: 22-31 ms for every model on 2 Zen 3 cores, 6.5 ms a step in an
  epoch of 4 batches, 1.8 ms in one of 16, under 0.1 ms in an epoch over
  MNIST's 469 batches of 128; hence the default of 16, where 4 made our fit
  figures 10-15% worse than the same steps under train_on_batch). Both paths
  and all models are interleaved so that the machine's load weighs on all
  alike: each of the `--epochs - 1` rounds runs
  one epoch of every model, then a share of the `train_on_batch` steps
  (naive, ours, naive, ours, ...);
* "TF1 graph": the TF1 demo graph through `dilated_rnn.legacy` in graph mode
  (placeholders, `Session`, RMSProp; benchmarks/tf1_graph_step.py, a
  subprocess with TF_USE_LEGACY_KERAS=1 run after the cell's other models):
  the median of `--steps` `Session.run` steps after one warm-up step;
* "CPU s/step": the same medians in CPU time, all threads together. On a
  machine that other work keeps busy, wall-time ratios depend on how the
  scheduler shares the cores; CPU-time ratios measure the work itself and
  do not count the parallelism, so they are the conservative figure.

"speed-up" is against the faster naive configuration on the same path;
"vs TF1" is the TF1 graph's step time over the row's.

Models (`--models`): `naive-xla` / `naive`: the naive port, one
`keras.layers.RNN` per layer over the dilated `[rate*batch, ceil(T/rate),
dim]` sequence, with the same TF1 cells, with and without an XLA-compiled
step (`jit_compile=True`; Keras' default "auto" does not compile on CPU);
`classifier`: `DilatedRNNClassifier`; `layer`: the `DilatedRNN` layer in a
functional model; `drnn_classification`: the TF1-named function on a
`keras.Input`; `tf1-graph`: the TF1 graph. All but `naive-xla` by default:
on 2 AVX2 cores its first step took 38 s and its steps were 3-5x slower than
without XLA (add it with `--models naive-xla naive ...`).

Flags:
  --cells RNN GRU LSTM     cell types (default all three)
  --models KEY ...         the models above (default all but naive-xla)
  --paths train_on_batch fit   what is timed (default both)
  --steps N                timed train_on_batch / Session.run steps (default 5)
  --epochs N               fit epochs, the first untimed (default 3)
  --fit-batches N          batches per fit epoch (default 16)
  --batch, --n-steps, --hidden, --layers   the demo's sizes (128, 784, 20, 9)
  --loss last|every-step   'last': the demo, a class from the last output;
                           'every-step': a class per step (the naive port and
                           the `layer` model with return_sequences, then Dense;
                           every output gets a gradient, so the native backward
                           has no zero-gradient rows to skip)
  --isa LEVEL              x86-64-v2, x86-64-v3, x86-64-v4, native or any -march
                           value: the fused kernels' level ($RNN_KERNELS_ISA)
  --quick                  smoke run: 3 layers, T 64, batch 16, 2 steps, 2 epochs
                           of 2 batches

Run `python benchmarks/drnn_speed.py` (roughly 10 minutes on 2 cores);
`--isa x86-64-v2` etc. for another level; `--cells GRU --paths fit` for
part of it.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from dilated_rnn import native  # noqa: E402
from drnn_models_for_speed import LAST_OUTPUT_ONLY, MODELS  # noqa: E402
import run_conditions  # noqa: E402
import step_timing  # noqa: E402

TF1 = "tf1-graph"
PATHS = ("train_on_batch", "fit")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", nargs="+", default=["RNN", "GRU", "LSTM"],
                        choices=["RNN", "GRU", "LSTM"])
    parser.add_argument("--models", nargs="+", choices=list(MODELS) + [TF1],
                        default=[m for m in MODELS if m != "naive-xla"] + [TF1])
    parser.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS)
    parser.add_argument("--steps", type=int, default=5,
                        help="timed train_on_batch / Session.run steps")
    parser.add_argument("--epochs", type=int, default=3, help="fit epochs, the first untimed")
    parser.add_argument("--fit-batches", type=int, default=16, help="batches per fit epoch")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--n-steps", type=int, default=784)
    parser.add_argument("--hidden", type=int, default=20)
    parser.add_argument("--layers", type=int, default=9)
    parser.add_argument("--loss", choices=["last", "every-step"], default="last",
                        help="'last': the demo; 'every-step': a class per step")
    parser.add_argument("--isa", default=None, help=run_conditions.ISA_HELP)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 3 layers, T 64, batch 16, 2 steps, 2 epochs of 2")
    args = parser.parse_args(argv)
    if args.quick:
        args.layers, args.n_steps, args.batch, args.steps = 3, 64, 16, 2
        args.epochs, args.fit_batches = 2, 2
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the first is not timed)")
    if min(args.steps, args.fit_batches) < 1:
        parser.error("--steps and --fit-batches must be at least 1")
    args.dilations = [2 ** i for i in range(args.layers)]
    if args.loss == "every-step":
        args.models = [m for m in args.models if m not in LAST_OUTPUT_ONLY + (TF1,)]
    return args


def build_and_first_step(key, cell_type, args, batch):
    """Builds and compiles a model and runs its first step; returns both."""
    _, build, jit_compile = MODELS[key]
    keras.utils.set_random_seed(0)
    start = time.perf_counter()
    model = build(cell_type, [args.hidden] * args.layers, args.dilations, args.n_steps, 10,
                  every_step=args.loss == "every-step")
    model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=1e-3, rho=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=jit_compile)
    model.train_on_batch(*batch)
    return model, time.perf_counter() - start


def time_paths(models, batch, data, args):
    """Times the paths in `args.paths` for every model, all interleaved.

    After one untimed `train_on_batch` step and one untimed `fit` epoch per
    model, each of `args.epochs - 1` rounds runs one `fit` epoch of every
    model, then its share of the `args.steps` `train_on_batch` steps (every
    model in turn), so that a change in the machine's load hits every model
    and both paths alike. Returns {path: {model key: times}}: for
    "train_on_batch" the median (wall, CPU) seconds of a step; for "fit" the
    medians of an epoch's time over its steps (wall, CPU), of a step within
    epochs (wall, CPU) and of an epoch's time beyond its steps (wall, CPU).
    """
    x, y = data
    timers = {key: step_timing.EpochTimer() for key in models}
    steps = {key: [] for key in models}

    def fit_epoch(epoch):
        for key, model in models.items():
            model.fit(x, y, batch_size=args.batch, initial_epoch=epoch, epochs=epoch + 1,
                      verbose=0, callbacks=[timers[key]])

    # Untimed: a model retraces once after its first step built it, or after
    # set_random_seed for the next model changed the seed; fit traces anew.
    for model in models.values():
        model.train_on_batch(*batch)
    fitting = "fit" in args.paths
    if fitting:
        fit_epoch(0)
    rounds = args.epochs - 1 if fitting else 1
    for index in range(rounds):
        if fitting:
            fit_epoch(index + 1)
        if "train_on_batch" in args.paths:
            for _ in range(args.steps // rounds + (index < args.steps % rounds)):
                for key, model in models.items():
                    wall, cpu = time.perf_counter(), time.process_time()
                    model.train_on_batch(*batch)
                    steps[key].append((time.perf_counter() - wall,
                                       time.process_time() - cpu))
    timed = {}
    if "train_on_batch" in args.paths:
        timed["train_on_batch"] = {
            key: tuple(statistics.median(step[k] for step in times) for k in (0, 1))
            for key, times in steps.items()}
    if fitting:
        timed["fit"] = {}
        for key, timer in timers.items():
            epochs = timer.epochs[1:]
            timed["fit"][key] = tuple(
                [statistics.median(e[k] / len(e[2]) for e in epochs) for k in (0, 1)]
                + [statistics.median(step[k] for e in epochs for step in e[2])
                   for k in (0, 1)]
                + [statistics.median(e[k] - sum(step[k] for step in e[2]) for e in epochs)
                   for k in (0, 1)])
    return timed


def tf1_graph_step(cell_type, args):
    """Runs benchmarks/tf1_graph_step.py; returns its JSON result, or None."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tf1_graph_step.py")
    command = [sys.executable, script, "--cell", cell_type, "--steps", str(args.steps),
               "--batch", str(args.batch), "--n-steps", str(args.n_steps),
               "--hidden", str(args.hidden), "--layers", str(args.layers)]
    run = subprocess.run(command, capture_output=True, text=True, check=False,
                         env={**os.environ, "TF_USE_LEGACY_KERAS": "1"})
    if run.returncode != 0:
        print(f"# TF1 graph ({cell_type}) failed:\n{run.stderr[-2000:]}", flush=True)
        return None
    return json.loads(run.stdout.strip().splitlines()[-1])


def _ratio(base, value):
    return f"{base / value:.1f}x" if base and value else ""


def print_cell(cell_type, rows, tf1):
    """One table row per (model, path): rows[(key, path)] = (params, first, wall, cpu)."""
    for (key, path), (params, first, wall, cpu) in rows.items():
        naive = [rows[(k, path)] for k in ("naive-xla", "naive") if (k, path) in rows]
        base = [min(n[i] for n in naive) if naive else None for i in (2, 3)]
        ref = (tf1["wall"], tf1["cpu"]) if tf1 else (None, None)
        print(f"| {cell_type} | {MODELS[key][0]} | {path} | {params:,} | {first:.1f} | "
              f"{wall:.3f} | {_ratio(base[0], wall)} | {_ratio(ref[0], wall)} | {cpu:.3f} | "
              f"{_ratio(base[1], cpu)} | {_ratio(ref[1], cpu)} |", flush=True)
    if tf1:
        naive = [v for (k, _), v in rows.items() if k.startswith("naive")]
        base = [min(n[i] for n in naive) if naive else None for i in (2, 3)]
        print(f"| {cell_type} | TF1 graph (dilated_rnn.legacy) | Session.run | "
              f"{tf1['params']:,} | {tf1['first']:.1f} | {tf1['wall']:.3f} | "
              f"{_ratio(base[0], tf1['wall'])} | 1.0x | {tf1['cpu']:.3f} | "
              f"{_ratio(base[1], tf1['cpu'])} | 1.0x |", flush=True)


def main(argv=None):
    args = parse_args(argv)
    run_conditions.apply_isa_or_exit(args.isa)  # before the kernels load
    monitor = run_conditions.LoadMonitor()
    print(monitor.header(
        run_conditions.load_kernels("DilatedRNN", native.load, native.library_path()),
        f"TF {tf.__version__}, Keras {keras.__version__}; {args.layers} layers of "
        f"{args.hidden}, dilations 1..{args.dilations[-1]}, batch {args.batch}, T "
        f"{args.n_steps}, loss on the {args.loss} output(s); train_on_batch: median of "
        f"{args.steps} steps; fit: {args.fit_batches} batches an epoch, median of epochs "
        f"2..{args.epochs}"), flush=True)
    rng = np.random.RandomState(0)
    samples = args.batch * args.fit_batches
    labels_shape = (samples,) + ((args.n_steps,) if args.loss == "every-step" else ())
    data = (rng.rand(samples, args.n_steps, 1).astype("float32"),
            rng.randint(0, 10, size=labels_shape))
    batch = (data[0][:args.batch], data[1][:args.batch])
    print("| cell | model | path | params | first step (s) | s/step | speed-up | vs TF1 "
          "| CPU s/step | CPU speed-up | CPU vs TF1 |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    summary = []
    for cell_type in args.cells:
        models, firsts = {}, {}
        for key in [m for m in args.models if m != TF1]:
            models[key], firsts[key] = build_and_first_step(key, cell_type, args, batch)
        timed = time_paths(models, batch, data, args)
        rows = {(key, path): (models[key].count_params(), firsts[key]) + times[key][:2]
                for key in models for path, times in timed.items()}
        keras.backend.clear_session()
        tf1 = tf1_graph_step(cell_type, args) if TF1 in args.models else None
        print_cell(cell_type, rows, tf1)
        if len(timed) == 2:
            summary += [f"| {cell_type} | {MODELS[key][0]} | {fit[0] / w:.2f} ({fit[1] / c:.2f}) "
                        f"| {fit[2] / w:.2f} ({fit[3] / c:.2f}) | {1e3 * fit[4]:.0f} "
                        f"({1e3 * fit[5]:.0f}) |"
                        for key, (w, c) in timed["train_on_batch"].items()
                        for fit in [timed["fit"][key]]]
    if summary:
        print("\nfit against train_on_batch, same run (CPU time in parentheses): an epoch's "
              "time over its steps, and the median step within epochs, over the "
              "train_on_batch step; what an epoch takes beyond its steps (iterator, "
              "callbacks):\n| cell | model | fit epoch / steps | fit step | epoch beyond "
              "steps (ms) |\n| --- | --- | ---: | ---: | ---: |\n" + "\n".join(summary))
    print(monitor.footer())


if __name__ == "__main__":
    main()
