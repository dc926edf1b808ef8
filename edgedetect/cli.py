"""The ``edgedetect`` command line: a thin Typer adapter over the library.

Each command lives in ``edgedetect/commands/<name>.py``, parses its options, calls a library function and
prints. Commands that need TensorFlow/Keras (train, convert, evaluate on .keras) import it inside the
command, so ``import edgedetect.cli`` and the runtime commands stay interpreter-only.
"""

from __future__ import annotations

import sys
import warnings

import typer

from edgedetect import __version__
from edgedetect.errors import EdgeDetectError, printable

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
    typer.echo(f"error: {printable(message)}", err=True)
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
from edgedetect.commands import evaluate  # noqa: E402,F401
from edgedetect.commands import convert  # noqa: E402,F401
from edgedetect.commands import data  # noqa: E402,F401
from edgedetect.commands import predict, info  # noqa: E402,F401
from edgedetect.commands import bench  # noqa: E402,F401
from edgedetect.commands import explain, serve  # noqa: E402,F401


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    # Library code warns through `warnings`; the CLI shows each as one line, without Python's source location.
    typer.echo(f"warning: {printable(str(message))}", err=True)


def main() -> None:
    """Entry point: runs the app; user mistakes print one line, Ctrl-C exits with 130."""
    warnings.showwarning = _show_warning
    # A file name that is not valid UTF-8 (kept by Python as surrogates) must print, not crash a UTF-8 terminal.
    if getattr(sys.stdout, "errors", None) == "strict" and hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="backslashreplace")
    try:
        # Without standalone mode click returns a `typer.Exit(code)` raised in a command instead of exiting.
        code = app(standalone_mode=False)
        if code == 130:  # typer turns Ctrl-C into a silent Exit(130)
            typer.echo("interrupted", err=True)
        if isinstance(code, int) and code:
            sys.exit(code)
    except EdgeDetectError as e:
        typer.echo(f"error: {printable(str(e))}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except ImportError as e:
        # train, convert, ensemble and .keras evaluation need the [train] extra; a runtime-only install lacks it.
        if not any(name in str(e) for name in ("tensorflow", "keras", "kagglehub")):
            raise
        command = next((a for a in sys.argv[1:] if not a.startswith("-")), "this command")
        typer.echo(f"error: `edgedetect {printable(command)}` needs TensorFlow and Keras, which this install lacks "
                   f"({printable(str(e))}); install them with: pip install 'edgedetect[train]'", err=True)
        sys.exit(1)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except Exception as e:  # click's usage errors
        try:  # typer >= 0.2x vendors click as typer._click; `import click` may be absent or another copy
            from typer._click.exceptions import ClickException
        except ImportError:
            from click.exceptions import ClickException

        if isinstance(e, ClickException):
            e.show()
            sys.exit(e.exit_code)
        if isinstance(e, typer.Abort):
            typer.echo("interrupted", err=True)
            sys.exit(130)
        raise


if __name__ == "__main__":
    main()
