"""TF1's `tf.train.RMSPropOptimizer` as a Keras 3 optimizer.

The DilatedRNN demo trains with `tf.train.RMSPropOptimizer(1e-3, 0.9)`.
Keras' `RMSprop` applies the same update (`ms = rho * ms + (1 - rho) * g^2`,
`var -= lr * g / sqrt(ms + epsilon)`, the same momentum and centred forms),
but it starts the mean-square accumulator at 0 where TF1 starts it at 1, and
its default epsilon is 1e-7 where TF1's is 1e-10. From 0, the first steps
divide by `sqrt(0.1 g^2)` and move every weight by about `3 * lr` whatever
its gradient; from 1 they move it by about `lr * g`. Over the demo's first
few hundred steps the two are different optimisers: on random gradients of
1e-6 to 1 (lr 1e-3, decay 0.9), after 6 steps Keras' weights were 5x as far
from `tf.compat.v1.train.RMSPropOptimizer`'s as those were from the start.
`TF1RMSprop` is Keras' `RMSprop` with TF1's start and defaults, so a migrated
script trains as the original did.

(Adam needs no class: Keras' `Adam` is TF1's update exactly, given TF1's
epsilon, `keras.optimizers.Adam(learning_rate, epsilon=1e-8)`.)
"""
import keras

from ind_rnn import _checks

# TF1's RMSPropOptimizer defaults.
TF1_RHO = 0.9
TF1_EPSILON = 1e-10
# The TF1 accumulator that starts at 1: Keras' RMSprop names it "velocity".
_MEAN_SQUARE_SLOT = "velocity"


@keras.saving.register_keras_serializable(package="dilated_rnn")
class TF1RMSprop(keras.optimizers.RMSprop):
    """RMSProp exactly as TF1's `tf.train.RMSPropOptimizer`: Keras' `RMSprop`, accumulators at 1.

    Takes the place of `tf.train.RMSPropOptimizer(learning_rate, decay, momentum,
    epsilon, centered=...)` in a migrated script: TF1's `decay` is Keras' `rho`,
    and the defaults are TF1's (rho 0.9, epsilon 1e-10). Everything else is Keras'
    `RMSprop` (schedules, clipping, `fit`, mixed precision, `tf.distribute`, saving).
    A model restored from a TF1 checkpoint by `load_tf1_checkpoint` gets the
    trained weights, not TF1's slots: this optimizer then starts as a fresh TF1
    one would.

    Args:
        learning_rate: a float or a `keras.optimizers.schedules.LearningRateSchedule`.
        rho: TF1's `decay`, the mean square's discount, in [0, 1) (default 0.9).
        momentum: a number >= 0 (default 0).
        epsilon: added to the mean square under the root, a number >= 0 (TF1's
            default 1e-10).
        centered: divide by the variance estimate (TF1's `centered`).
        **kwargs: Keras' optimizer arguments (`clipnorm`, `global_clipnorm`, `name`, ...).

    Raises:
        TypeError / ValueError: for a `rho`, `momentum` or `epsilon` that is not a
            number in its range, or a `centered` that is not a bool (the message names
            the argument, what is allowed and the value).

    Example:
        >>> import keras, dilated_rnn
        >>> model = dilated_rnn.DilatedRNNClassifier([20] * 9, [2 ** i for i in range(9)], 10)
        >>> # was: tf.train.RMSPropOptimizer(1e-3, 0.9).minimize(cost)
        >>> model.compile(dilated_rnn.TF1RMSprop(1e-3, rho=0.9),
        ...               keras.losses.CategoricalCrossentropy(from_logits=True))
    """

    def __init__(self, learning_rate=0.001, rho=TF1_RHO, momentum=0.0, epsilon=TF1_EPSILON,
                 centered=False, name="tf1_rmsprop", **kwargs):
        super().__init__(learning_rate=learning_rate, rho=_checks.rate("rho", rho),
                         momentum=_checks.non_negative_number("momentum", momentum),
                         epsilon=_checks.non_negative_number("epsilon", epsilon),
                         centered=_checks.boolean("centered", centered), name=name, **kwargs)

    def add_variable_from_reference(self, reference_variable, name=None, initializer="zeros"):
        # RMSprop.build makes its slots here (Keras 3.0 through today): TF1's
        # "rms" slot, Keras' "velocity", starts at ones. Created so rather than
        # assigned after build, which inside a traced step would re-run each step.
        if name == _MEAN_SQUARE_SLOT:
            initializer = "ones"
        return super().add_variable_from_reference(reference_variable, name=name,
                                                   initializer=initializer)
