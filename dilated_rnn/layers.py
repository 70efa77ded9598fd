"""The Keras `DilatedRNN` layer: a stack of dilated recurrent layers."""
import keras
import tensorflow as tf

from dilated_rnn import cells as cells_lib
from dilated_rnn import dilation
from dilated_rnn._validation import check_int_list, check_positive_int
from dilated_rnn._validation import check_same_length
from dilated_rnn._validation import invalid, is_int
from ind_rnn import flavour


@keras.saving.register_keras_serializable(package="dilated_rnn")
class DilatedRNN(keras.layers.Layer):
    """A stack of dilated recurrent layers (Chang et al., 2017).

    Layer `k` connects every step to the step `dilations[k]` before it:
    `output_t = cell_k(x_t, state_{t - dilations[k]})`, with a zero state for
    `t < dilations[k]`, and feeds its outputs to layer `k + 1`. A layer with
    dilation `d` runs `ceil(T / d)` sequential steps on a `d` times larger
    batch.

    Give either `hidden_structs` (units per layer, with `cell_type`) or
    `cells` (one Keras RNN cell per layer). The TF1 cells of
    `dilated_rnn.cells` (what `cell_type` "RNN", "LSTM", "GRU" builds) run
    fused kernels with a hand-derived backward pass: on CPU, C++ kernels
    (compiled on first use, see `dilated_rnn.native`) that run a whole layer
    per op; elsewhere TensorFlow loops (see `dilated_rnn.kernels`). Other
    cells (e.g. `ind_rnn.IndRNNCell`, Keras' own) are stepped through
    `call`, in a loop TensorFlow differentiates.

    Args:
        hidden_structs: list of positive ints, the units of each layer.
        dilations: list of positive ints, one per layer. Any value is
            accepted, also more than the number of time steps.
        cell_type: "RNN", "LSTM", "GRU" or "IndRNN", with `hidden_structs`.
        cells: list of Keras RNN cells, instead of `hidden_structs`.
        return_sequences: return every step (`[batch, time, units]`) instead
            of the output at each sequence's last valid step.
        time_major: inputs (and mask, and returned sequences) are
            `[time, batch, ...]`.
        implementation: how the TF1 cells loop over time. "auto"
            (default): the C++ kernels for float32/float64 on CPU; otherwise
            (float16, GPU, inside an XLA-compiled function, no compiler)
            loops of at most `dilation.UNROLL_MAX_STEPS` static steps are
            unrolled and longer ones XLA-compiled (plain loops if XLA is
            unavailable). "native", "xla", "while" (plain `tf.while_loop`),
            "unrolled" (needs a known time length) force one engine;
            "cell" steps every cell through its `call` and lets TensorFlow
            differentiate (slow; the only one with second derivatives).
            All compute the same numbers.
        go_backwards: process the sequence from its last step to its first
            and return the outputs in that (reversed) order, as Keras' RNN
            layers do; `keras.layers.Bidirectional` sets it on its backward
            copy. The mask is reversed with the inputs, so a sequence padded
            at its end starts with padding, which changes nothing (see
            `mask`). With `return_sequences` it needs `time_major=False`:
            `Bidirectional` flips the backward outputs along axis 1.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`...).

    Call arguments:
        inputs: `[batch, time, features]` (`time` may be unknown).
        mask: optional boolean `[batch, time]`. A masked step keeps its
            phase's state and outputs zeros, so padding (before or after a
            sequence) never changes the outputs at valid steps, and the last
            output is each sequence's last valid step.
        training: passed to cells that take it.
        phases: `None`, or per layer the phases whose outputs are needed
            (`None` for all), as `dilation.phases_read` gives them for a
            caller that reads only the last outputs: on CPU the kernels skip
            the others, whose outputs are then zeros. The layer finds them
            itself without `return_sequences` (with a mask, after moving
            each sequence's trailing masked steps to its start: see
            `end_at_last_valid_steps`) and with `last_steps`; a caller
            that reads other outputs only passes them.
            With `go_backwards` they are phases of the reversed sequence.
        last_steps: `None`, or a positive int: return each sequence's
            outputs at its last `last_steps` valid steps, oldest first, side
            by side (`last_valid_steps`; the TF1 classifier's fusion of the
            top layer's last `dilations[0]` outputs), computing only what
            they depend on, whatever `return_sequences` says.
        initial_state: must be `None`: every phase starts from a zero state,
            as in the TF1 original (the argument exists because
            `keras.layers.Bidirectional` passes it).

    Returns:
        `[batch, last_steps * units]` with `last_steps`, else
        `[batch, time, units]` if `return_sequences`, else `[batch, units]`.

    Raises:
        ValueError: for bad `hidden_structs`, `dilations`, `cell_type`,
            `cells`, `implementation`, `go_backwards` with `time_major` and
            `return_sequences`, an `initial_state`, or inputs that are not
            rank 3.

    Example:

    >>> layer = DilatedRNN([20] * 3, [1, 2, 4], cell_type="GRU")
    >>> layer(np.zeros((8, 50, 1), "float32")).shape
    TensorShape([8, 20])
    >>> both = keras.layers.Bidirectional(
    ...     DilatedRNN([20] * 3, [1, 2, 4], return_sequences=True))
    >>> both(np.zeros((8, 50, 1), "float32")).shape
    TensorShape([8, 50, 40])
    """

    def __init__(self, hidden_structs=None, dilations=None, cell_type="RNN",
                 cells=None, return_sequences=False, time_major=False,
                 implementation="auto", go_backwards=False, **kwargs):
        super().__init__(**kwargs)
        self.dilations = check_int_list("dilations", dilations)
        if (hidden_structs is None) == (cells is None):
            raise invalid("hidden_structs", "exactly one of `hidden_structs`"
                          " and `cells` to be given", hidden_structs)
        if cells is None:
            self.hidden_structs = check_int_list("hidden_structs",
                                                 hidden_structs)
            check_same_length("hidden_structs", self.hidden_structs,
                              "dilations", self.dilations)
            self._given_cells = False
            cells = cells_lib.construct_cells(self.hidden_structs, cell_type)
            for cell in cells:
                # Built cells follow this layer's dtype policy.
                cell.dtype_policy = self.dtype_policy
        else:
            cells = list(cells) if isinstance(cells, (list, tuple)) else cells
            if not isinstance(cells, list) or not all(
                    hasattr(c, "state_size") and callable(c) for c in cells):
                raise invalid("cells", "a list of Keras RNN cells", cells)
            check_same_length("cells", cells, "dilations", self.dilations)
            self.hidden_structs = [cells_lib.cell_output_size(c)
                                   for c in cells]
            self._given_cells = True
        if implementation not in dilation.IMPLEMENTATIONS:
            raise invalid("implementation",
                          f"one of {dilation.IMPLEMENTATIONS}",
                          implementation)
        self.cell_type = cell_type
        self.cells = cells
        self.return_sequences = bool(return_sequences)
        self.time_major = bool(time_major)
        self.implementation = implementation
        self.go_backwards = bool(go_backwards)
        if self.go_backwards and self.time_major and self.return_sequences:
            raise ValueError(
                "Received go_backwards=True with time_major=True and "
                "return_sequences=True: keras.layers.Bidirectional reverses "
                "the backward layer's sequences along axis 1, which is the "
                "batch axis of time-major outputs. Use time_major=False "
                "(transpose the inputs), or reverse time-major inputs "
                "yourself with tf.reverse(inputs, [0]).")
        # What keras.layers.Bidirectional reads off the layer it wraps.
        self.return_state = False
        self.stateful = False
        self.supports_masking = True
        # The layer runs its own kernels and loops. Keras' default
        # jit_compile="auto" would XLA-compile the whole training step,
        # where the C++ kernels cannot run and XLA's own loops are slower:
        # opt out, as Keras' LSTM does for cuDNN.
        self.supports_jit = False

    @property
    def units(self):
        """Number of output features (the top layer's units)."""
        return self.hidden_structs[-1]

    def build(self, input_shape):
        if len(input_shape) != 3 or input_shape[-1] is None:
            raise ValueError(
                f"Received an invalid input shape for DilatedRNN "
                f"`{self.name}`, expected rank 3 ([batch, time, features] or "
                f"[time, batch, features] with time_major) with a known "
                f"number of features, got {tuple(input_shape)}.")
        features = int(input_shape[-1])
        for cell in self.cells:
            if not cell.built:
                cell.build((None, features))
            features = cells_lib.cell_output_size(cell)

    def call(self, inputs, mask=None, training=None, phases=None,
             initial_state=None, last_steps=None):
        flavour.check_keras3_layer_inputs(self, inputs)
        if inputs.shape.rank != 3:
            raise invalid("inputs", "a rank-3 tensor", inputs.shape)
        if initial_state is not None:
            raise invalid("initial_state", "None (every phase of a "
                          "DilatedRNN starts from a zero state, as in the "
                          "TF1 original)", initial_state)
        sequence = inputs if self.time_major else tf.transpose(
            inputs, [1, 0, 2])
        if mask is not None:
            mask = tf.cast(mask, tf.bool)
            mask = mask if self.time_major else tf.transpose(mask)
        if self.go_backwards:
            # Time-major from here on: reverse the time axis, 0.
            sequence = tf.reverse(sequence, [0])
            mask = None if mask is None else tf.reverse(mask, [0])
        if last_steps is not None:
            last_steps = check_positive_int("last_steps", last_steps)
        elif not self.return_sequences:
            last_steps = 1
        num_steps = sequence.shape[0]
        if phases is not None:
            phases = self._checked_phases(phases)
        elif last_steps is None or num_steps is None:
            phases = [None] * len(self.dilations)  # every output may be read
        else:
            if mask is not None:
                sequence, mask = end_at_last_valid_steps(sequence, mask)
            phases = dilation.phases_read(num_steps, self.dilations,
                                          last_steps)
        for cell, rate, needed in zip(self.cells, self.dilations, phases):
            sequence = dilation.dilated_recurrence(
                cell, sequence, rate, mask, training, self.implementation,
                phases=needed)
        if last_steps is not None:
            return last_valid_steps(sequence, mask, count=last_steps)
        return sequence if self.time_major else tf.transpose(
            sequence, [1, 0, 2])

    def _checked_phases(self, phases):
        expected = (f"a list of {len(self.dilations)} entries (one per "
                    "layer), each None or a list of phases 0 <= q < dilation "
                    f"(dilations {self.dilations})")
        if (not isinstance(phases, (list, tuple))
                or len(phases) != len(self.dilations)):
            raise invalid("phases", expected, phases)
        for needed, rate in zip(phases, self.dilations):
            if needed is not None and (
                    not isinstance(needed, (list, tuple))
                    or not all(is_int(q) and 0 <= q < rate for q in needed)):
                raise invalid("phases", expected, phases)
        return [None if needed is None else [int(q) for q in needed]
                for needed in phases]

    def compute_mask(self, inputs, mask=None):
        # As Keras' RNN layers, also with go_backwards: the input mask,
        # not reversed (Bidirectional reverses the outputs back).
        return mask if self.return_sequences else None

    def compute_output_shape(self, input_shape):
        if not self.return_sequences:
            batch = input_shape[1] if self.time_major else input_shape[0]
            return (batch, self.units)
        return tuple(input_shape[:2]) + (self.units,)

    def get_config(self):
        config = super().get_config()
        config.update({
            "dilations": self.dilations,
            "return_sequences": self.return_sequences,
            "time_major": self.time_major,
            "implementation": self.implementation,
            "go_backwards": self.go_backwards,
        })
        if self._given_cells:
            config["cells"] = [keras.saving.serialize_keras_object(c)
                               for c in self.cells]
        else:
            config["hidden_structs"] = self.hidden_structs
            config["cell_type"] = self.cell_type
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if "cells" in config:
            config["cells"] = [keras.saving.deserialize_keras_object(c)
                               for c in config["cells"]]
        return cls(**config)


