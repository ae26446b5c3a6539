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
        text = " ".join(str(message).split())  # one line
        if not text.isprintable():  # bytes of a binary file quoted in the message: no terminal control codes
            text = "".join(c if c.isprintable() else "?" for c in text)
        super().__init__(text)
