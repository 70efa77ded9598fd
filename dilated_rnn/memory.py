"""The paper's memory-capacity measure: the mean recurrent length."""
import math

from dilated_rnn._validation import check_int_list, check_positive_int


def mean_recurrent_length(dilations, period=None):
    """Mean recurrent length of a stack of dilated recurrent layers.

    Chang et al. (2017, section 3.2) define, for a network whose connection
    pattern repeats every `m` steps, `d_i(n)`: the length of the shortest
    path from the node at time `i` to the node at time `i + n`, counted in
    recurrent (time-advancing) edges; the mean recurrent length is

        d_bar = (1 / m) * sum_{n=1..m} max_i d_i(n).

    In a stack of dilated layers, layer `k` joins every step `t` to
    `t + dilations[k]` and a path may climb layers freely at any step, so
    `d_i(n)` does not depend on `i`: it is the fewest hops, each of the size
    of some dilation, that add up to `n` (the fewest "coins" of values
    `dilations` that make `n`; not always the greedy choice: with dilations
    1, 3, 4, the span 6 takes 3 + 3). A plain RNN (`[1]`) gives
    `(m + 1) / 2`. If some span cannot be made (no dilation 1 and a span not
    a sum of dilations), the length is infinite.

    Args:
        dilations: list of positive ints, the dilation of each layer.
        period: positive int `m`, the spans averaged over; by default the
            largest dilation (the period of a 1, M, M^2, ... stack).

    Returns:
        The mean recurrent length, a float (`math.inf` if a span within
        the period is unreachable).

    Raises:
        ValueError: for bad `dilations` or `period`.

    Example:

    >>> mean_recurrent_length([1, 2, 4])  # spans 1..4 take 1, 1, 2, 1 hops
    1.25
    """
    hops = sorted(set(check_int_list("dilations", dilations)))
    period = max(hops) if period is None else check_positive_int(
        "period", period)
    fewest = [0] + [math.inf] * period
    for span in range(1, period + 1):
        fewest[span] = 1 + min(
            (fewest[span - hop] for hop in hops if hop <= span),
            default=math.inf)
    return sum(fewest[1:]) / period
