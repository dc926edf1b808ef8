"""``edgedetect`` on the command line: runs the app (``edgedetect.app``) with the CLI's error policy.

A user mistake (``EdgeDetectError``) prints one ``error:`` line and exits 1; a usage error prints click's usage
message and exits 2; Ctrl-C prints ``interrupted`` and exits 130; a warning from the library prints one
``warning:`` line. Real bugs keep their traceback.
"""

from __future__ import annotations

import sys
import warnings

import typer

from edgedetect.app import app
from edgedetect.commands import output
from edgedetect.errors import EdgeDetectError


def _usage_errors() -> tuple:
    """The classes of click's usage errors, through public names in every typer that setup.py allows."""
    found = []
    if hasattr(typer, "TyperException"):  # newer typer vendors click; its ClickException derives from this
        found.append(typer.TyperException)
    try:  # older typer depends on click itself
        from click.exceptions import ClickException
    except ImportError:
        pass
    else:
        found.append(ClickException)
    return tuple(found)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    # Library code warns through `warnings`; the CLI shows each as one line, without Python's source location.
    output.warning(str(message))


def _needs_train_extra(e: ImportError) -> str:
    command = next((a for a in sys.argv[1:] if not a.startswith("-")), "this command")
    return (f"`edgedetect {command}` needs TensorFlow and Keras, which this install lacks ({e}); "
            "install them with: pip install 'edgedetect[train]'")


def main() -> None:
    """Entry point: runs the app; user mistakes print one line, Ctrl-C exits with 130."""
    # A file name that is not valid UTF-8 (kept by Python as surrogates) must print, not crash a UTF-8 terminal.
    if getattr(sys.stdout, "errors", None) == "strict" and hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="backslashreplace")
    with warnings.catch_warnings():  # restored on return: main() run in-process (tests) leaves no hook behind
        warnings.showwarning = _show_warning
        code = _run()
    if code:
        sys.exit(code)


def _run() -> int:
    """Runs the app without click's standalone mode, so that this function decides what each outcome prints."""
    try:
        # Without standalone mode click returns the code of a `typer.Exit(code)` raised in a command.
        code = typer.main.get_command(app)(standalone_mode=False)
    except EdgeDetectError as e:
        output.error(str(e))
        return 1
    except (KeyboardInterrupt, typer.Abort):
        typer.echo("interrupted", err=True)
        return 130
    except ImportError as e:
        # train, convert, ensemble and .keras evaluation need the [train] extra; a runtime-only install lacks it.
        if not any(name in str(e) for name in ("tensorflow", "keras", "kagglehub")):
            raise
        output.error(_needs_train_extra(e))
        return 1
    except typer.Exit as e:
        return e.exit_code
    except _usage_errors() as e:
        if not hasattr(e, "show"):
            raise
        e.show()
        return e.exit_code
    if code == 130:  # typer turns Ctrl-C into a silent Exit(130)
        typer.echo("interrupted", err=True)
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    main()
