"""The loop driver of the TensorFlow recurrences: a step function over the time axis.

`run_loop` runs `step(carry, *slices)` over time-major sequences, as a
`tf.while_loop` over `TensorArray`s (which XLA compiles: callers that want XLA
compile a function that calls it) or unrolled in Python for a static number of
steps. The recurrences of `dilated_rnn.kernels` and the generic cell loop of
`dilated_rnn.dilation` both run on it.
"""
import tensorflow as tf


def run_loop(step, carry, sequences, out_specs, engine, reverse=False):
    """Runs `step` over the leading (time) axis of `sequences`.

    Args:
        step: `step(carry, *slices) -> (carry, outputs)`, `outputs` a tuple.
        carry: tuple of tensors carried from step to step.
        sequences: tuple of time-major tensors read one slice per step
            (`None` entries are passed to `step` as `None`).
        out_specs: one `(dtype, per-step TensorShape)` per output of `step`.
        engine: "while" or "unrolled". (XLA callers compile a function that
            calls this with "while".)
        reverse: run from the last step to the first.

    Returns:
        `(final_carry, outputs)`, `outputs` a tuple of time-major tensors.
    """
    if engine == "unrolled":
        return _run_unrolled(step, carry, sequences, reverse)
    return _run_while(step, carry, sequences, out_specs, reverse)


def _run_unrolled(step, carry, sequences, reverse):
    num_steps = _first(sequences).shape[0]
    slices = [[None] * num_steps if s is None else tf.unstack(s)
              for s in sequences]
    outputs = [None] * num_steps
    order = range(num_steps - 1, -1, -1) if reverse else range(num_steps)
    for t in order:
        carry, outputs[t] = step(carry, *[s[t] for s in slices])
    return carry, tuple(tf.stack(per_step) for per_step in zip(*outputs))


def _run_while(step, carry, sequences, out_specs, reverse):
    num_steps = tf.shape(_first(sequences))[0]
    readers = [
        None if s is None else tf.TensorArray(
            s.dtype, size=num_steps, element_shape=s.shape[1:]).unstack(s)
        for s in sequences
    ]
    writers = tuple(
        tf.TensorArray(dtype, size=num_steps, element_shape=shape)
        for dtype, shape in out_specs)

    def body(i, carry, writers):
        t = num_steps - 1 - i if reverse else i
        carry, outputs = step(
            carry, *[None if r is None else r.read(t) for r in readers])
        return i + 1, carry, tuple(
            w.write(t, o) for w, o in zip(writers, outputs))

    # maximum_iterations bounds the TensorArrays statically, which XLA needs
    # to compile the loop.
    _, carry, writers = tf.while_loop(
        lambda i, *_: i < num_steps, body, (tf.constant(0), carry, writers),
        maximum_iterations=num_steps)
    return carry, tuple(w.stack() for w in writers)


def _first(sequences):
    return next(s for s in sequences if s is not None)
