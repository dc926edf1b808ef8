"""What several commands declare alike: the help panels and the options they share.

Each factory returns a fresh ``typer.Option``/``typer.Argument`` (typer keeps state on them, so one object must not
serve two parameters); the words that differ between commands are the factory's arguments.
"""

from __future__ import annotations

import typer

RUNTIME_PANEL = "Runtime (interpreter only)"
TRAINING_PANEL = "Training (needs the \\[train] extra)"
DATA_PANEL = "Data"


def images_argument(metavar: str, help: str):
    """The images a runtime command reads: files, folders (searched recursively) or glob patterns."""
    return typer.Argument(..., metavar=metavar, show_default=False, help=help)


def model_option(help: str):
    """``--model/-m``: an existing model file; ``help`` says which kinds and what applies without it."""
    return typer.Option(None, "--model", "-m", exists=True, dir_okay=False, show_default=False, help=help)


def threshold_option(default: str):
    """``--threshold/-t`` in [0, 1]; ``default`` says which threshold applies without it."""
    return typer.Option(None, "--threshold", "-t", min=0.0, max=1.0, show_default=False,
                        help=f"Call an image FAKE when p_fake >= T \\[default: {default}].")


def threads_option(what: str = "Interpreter threads"):
    """``--threads``: interpreter threads, all cores when not given."""
    return typer.Option(None, "--threads", min=1, show_default=False, help=f"{what} \\[default: all cores].")


def limit_option(what: str):
    """``--limit``: one meaning everywhere (:func:`edgedetect.sampling.limit_sample`)."""
    from edgedetect.sampling import LIMIT_HELP

    return typer.Option(None, "--limit", min=1, show_default=False, help=f"{what}: {LIMIT_HELP}.")


def json_option(help: str = "Print one JSON document instead of tables."):
    return typer.Option(False, "--json", help=help)


def force_option(help: str):
    return typer.Option(False, "--force", help=help)
