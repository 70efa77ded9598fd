"""DilatedRNN training speed on padded (masked) batches, against the same model unpadded.

A user with sequences of different lengths pads them and masks the padding
(`keras.layers.Masking`). The models are the paper's pixel-MNIST demo stack
(9 layers of 20, dilations 1..256, batch 128, T 784, the class from the last
output), trained with RMSprop on fixed random data, as in
`benchmarks/drnn_speed.py`:

* "unpadded": `Input -> DilatedRNN -> Dense`, every sequence 784 steps, no
  mask: the kernels compute only the phases the last output reads;
* "padded": `Input -> Masking -> DilatedRNN -> Dense`, lengths drawn from
  [--min-length, 784], padded at the end: the layer moves each sequence's
  padding to its start (`dilated_rnn.layers.end_at_last_valid_steps`), and
  then skips phases as without a mask;
* "padded, every phase": the same, but every phase computed (`phases=[None]
  * 9` passed to the layer: what the library did with a mask before).

The `train_on_batch` ratios come from interleaved rounds (the two models
alternate, `benchmarks/step_timing.interleaved_ratio`); the `fit` figures
are the median wall seconds of a step within one-epoch `fit` calls over
`--fit-batches` batches (from `on_train_batch_begin` to `_end`; the epoch's
own overhead is `drnn_speed.py`'s subject), after an untimed call, the
models taking turns.

Flags:
  --cells RNN GRU LSTM   cell types (default all three)
  --rounds N             interleaved train_on_batch rounds of 3 steps (default 4)
  --fit-epochs N         timed fit epochs per model (default 2)
  --fit-batches N        batches per fit epoch (default 8)
  --min-length N         shortest padded sequence (default 392, half the demo's)
  --isa LEVEL            the fused kernels' level ($RNN_KERNELS_ISA), as drnn_speed.py
  --quick                smoke run: 3 layers, T 64, batch 16, 1 round, 1 fit epoch of 2

Run `python benchmarks/drnn_mask_speed.py` (about 5 minutes on 2 cores).
"""
import argparse
import os
import statistics
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import run_conditions  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402

from dilated_rnn import DilatedRNN, native  # noqa: E402
from step_timing import EpochTimer, interleaved_ratio  # noqa: E402

PAD = -1.0  # the padding value, which no pixel (in [0, 1)) takes


class EveryPhaseDilatedRNN(DilatedRNN):
    """`DilatedRNN` computing every phase (the baseline; not registered)."""

    def call(self, inputs, mask=None, training=None, phases=None, initial_state=None):
        return super().call(inputs, mask=mask, training=training,
                            phases=[None] * len(self.dilations))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", nargs="+", default=["RNN", "GRU", "LSTM"],
                        choices=["RNN", "GRU", "LSTM"])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--fit-epochs", type=int, default=2)
    parser.add_argument("--fit-batches", type=int, default=8)
    parser.add_argument("--min-length", type=int, default=392)
    parser.add_argument("--isa", default=None, help=run_conditions.ISA_HELP)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    args.layers, args.steps, args.batch = 9, 784, 128
    if args.quick:
        args.layers, args.steps, args.batch, args.min_length = 3, 64, 16, 32
        args.rounds, args.fit_epochs, args.fit_batches = 1, 1, 2
    if not 1 <= args.min_length <= args.steps:
        parser.error(f"--min-length must be in [1, {args.steps}], got {args.min_length}")
    if min(args.rounds, args.fit_epochs, args.fit_batches) < 1:
        parser.error("--rounds, --fit-epochs and --fit-batches must be at least 1")
    return args


def build(cell_type, args, padded, layer_class=DilatedRNN):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((args.steps, 1))
    x = keras.layers.Masking(PAD)(inputs) if padded else inputs
    x = layer_class([20] * args.layers, [2 ** i for i in range(args.layers)],
                    cell_type=cell_type)(x)
    model = keras.Model(inputs, keras.layers.Dense(10)(x))
    model.compile(keras.optimizers.RMSprop(1e-3, rho=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def data(args, padded, batches):
    rng = np.random.default_rng(0)
    x = rng.random((batches * args.batch, args.steps, 1), dtype=np.float32)
    if padded:
        lengths = rng.integers(args.min_length, args.steps + 1, size=len(x))
        x[np.arange(args.steps)[None, :] >= lengths[:, None]] = PAD
    return x, rng.integers(0, 10, size=len(x))


def fit_step_seconds(models, datasets, args):
    """Median wall seconds of a step within one-epoch `fit` calls, the models
    in turn, after an untimed call each (the first traces the step)."""
    times = {key: [] for key in models}
    for epoch in range(args.fit_epochs + 1):
        for key, model in models.items():
            timer = EpochTimer()
            model.fit(*datasets[key], batch_size=args.batch, epochs=1, verbose=0,
                      callbacks=[timer])
            if epoch > 0:
                times[key].extend(timer.step_seconds())
    return {key: statistics.median(t) for key, t in times.items()}


def _synchronous_step(model, batch):
    """One `train_on_batch` (which returns the loss as a number, so it has
    waited for the step), as the tensor-returning callable step_timing wants."""
    return lambda: keras.ops.convert_to_tensor(model.train_on_batch(*batch))


def one_cell(cell_type, args):
    models = {"unpadded": build(cell_type, args, padded=False),
              "padded": build(cell_type, args, padded=True),
              "every phase": build(cell_type, args, True, EveryPhaseDilatedRNN)}
    batches = {key: data(args, key != "unpadded", 1) for key in models}
    steps = {key: _synchronous_step(model, batches[key]) for key, model in models.items()}
    padded, unpadded, ratio, spread = interleaved_ratio(
        steps["padded"], steps["unpadded"], warmup=1, rounds=args.rounds)
    every, padded_again, every_ratio, every_spread = interleaved_ratio(
        steps["every phase"], steps["padded"], warmup=1, rounds=args.rounds)
    fit = fit_step_seconds(models, {key: data(args, key != "unpadded", args.fit_batches)
                                    for key in models}, args)
    print(f"| {cell_type} | {unpadded:.3f} / {fit['unpadded']:.3f} | "
          f"{padded:.3f} / {fit['padded']:.3f} ({ratio:.2f}x, {spread[0]:.2f}-{spread[1]:.2f}) | "
          f"{every:.3f} / {fit['every phase']:.3f} ({every_ratio:.2f}x the padded, "
          f"{every_spread[0]:.2f}-{every_spread[1]:.2f}) |", flush=True)


def main(argv=None):
    args = parse_args(argv)
    run_conditions.apply_isa_or_exit(args.isa)  # before the kernels load
    monitor = run_conditions.LoadMonitor()
    print(monitor.header(
        run_conditions.load_kernels("DilatedRNN", native.load, native.library_path()),
        f"demo stack: {args.layers} layers of 20, T {args.steps}, batch "
                         f"{args.batch}; padded lengths in [{args.min_length}, {args.steps}]"))
    print("| cell | unpadded s/step (train_on_batch / fit) | padded (over unpadded, "
          "rounds' range) | padded, every phase |")
    print("| --- | --- | --- | --- |")
    for cell_type in args.cells:
        one_cell(cell_type, args)
    print(monitor.footer())


if __name__ == "__main__":
    main()