def last_valid_index(mask):
    """Per column of a time-major `[time, batch]` mask, the index of its
    last True step, int32 `[batch]`; -1 where a sequence has none."""
    mask = tf.cast(mask, tf.bool)
    last = tf.shape(mask)[0] - 1 - tf.argmax(
        tf.reverse(tf.cast(mask, tf.int32), [0]), axis=0, output_type=tf.int32)
    return tf.where(tf.reduce_any(mask, axis=0), last, -1)


def end_at_last_valid_steps(sequence, mask):
    """Rolls each sequence in time so that its last valid step is the last.

    The masked steps after a sequence's last valid (unmasked) step move to
    its start, where masked steps change nothing (each keeps its phase's zero
    state and outputs zeros): the outputs at valid steps, and so each
    sequence's last outputs, are the same, but now every sequence ends at the
    last step. A stack that reads only its last outputs then needs the same
    few phases in every sequence (`dilation.phases_read`), which the kernels
    compute alone, as without a mask. A sequence with no valid step stays.

    Args:
        sequence: time-major `[time, batch, features]`.
        mask: boolean time-major `[time, batch]`.

    Returns:
        `(sequence, mask)`, both rolled.

    Example:

    >>> sequence = tf.reshape(tf.range(6.0), [3, 2, 1])  # x[t, b] = 2t + b
    >>> mask = tf.constant([[True, True], [True, True], [True, False]])
    >>> rolled, rolled_mask = end_at_last_valid_steps(sequence, mask)
    >>> rolled[:, :, 0].numpy().T  # the second sequence's padding moved first
    array([[0., 2., 4.],
           [5., 1., 3.]], dtype=float32)
    >>> rolled_mask.numpy().T
    array([[ True,  True,  True],
           [False,  True,  True]])
    """
    num_steps = tf.shape(mask)[0]
    last = last_valid_index(mask)
    shift = tf.where(last >= 0, num_steps - 1 - last, 0)
    # Step t of the rolled sequence b is step (t - shift_b) mod T of b.
    source = (tf.range(num_steps)[:, None] - shift[None, :]) % num_steps
    columns = tf.broadcast_to(tf.range(tf.shape(mask)[1]), tf.shape(source))
    indices = tf.stack([source, columns], axis=-1)
    return tf.gather_nd(sequence, indices), tf.gather_nd(mask, indices)


