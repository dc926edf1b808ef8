"""How every command prints: results on stdout; errors, warnings, log lines and progress on stderr.

Plain lines go through ``echo``/``error``/``warning``, tables through the rich consoles ``stdout()``/``stderr()``,
library log callbacks are ``log()``, and a progress bar is drawn only when ``show_progress`` says so.
"""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Callable, Iterator, Optional

import typer

from edgedetect.errors import printable

# Piped or redirected, rich would fold tables at 80 columns; one line per row reads (and greps) better.
PIPED_WIDTH = 100_000


def stdout(piped_width: Optional[int] = PIPED_WIDTH, highlight: bool = True):
    """The rich console for results. Piped or redirected it is ``piped_width`` wide (None: rich's 80 columns)."""
    from rich.console import Console

    console = Console(highlight=highlight)
    if piped_width is not None and not console.is_terminal:
        console = Console(highlight=highlight, width=piped_width)
    return console


def stderr():
    """The rich console for everything that is not a result; a line is never folded."""
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True, highlight=False)


def echo(text: str = "") -> None:
    """One plain line of results on stdout."""
    typer.echo(text)


def error(message: str) -> None:
    """``error: message`` as one line on stderr."""
    typer.echo(f"error: {printable(message)}", err=True)


def warning(message: str) -> None:
    """``warning: message`` as one line on stderr."""
    typer.echo(f"warning: {printable(message)}", err=True)


def print_json(doc, **dumps) -> None:
    """``doc`` as one indented JSON document on stdout (nothing else may share stdout with it)."""
    sys.stdout.write(json.dumps(doc, indent=1, **dumps) + "\n")
    sys.stdout.flush()


def log(style: Optional[str] = None) -> Callable[[str], None]:
    """A library's ``log`` callback: each line as it comes, on stderr, as plain text (``style``: e.g. ``"dim"``)."""
    console = stderr()
    return lambda line: console.print(line, style=style, markup=False, emoji=False)


def show_progress(requested: bool = True) -> bool:
    """Whether a progress bar may be drawn: asked for and stderr is a terminal (never into a log or a pipe)."""
    return requested and stderr().is_terminal


@contextlib.contextmanager
def progress_bar(label: str, requested: bool = True) -> Iterator[Optional[Callable[[int, Optional[int]], None]]]:
    """A transient bar on stderr while the block runs; yields ``update(done, total)``, or None when not shown."""
    if not show_progress(requested):
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def print_errors(doc: dict, console=None, limit: int = 50) -> None:
    """The models and files of ``doc`` that could not be read, one ``error:`` line each (at most ``limit`` files;
    all are in the JSON), and how many there were."""
    from rich.markup import escape

    console = console or stderr()
    for e in doc.get("model_errors", []):
        console.print(f"error: {escape(printable(e['error']))}", highlight=False, soft_wrap=True)
    errs = doc["errors"]
    if not errs:
        return
    for e in errs[:limit]:  # soft_wrap: one line per file, however narrow the console
        console.print(f"error: {escape(printable(e['path']))}: {escape(printable(e['error']))}", highlight=False,
                      soft_wrap=True)
    more = f" ({len(errs) - limit} more not shown; --json lists all)" if len(errs) > limit else ""
    console.print(f"{len(errs)} file(s) could not be read and were left out{more}", highlight=False, soft_wrap=True)
