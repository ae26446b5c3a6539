"""User-facing errors.

Anything a user can cause (a bad file, a wrong column, an unknown model or
parameter) raises :class:`ToprecError`. The CLI prints its message on one
line and exits with status 2; library callers can catch it.
"""

from __future__ import annotations


class ToprecError(Exception):
    """An input problem explained in one line (file, row, parameter...)."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
