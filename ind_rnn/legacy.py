"""The tf-keras / TF1 `IndRNNCell`, for `tf.keras` = tf-keras and `tf.compat.v1` code.

Step one of TensorFlow's migration path is to run the TF1 code unchanged on
TF 2.x through `tf.compat.v1`. The original `IndRNNCell` was a TF1
`LayerRNNCell`; this module provides it again, with the original signature
and variable names (`.../ind_rnn_cell/input_kernel`, `recurrent_kernel`,
`bias`, so TF1 checkpoints restore into it with a plain `Saver`), for

* the TF1 graph API: `tf.compat.v1.nn.dynamic_rnn`, `static_rnn`,
  `bidirectional_dynamic_rnn`, `tf.compat.v1.nn.rnn_cell.MultiRNNCell`;
* tf-keras: `tf.keras.layers.RNN(IndRNNCell(...))` with `fit`, `save` and
  `tf.keras.models.load_model` (registered as `ind_rnn>IndRNNCell`).

It needs the `legacy` extra (`pip install "drnn-indrnn-tf2[legacy]"`, which
installs tf-keras) and `TF_USE_LEGACY_KERAS=1` set before TensorFlow is first
imported: TensorFlow >= 2.16 provides its TF1 RNN cells
(`tf.compat.v1.nn.rnn_cell`) only through tf-keras. Importing this module
without them raises an ImportError that says so.

Under `TF_USE_LEGACY_KERAS=1` this class is also what the original's names
give: `ind_rnn.IndRNNCell` and `ind_rnn.ind_rnn_cell.IndRNNCell` (see
`ind_rnn.flavour`); under Keras 3 those are `ind_rnn.keras_cell.IndRNNCell`.
The maths is not repeated here: `call` runs
`ind_rnn.step.project_inputs`, `effective_recurrent_weight` and
`indrnn_step`, the functions every other IndRNN path uses.

Example (TF_USE_LEGACY_KERAS=1, graph mode):

    import tensorflow.compat.v1 as tf
    tf.disable_eager_execution()
    from ind_rnn.legacy import IndRNNCell

    inputs = tf.placeholder(tf.float32, [None, 100, 2])
    cell = tf.nn.rnn_cell.MultiRNNCell(
        [IndRNNCell(128, recurrent_max_abs=2 ** (1 / 100)) for _ in range(2)])
    outputs, state = tf.nn.dynamic_rnn(cell, inputs, dtype=tf.float32)
"""
import os

import tensorflow as tf

from ind_rnn import _checks, flavour
from ind_rnn.flavour import LEGACY_HELP  # noqa: F401 (re-exported)
from ind_rnn.step import effective_recurrent_weight, indrnn_step, project_inputs


def legacy_rnn_cells():
    """`tf.compat.v1.nn.rnn_cell`, checked to hold the TF1 cells.

    Returns:
        The `tf.compat.v1.nn.rnn_cell` module.

    Raises:
        ImportError: if TensorFlow serves the TF1 cells from nowhere (no
            tf-keras, or `TF_USE_LEGACY_KERAS` unset when TensorFlow was
            imported), with what to do about it.
    """
    try:
        rnn_cell = tf.compat.v1.nn.rnn_cell
        rnn_cell.BasicRNNCell  # pylint: disable=pointless-statement  (lazy: may raise)
    except (AttributeError, ImportError) as error:
        raise ImportError(
            f"The TF1 graph-mode API (ind_rnn.legacy, dilated_rnn.legacy) is unavailable: "
            f"{LEGACY_HELP} Here TF_USE_LEGACY_KERAS="
            f"{os.environ.get('TF_USE_LEGACY_KERAS')!r} ({error}).") from error
    return rnn_cell


def _layer_rnn_cell_class():
    # LayerRNNCell (the base of TF1's BasicRNNCell, GRUCell, ...) is not public
    # API; reaching it through a public cell's bases survives tf-keras moving it.
    bases = legacy_rnn_cells().BasicRNNCell.__mro__
    return next(base for base in bases if base.__name__ == "LayerRNNCell")


_LayerRNNCell = _layer_rnn_cell_class()


