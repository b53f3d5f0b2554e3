"""The errors aekit raises on purpose about what a user passed.

:class:`InputError` marks a refusal: bad data, a bad parameter, a file that is not what it
should be. It is a ``ValueError`` (so scikit-learn's conventions hold) that the command
line prints as one line; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class InputError(ValueError):
    """aekit refuses an input; the message says what was received and what to do."""


@contextmanager
def input_checks() -> Iterator[None]:
    """Turn the ``ValueError`` of a validation call made for the user (scikit-learn's
    ``check_array``, ``column_or_1d``, ...) into an :class:`InputError`."""
    try:
        yield
    except InputError:
        raise
    except ValueError as exc:
        raise InputError(str(exc)) from exc
