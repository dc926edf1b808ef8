"""The ``edgedetect`` Typer app: the root options and every command, registered here and only here.

Each command is a plain function in ``edgedetect/commands/<name>.py``: it parses its options, calls a library
function and prints. Commands that need TensorFlow/Keras (train, convert, ensemble, evaluate on .keras) import it
inside the function, so building this app stays interpreter-only. ``edgedetect.cli.main`` runs it.
"""

from __future__ import annotations

import typer

from edgedetect import __version__
from edgedetect.commands import bench, convert, data, evaluate, explain, info, predict, serve, train
from edgedetect.commands.options import DATA_PANEL, RUNTIME_PANEL, TRAINING_PANEL

app = typer.Typer(
    name="edgedetect",
    help="Detect AI-generated images with a TFLite/LiteRT model: predict, train, convert, evaluate, bench.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"edgedetect {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    pass


# The order here is the order of `edgedetect --help`.
for command in (train.train, train.ensemble, evaluate.evaluate, convert.convert):
    app.command(rich_help_panel=TRAINING_PANEL)(command)
for command in (predict.predict, info.info, bench.bench, explain.explain, serve.serve):
    app.command(rich_help_panel=RUNTIME_PANEL)(command)

data_app = typer.Typer(
    help="Datasets: fetch CIFAKE or the faces set from Kaggle, inspect a folder or archive (counts, sizes, leaks).",
    no_args_is_help=True,
)
for command in (data.fetch, data.inspect):
    data_app.command()(command)
app.add_typer(data_app, name="data", rich_help_panel=DATA_PANEL)
