"""One dilated recurrent layer: padding, phase-major interleaving, the loop.

A layer with dilation `rate` computes `output_t = cell(x_t, state_{t-rate})`
with a zero state for `t < rate`. As in the TF1 original, the sequence is
zero-padded at the end to a multiple of `rate` and dilated step `i` is the
batch-axis concatenation of steps `i*rate ... (i+1)*rate - 1`, so rows
`[j*batch, (j+1)*batch)` of the dilated batch hold phase `j`: the
sub-sequence `x_j, x_{j+rate}, x_{j+2*rate}, ...`. One ordinary recurrence
over the dilated sequence then serves all phases side by side.

In time-major layout (`[time, batch, features]`) that interleaving is a free
reshape, so everything here is time-major (and the C++ kernels read the
phases in place, without even the padding); `dilated_recurrence` is the one
recurrence that `DilatedRNN`, `dRNN`, `multi_dRNN_with_dilations` and
`drnn_classification` all run.
"""
import functools
import inspect
import logging

import tensorflow as tf

from dilated_rnn import loops, native
from dilated_rnn._validation import invalid
from dilated_rnn.cells import cell_output_size

_LOG = logging.getLogger(__name__)

IMPLEMENTATIONS = ("auto", "native", "xla", "while", "unrolled", "cell")

# Without the C++ kernels, "auto" unrolls loops of at most this many static
# steps. On 2 CPU cores, unrolled loops of 4 to 49 steps ran the demo's
# layers 1.2x to 2.4x faster than XLA loops (whose single-threaded code is
# slow on large batches); 16 keeps the unrolled graphs small.
UNROLL_MAX_STEPS = 16


