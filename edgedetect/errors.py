"""The one error type for user mistakes, and the one way to show a file name or message on one line.

The CLI prints an ``EdgeDetectError`` as a single line and exits non-zero; anything else is a bug and keeps
its traceback.
"""


class EdgeDetectError(Exception):
    """A user mistake or bad input: the message says what was received, what is valid and how to fix it."""


class ImageError(EdgeDetectError):
    """An input file that cannot be turned into an image (missing, not an image, truncated, too large).

    Attributes:
        path: the file as the user named it (``"<bytes>"`` for data with no name, ``None`` when unknown).
        problem: what is wrong with it, without the file name, for reports that name the file themselves.
    """

    def __init__(self, path, problem: str):
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(problem if self.path is None else f"{self.path}: {problem}")


class EdgeDetectWarning(UserWarning):
    """Something the user should know that does not stop the work (a model without metadata, a damaged cache).

    Library code emits it with :func:`warnings.warn`, never prints; the CLI shows each as one ``warning:`` line.
    """


class WriteError(EdgeDetectError, OSError):
    """An output file that could not be written (disk full, a file-size limit): the user's to fix, and still an
    OSError for callers that catch those."""


# Control characters (C0, DEL, C1): a newline in a file name would split a report line, an escape sequence would
# reach the terminal raw. Tabs are kept.
_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x00, 0x09), *range(0x0A, 0x20), *range(0x7F, 0xA0))}
_CONTROL.update({0x0A: "\\n", 0x0D: "\\r"})


def printable(text: str) -> str:
    """``text`` with control characters escaped (``\\n``, ``\\x1b``), so it prints as one inert line."""
    return text.translate(_CONTROL)
