"""The ``edgedetect`` command line: a thin Typer adapter over the library.

Each command lives in ``edgedetect/commands/<name>.py``, parses its options, calls a library function and
prints. Commands that need TensorFlow/Keras (train, convert, evaluate on .keras) import it inside the
command, so ``import edgedetect.cli`` and the runtime commands stay interpreter-only.
"""

from __future__ import annotations

import sys

import typer

from edgedetect import __version__
from edgedetect.errors import EdgeDetectError

app = typer.Typer(
    name="edgedetect",
    help="Detect AI-generated images with a TFLite/LiteRT model: predict, train, convert, evaluate, bench.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: message`` on one line to stderr; return the Exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def version_callback(value: bool) -> None:
    if value:
        typer.echo(f"edgedetect {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=version_callback, is_eager=True, help="Print the version and exit."),
) -> None:
    pass


# Register the commands (each module adds its own to `app`).
from edgedetect.commands import train  # noqa: E402,F401


def main() -> None:
    """Entry point: runs the app; user mistakes print one line, Ctrl-C exits with 130."""
    try:
        app(standalone_mode=False)
    except EdgeDetectError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except Exception as e:  # click's usage errors
        import click

        if isinstance(e, click.exceptions.ClickException):
            e.show()
            sys.exit(e.exit_code)
        if isinstance(e, click.exceptions.Abort):
            typer.echo("interrupted", err=True)
            sys.exit(130)
        raise


if __name__ == "__main__":
    main()