def dilate(sequence, rate):
    """Time-major `[steps, batch, ...]` -> `[ceil(steps/rate), rate*batch, ...]`.

    Pads zeros (False for a mask) at the end up to a multiple of `rate`,
    then puts the `rate` phases side by side on the batch axis, phase-major.
    """
    padded = _pad_to_multiple(sequence, rate)
    shape = tf.shape(padded)
    dilated = tf.reshape(padded, tf.concat(
        [[-1, rate * shape[1]], shape[2:]], axis=0))
    steps, batch, *features = static_dims(sequence)
    dilated.set_shape(
        [None if steps is None else -(-steps // rate),
         None if batch is None else rate * batch] + features)
    return dilated


def undilate(sequence, rate, num_steps):
    """Inverse of `dilate`: back to `[num_steps, batch, ...]`.

    Splits every dilated step into its `rate` phases, lays them out in time
    order and drops the padded tail.
    """
    shape = tf.shape(sequence)
    batch = shape[1] // rate
    steps = tf.reshape(sequence, tf.concat([[-1, batch], shape[2:]], axis=0))
    padded_steps, static_batch, *features = static_dims(sequence)
    if not (isinstance(num_steps, int) and padded_steps is not None
            and padded_steps * rate == num_steps):
        # tf.slice, not [:n]: along the first axis it shares the buffer and
        # its gradient is a pad, where a strided slice copies both ways.
        steps = tf.slice(steps, tf.zeros([tf.rank(steps)], tf.int32),
                         tf.concat([[num_steps], [-1] * (steps.shape.rank - 1)],
                                   axis=0))
    steps.set_shape(
        [num_steps if isinstance(num_steps, int) else None,
         None if static_batch is None else static_batch // rate] + features)
    return steps


def static_dims(tensor):
    """The static shape as a list of ints and Nones, under TF2 and TF1 shapes.

    (`tensor.shape[i]` is a `Dimension` once `tf.compat.v1.disable_v2_behavior()`
    ran; legacy TF1 scripts do that, and the legacy API shares this code.)
    """
    return tensor.shape.as_list()


def _pad_to_multiple(sequence, rate):
    steps = static_dims(sequence)[0]
    if steps is not None:
        pad = -steps % rate
        if pad == 0:
            return sequence
    else:
        pad = tf.math.floormod(-tf.shape(sequence)[0], rate)
    paddings = [[0, pad]] + [[0, 0]] * (sequence.shape.rank - 1)
    return tf.pad(sequence, paddings)


def phases_read(num_steps, dilations, last_steps):
    """The phases of each layer that a stack's last outputs depend on.

    Layer `k` (dilation `d_k`) computes `h_k(t)` from `h_k(t - d_k)` and
    `h_{k-1}(t)`, so phase `q` of layer `k` reads only phase `q` of its own
    outputs and, below it, the outputs at the times `t = q (mod d_k)`. A caller
    that reads only the top layer's last `last_steps` outputs (a classifier)
    needs, in each layer, only the phases that reach them: in the demo stack
    (dilations 1, 2, ..., 256, the last output), one phase of each layer, so
    the layers' forward work adds up to about two full layers instead of nine.

    Args:
        num_steps: the sequence length, an int.
        dilations: the layers' dilations, bottom first.
        last_steps: how many of the top layer's last outputs are read.

    Returns:
        A list, per layer, of the sorted phases needed, or of `None` where
        all of them are.

    Example:

    >>> phases_read(8, [1, 2, 4], last_steps=1)
    [None, [1], [3]]
    """
    times = set(range(max(0, num_steps - last_steps), num_steps))
    needed = []
    for rate in reversed(dilations):
        # A time read in this layer needs the earlier steps of its phase; all
        # of them are read from the layer below.
        latest = {}
        for t in times:
            latest[t % rate] = max(latest.get(t % rate, t), t)
        times = {s for phase, last in latest.items()
                 for s in range(phase, last + 1, rate)}
        needed.append(None if len(latest) >= min(rate, num_steps)
                      else sorted(latest))
    return needed[::-1]


def dilated_recurrence(cell, inputs, rate, mask=None, training=None,
                       implementation="auto", phases=None):
    """Runs `cell` as a dilated recurrent layer over a time-major sequence.

    Args:
        cell: a Keras RNN cell. The TF1 cells of `dilated_rnn.cells` run
            their fused kernels; any other cell is stepped through `call`.
        inputs: `[steps, batch, features]` tensor.
        rate: the dilation, a positive int (may exceed `steps`).
        mask: `None` or boolean `[steps, batch]`. A masked step keeps its
            phase's previous state and outputs zeros.
        training: passed to cells that take it.
        implementation: one of `IMPLEMENTATIONS`, see `DilatedRNN`.
        phases: `None`, or the phases whose outputs the caller reads (see
            `phases_read`): the C++ kernels then skip the others (their
            outputs are zeros) unless their inputs hold NaN or inf. Other
            engines compute every phase; the outputs of the listed phases
            are the same either way.

    Returns:
        `[steps, batch, units]` outputs: `output_t = cell(x_t, state_{t-rate})`.
    """
    num_steps = static_dims(inputs)[0]
    dilated_steps = None if num_steps is None else -(-num_steps // rate)
    fused = (implementation != "cell"
             and getattr(cell, "supports_fused_sequence", False))
    engine = resolve_engine(implementation, dilated_steps, fused,
                            inputs.dtype)
    if engine == "native":
        # The C++ kernels read the dilated phases in place: no copies.
        outputs = cell.fused_sequence(inputs, mask, engine, rate=rate,
                                      phases=phases)
    else:
        dilated_mask = None if mask is None else dilate(mask, rate)
        dilated = dilate(inputs, rate)
        if fused:
            outputs = cell.fused_sequence(dilated, dilated_mask, engine)
        else:
            outputs = cell_sequence(cell, dilated, dilated_mask, training,
                                    engine)
        outputs = undilate(outputs, rate, tf.shape(inputs)[0]
                           if num_steps is None else num_steps)
    if mask is not None:
        outputs = zero_masked_steps(outputs, mask)
    return outputs


def zero_masked_steps(outputs, mask):
    """`outputs` `[steps, batch, units]` with zeros at masked steps.

    A select (zero even where the output is NaN or inf), forward and
    backward, as a multiplication by the 0/1 mask that ignores what it
    zeroes (`multiply_no_nan`), broadcast along the units. `tf.where` was
    slower: its gradient selects against a scalar zero, which makes
    TensorFlow broadcast every operand (Eigen's generic broadcast); the demo
    classifier's masked training step (LSTM, 2 Zen 1 cores) took 1.43-1.45x
    its unmasked step with it, 1.21-1.33x with this.
    """
    # The 0/1 mask at the outputs' full shape: against a `[steps, batch, 1]`
    # operand, TensorFlow's multiply_no_nan takes its generic broadcasting
    # path (0.64 ms an op for the demo's [784, 128, 20] on a Zen 4, against
    # 0.25 ms same-shaped; the padded demo RNN step went 0.032 -> 0.026 s).
    keep = tf.broadcast_to(tf.cast(mask, outputs.dtype)[..., None], tf.shape(outputs))

    @tf.custom_gradient
    def select(values):
        def grad(upstream):
            return tf.math.multiply_no_nan(upstream, keep)
        return tf.math.multiply_no_nan(values, keep), grad

    return select(outputs)


def resolve_engine(implementation, num_steps, fused, dtype=tf.float32):
    """Picks the loop engine (one of `dilated_rnn.kernels.ENGINES`) for one loop."""
    if implementation not in IMPLEMENTATIONS:
        raise invalid("implementation", f"one of {IMPLEMENTATIONS}",
                      implementation)
    if implementation == "unrolled" and num_steps is None:
        raise ValueError(
            "Received an invalid value for argument `implementation`, "
            "expected 'unrolled' only for inputs with a known number of "
            "time steps, got 'unrolled' for an unknown number of steps.")
    short = num_steps is not None and num_steps <= UNROLL_MAX_STEPS
    if implementation == "cell" or not fused:
        # Stepping a cell's `call`, differentiated by TensorFlow: XLA would
        # compile that differentiated loop slower than a plain one runs.
        if implementation == "unrolled" or (
                implementation in ("auto", "cell") and short):
            return "unrolled"
        return "while"
    native_runs = native.available(dtype) and not in_xla_context()
    if implementation == "native" and not native_runs:
        _LOG.warning("implementation='native' is unavailable for dtype %s "
                     "here (or inside XLA); using 'auto'.", dtype.name)
        implementation = "auto"
    if implementation != "auto":
        return implementation
    if native_runs:
        return "native"
    if short:
        return "unrolled"
    return "xla" if xla_available() else "while"


def in_xla_context():
    """Whether the graph being built will be compiled by XLA as a whole.

    Inside `tf.function(jit_compile=True)` (say, a training step the user
    compiles with XLA) the C++ kernels cannot run: XLA has no kernel for
    them.
    """
    try:
        # pylint: disable=import-outside-toplevel
        from tensorflow.python.ops import control_flow_util
        return control_flow_util.GraphOrParentsInXlaContext(
            tf.compat.v1.get_default_graph())
    except (ImportError, AttributeError):  # a TF without this helper
        return False


@functools.lru_cache(maxsize=None)
def xla_available():
    """Whether XLA can compile a loop here (checked once, eagerly)."""
    with tf.init_scope():
        try:
            probe = tf.function(lambda x: x + 1.0, jit_compile=True)
            probe(tf.constant(1.0))
        except (tf.errors.OpError, NotImplementedError, ValueError) as error:
            _LOG.warning("XLA is unavailable, dilated_rnn uses plain "
                         "TensorFlow loops: %s", error)
            return False
    return True


def cell_sequence(cell, inputs, mask=None, training=None, engine="while"):
    """Steps any Keras RNN cell over a time-major sequence (zero state).

    This is the path for cells without a fused kernel; TensorFlow
    differentiates the loop. Nested states (LSTM's two) are carried whole;
    `mask` is `None` or boolean `[steps, batch]`, and outputs at masked
    steps are unspecified.
    """
    batch = tf.shape(inputs)[1]
    initial = _initial_state(cell, batch, inputs.dtype)
    flat_initial = tuple(tf.nest.flatten(initial))
    call_kwargs = _training_kwargs(cell, training)
    _prepare_dropout_masks(cell, inputs[0], flat_initial[0])

    def step(carry, x_t, m_t):
        states = tf.nest.pack_sequence_as(initial, list(carry))
        output, new_states = cell(x_t, states, **call_kwargs)
        new_flat = tuple(tf.nest.flatten(new_states))
        if m_t is not None:
            new_flat = tuple(tf.where(m_t[:, None], new, old)
                             for new, old in zip(new_flat, carry))
        return new_flat, (output,)

    out_spec = (inputs.dtype, tf.TensorShape(
        [static_dims(inputs)[1], cell_output_size(cell)]))
    _, (outputs,) = loops.run_loop(step, flat_initial, (inputs, mask),
                                   (out_spec,), engine)
    _reset_dropout_masks(cell)
    return outputs


def _initial_state(cell, batch, dtype):
    """Zero initial state as a list, the form Keras' RNN passes to cells."""
    get_initial_state = getattr(cell, "get_initial_state", None)
    if get_initial_state is not None:
        state = get_initial_state(batch_size=batch)
    else:
        state = tf.nest.map_structure(
            lambda size: tf.zeros([batch, size], dtype), cell.state_size)
    state = list(state) if isinstance(state, (list, tuple)) else [state]
    return tf.nest.map_structure(lambda s: tf.cast(s, dtype), state)


def _training_kwargs(cell, training):
    try:
        parameters = inspect.signature(cell.call).parameters
    except (TypeError, ValueError):
        return {}
    return {"training": training} if "training" in parameters else {}


def _prepare_dropout_masks(cell, first_input, first_state):
    # Keras' dropout cells make their masks lazily on first use; making them
    # here, outside the loop, keeps them out of the loop body's graph (as
    # keras.layers.RNN does).
    if hasattr(cell, "get_dropout_mask"):
        cell.get_dropout_mask(first_input)
    if hasattr(cell, "get_recurrent_dropout_mask"):
        cell.get_recurrent_dropout_mask(first_state)


def _reset_dropout_masks(cell):
    for name in ("reset_dropout_mask", "reset_recurrent_dropout_mask"):
        if hasattr(cell, name):
            getattr(cell, name)()