def last_valid_steps(sequence, mask=None, count=1):
    """Concatenates the outputs of the last `count` steps of each sequence.

    The window ends at each sequence's last valid (unmasked) step and is laid
    out oldest first along the features: `[batch, count * units]`. Steps
    before the start of the sequence, and masked steps, contribute zeros
    (outputs of masked steps are zero). With `count == dilations[0]` this is
    the TF1 original's fusion of the top layer's last outputs.

    Args:
        sequence: time-major `[time, batch, units]`.
        mask: `None` or boolean time-major `[time, batch]`.
        count: positive int, the number of steps.

    Returns:
        `[batch, count * units]`.

    Example:

    >>> sequence = tf.reshape(tf.range(6.0), [3, 2, 1])  # x[t, b] = 2t + b
    >>> last_valid_steps(sequence, tf.constant([[True, True],
    ...                                         [True, True],
    ...                                         [True, False]]), count=2)
    <tf.Tensor: shape=(2, 2), dtype=float32, numpy=
    array([[2., 4.],
           [1., 3.]], dtype=float32)>
    """
    units = sequence.shape[-1]
    if mask is None:
        window = sequence[-count:]
        pad = count - tf.shape(window)[0]
        window = tf.pad(window, [[pad, 0], [0, 0], [0, 0]])
    else:
        steps = (last_valid_index(mask)[None, :] - count + 1
                 + tf.range(count)[:, None])
        columns = tf.broadcast_to(tf.range(tf.shape(mask)[1]), tf.shape(steps))
        window = tf.gather_nd(
            sequence, tf.stack([tf.maximum(steps, 0), columns], axis=-1))
        window = tf.where((steps >= 0)[..., None], window,
                          tf.zeros_like(window))
    window = tf.transpose(window, [1, 0, 2])
    return tf.reshape(window, [-1, count * units])