def _serializable(cls):
    # tf-keras's registry (tf.keras is tf-keras whenever this module imports),
    # so tf.keras.models.load_model finds the cell of a saved RNN layer: as
    # "ind_rnn>IndRNNCell" (.keras files), and by its class name, which is what
    # tf-keras' RNN layer writes for its cell in HDF5 files.
    cls = tf.keras.utils.register_keras_serializable(package="ind_rnn")(cls)
    tf.keras.utils.get_custom_objects().setdefault(cls.__name__, cls)
    return cls


def _initializer(value):
    """None (the original's default), a TF1 / tf-keras initializer, or its config / name."""
    if value is None or callable(value):
        return value
    return tf.keras.initializers.get(value)


@_serializable
class IndRNNCell(_LayerRNNCell):
    """The TF1 original's `IndRNNCell`: `h_t = act(x_t @ W + u * h_{t-1} + b)`.

    A `tf.compat.v1` RNN cell (a tf-keras `LayerRNNCell`) for graph-mode
    code (`tf.compat.v1.nn.dynamic_rnn`, `static_rnn`,
    `bidirectional_dynamic_rnn`, `MultiRNNCell`) and for tf-keras'
    `tf.keras.layers.RNN`. Same signature, defaults and variables as the
    original; the recurrent-weight bounds are applied on every step, so the
    stored weight keeps training.

    Args:
        num_units: positive int, number of units (state and output size).
        recurrent_min_abs: float >= 0; if non-zero, the recurrent weight used
            is `sign(u) * max(|u|, recurrent_min_abs)` (an exact 0 stays 0).
        recurrent_max_abs: float >= 0 or None; if non-zero, the recurrent
            weight used is clipped to `[-recurrent_max_abs, recurrent_max_abs]`.
        recurrent_kernel_initializer: TF1 or tf-keras initializer (or its
            name / config) of `recurrent_kernel` `[num_units]`; None: the
            original's constant 1.0.
        input_kernel_initializer: the same for `input_kernel`
            `[input_depth, num_units]`; None: the original's normal(0, 0.001).
        activation: elementwise activation (callable or Keras name); None
            means ReLU.
        reuse: TF1 variable reuse flag, as in every TF1 cell.
        name: layer name; the variable scope defaults to "ind_rnn_cell".
        **kwargs: other TF1 layer arguments (`dtype`, ...).

    Returns:
        `call(inputs, state)` returns `(output, new_state)`, the same
        `[batch, num_units]` tensor twice.

    Raises:
        TypeError / ValueError: for a non-positive or non-int `num_units`,
            negative bounds, `recurrent_min_abs > recurrent_max_abs`, an
            unknown activation, or inputs that are not rank 2 with a known
            last dimension.
        ind_rnn.flavour.KerasFlavourError (a TypeError): inside a Keras 3
            layer (`keras.layers.RNN`), which asks for an initial state
            without a dtype.

    Example (graph mode, TF_USE_LEGACY_KERAS=1):

        cell = IndRNNCell(128, recurrent_max_abs=2 ** (1 / 784))
        outputs, _ = tf.compat.v1.nn.dynamic_rnn(cell, inputs, dtype=tf.float32)
        # variables rnn/ind_rnn_cell/{input_kernel, recurrent_kernel, bias}

    Example (tf-keras, TF_USE_LEGACY_KERAS=1):

        model = tf.keras.Sequential([tf.keras.Input((100, 2)),
                                     tf.keras.layers.RNN(IndRNNCell(128)),
                                     tf.keras.layers.Dense(1)])
    """

    def __init__(self, num_units, recurrent_min_abs=0, recurrent_max_abs=None,
                 recurrent_kernel_initializer=None, input_kernel_initializer=None,
                 activation=None, reuse=None, name=None, **kwargs):
        super().__init__(_reuse=reuse, name=name, **kwargs)
        self.input_spec = tf.compat.v1.layers.InputSpec(ndim=2)
        self._num_units = _checks.positive_int("num_units", num_units)
        self._recurrent_min_abs = _checks.non_negative_number(
            "recurrent_min_abs", 0 if recurrent_min_abs is None else recurrent_min_abs)
        self._recurrent_max_abs = _checks.non_negative_number(
            "recurrent_max_abs", recurrent_max_abs, allow_none=True)
        if (self._recurrent_min_abs and self._recurrent_max_abs
                and self._recurrent_min_abs > self._recurrent_max_abs):
            raise ValueError(
                "Received an invalid value for argument `recurrent_min_abs`, expected a "
                f"value <= recurrent_max_abs={self._recurrent_max_abs}, got {recurrent_min_abs}.")
        self._activation = _checks.activation(activation)
        self._input_kernel_initializer = _initializer(input_kernel_initializer)
        self._recurrent_kernel_initializer = _initializer(recurrent_kernel_initializer)

    @property
    def state_size(self):
        return self._num_units

    @property
    def output_size(self):
        return self._num_units

    def build(self, inputs_shape):
        inputs_shape = tf.TensorShape(inputs_shape)
        # dimension_value: the same under TF1 (Dimension) and TF2 shapes.
        input_depth = (tf.compat.dimension_value(inputs_shape[-1])
                       if inputs_shape.rank == 2 else None)
        if input_depth is None:
            raise ValueError(
                "Received an invalid value for argument `inputs`, expected a tensor of rank 2 "
                f"[batch, input_depth] with a known last dimension, got shape {inputs_shape}.")
        self._input_kernel = self.add_weight(
            "input_kernel", shape=[input_depth, self._num_units],
            initializer=(self._input_kernel_initializer
                         or tf.compat.v1.random_normal_initializer(mean=0.0, stddev=0.001)))
        self._recurrent_kernel = self.add_weight(
            "recurrent_kernel", shape=[self._num_units],
            initializer=(self._recurrent_kernel_initializer
                         or tf.compat.v1.constant_initializer(1.0)))
        self._bias = self.add_weight(
            "bias", shape=[self._num_units],
            initializer=tf.compat.v1.zeros_initializer(dtype=self.dtype))
        self.built = True

    def call(self, inputs, state):  # pylint: disable=arguments-differ
        # The bounds are applied here, per step, not once in build(): the
        # original's build-time clipping is what froze `u` in eager ports.
        recurrent_weight = effective_recurrent_weight(
            self._recurrent_kernel, self._recurrent_min_abs, self._recurrent_max_abs)
        output = indrnn_step(project_inputs(inputs, self._input_kernel, self._bias),
                             recurrent_weight, state, self._activation)
        return output, output

    def get_initial_state(self, inputs=None, batch_size=None, dtype=None):
        """TF1's zero state; refuses the call of a Keras 3 RNN layer (no inputs, no dtype).

        Raises:
            ind_rnn.flavour.KerasFlavourError: when asked by a Keras 3 layer.
        """
        if inputs is None and dtype is None and batch_size is not None:
            raise flavour.unsupported(
                "the tf-keras / TF1 cell `ind_rnn.legacy.IndRNNCell` inside a Keras 3 layer "
                "(keras.layers.RNN, dilated_rnn.DilatedRNN, a keras.Model)",
                "tf.keras.layers.RNN(ind_rnn.IndRNNCell(...)) in a tf.keras model under "
                "TF_USE_LEGACY_KERAS=1; or, with Keras 3, ind_rnn.IndRNN or "
                "keras.layers.RNN(ind_rnn.keras_cell.IndRNNCell(...)) (same signature, weights "
                "and maths).")
        return super().get_initial_state(inputs=inputs, batch_size=batch_size, dtype=dtype)

    def get_config(self):
        def initializer_config(initializer):
            return None if initializer is None else tf.keras.initializers.serialize(initializer)

        config = {
            "num_units": self._num_units,
            "recurrent_min_abs": self._recurrent_min_abs,
            "recurrent_max_abs": self._recurrent_max_abs,
            "recurrent_kernel_initializer":
                initializer_config(self._recurrent_kernel_initializer),
            "input_kernel_initializer": initializer_config(self._input_kernel_initializer),
            "activation": getattr(self._activation, "__name__", self._activation),
            "reuse": self._reuse,
        }
        return {**super().get_config(), **config}
