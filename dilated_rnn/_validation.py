"""Argument checks shared by the layers and the TF1-named functions.

Messages follow Keras: "Received an invalid value for argument `name`,
expected ..., got ...".
"""
import numbers


def invalid(argument, expected, value):
    """Builds the Keras-style ValueError for one bad argument."""
    return ValueError(
        f"Received an invalid value for argument `{argument}`, expected "
        f"{expected}, got {value!r}.")


def is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_positive_int(value):
    return is_int(value) and value >= 1


def check_positive_int(argument, value):
    """Returns `value` as an int, or raises if it is not an integer >= 1."""
    if not is_positive_int(value):
        raise invalid(argument, "a positive integer", value)
    return int(value)


def check_int_list(argument, values):
    """Returns a non-empty list of positive ints, or raises ValueError."""
    if (isinstance(values, (str, bytes)) or not hasattr(values, "__iter__")
            or not list(values)
            or not all(is_positive_int(v) for v in values)):
        raise invalid(argument, "a non-empty list of positive integers",
                      values)
    return [int(v) for v in values]


def check_same_length(first_name, first, second_name, second):
    """Raises ValueError unless the two per-layer lists line up."""
    if len(first) != len(second):
        raise ValueError(
            f"Received an invalid value for argument `{second_name}`, "
            f"expected one entry per entry of `{first_name}` "
            f"({len(first)}), got {len(second)}: {list(second)!r}.")


def check_one_of(argument, value, allowed):
    if value not in allowed:
        raise invalid(argument, f"one of {tuple(allowed)}", value)
    return value
