"""The one error type for user mistakes.

The CLI prints an ``EdgeDetectError`` as a single line and exits non-zero; anything else is a bug and keeps
its traceback.
"""


class EdgeDetectError(Exception):
    """A user mistake or bad input: the message says what was received, what is valid and how to fix it."""


class ImageError(EdgeDetectError):
    """An input file that cannot be turned into an image (missing, not an image, truncated, too large)."""
