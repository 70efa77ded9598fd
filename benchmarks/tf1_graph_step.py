"""One training step of the TF1 DilatedRNN demo graph, timed in graph mode.

The compatibility path: a TF1 script run unchanged on TF 2.x through
`tf.compat.v1` (`disable_v2_behavior`, placeholders, `Session`), with
`dilated_rnn.legacy.drnn_classification` (TF's own TF1 cells under
`dynamic_rnn`, one per layer; no fused kernels), softmax cross-entropy on
one-hot labels and RMSProp (lr 1e-3, decay 0.9), as the original demo.
`benchmarks/drnn_speed.py` runs it in a subprocess (it needs
`TF_USE_LEGACY_KERAS=1` before TensorFlow is imported, which this script
sets) and prints it as the "TF1 graph" row.

Usage:
  python benchmarks/tf1_graph_step.py --cell RNN [--steps 5] [--batch 128]
      [--n-steps 784] [--hidden 20] [--layers 9]

Flags:
  --cell     "RNN", "GRU" or "LSTM" (default RNN).
  --steps    timed steps after one untimed warm-up step (default 5).
  --batch, --n-steps, --hidden, --layers: the demo's sizes (128, 784, 20, 9;
             dilations 1, 2, 4, ... one per layer).

Prints one JSON line: `first` (building the graph, initialising and the first
step, in seconds), `wall` and `cpu` (median seconds of a step, CPU time of
all threads together), `params`, `steps`.
"""
import argparse
import json
import os
import statistics
import sys
import time

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

if __name__ == "__main__":  # run as a script: the repository's packages first
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dilated_rnn import legacy  # noqa: E402  (needs TF_USE_LEGACY_KERAS=1)

v1 = tf.compat.v1


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cell", choices=["RNN", "GRU", "LSTM"], default="RNN")
    parser.add_argument("--steps", type=int, default=5, help="timed steps after one warm-up")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--n-steps", type=int, default=784)
    parser.add_argument("--hidden", type=int, default=20)
    parser.add_argument("--layers", type=int, default=9)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    v1.disable_v2_behavior()
    dilations = [2 ** i for i in range(args.layers)]
    rng = np.random.RandomState(0)
    inputs = rng.rand(args.batch, args.n_steps, 1).astype("float32")
    labels = np.eye(10, dtype="float32")[rng.randint(0, 10, args.batch)]

    start = time.perf_counter()
    v1.set_random_seed(0)
    x = v1.placeholder(tf.float32, [None, args.n_steps, 1])
    y = v1.placeholder(tf.float32, [None, 10])
    logits = legacy.drnn_classification(x, [args.hidden] * args.layers, dilations,
                                        args.n_steps, 10, cell_type=args.cell)
    loss = tf.reduce_mean(v1.nn.softmax_cross_entropy_with_logits_v2(labels=y, logits=logits))
    train = v1.train.RMSPropOptimizer(learning_rate=1e-3, decay=0.9).minimize(loss)
    params = sum(int(np.prod(v.shape.as_list())) for v in v1.trainable_variables())
    feed = {x: inputs, y: labels}
    with v1.Session() as session:
        session.run(v1.global_variables_initializer())
        session.run(train, feed)
        first = time.perf_counter() - start
        session.run(train, feed)  # warm-up
        walls, cpus = [], []
        for _ in range(args.steps):
            wall, cpu = time.perf_counter(), time.process_time()
            session.run(train, feed)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
    print(json.dumps({"first": first, "wall": statistics.median(walls),
                      "cpu": statistics.median(cpus), "params": params,
                      "steps": args.steps}))


if __name__ == "__main__":
    main()
