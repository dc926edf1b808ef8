"""`edgedetect data fetch|inspect`: get a dataset from Kaggle, check a folder or archive before training."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from edgedetect.commands import output



class KnownDataset(str, Enum):
    cifake = "cifake"
    faces = "faces"


def fetch(
    name: KnownDataset = typer.Argument(..., help="cifake (birdy654/cifake-real-and-ai-generated-synthetic-images) "
                                                  "or faces (philosopher0808/real-vs-ai-generated-faces-dataset)."),
    to: Optional[Path] = typer.Option(None, "--to", file_okay=False, show_default=False,
                                      help="Put the files in this folder \\[default: kagglehub's cache, ~/.cache/kagglehub]."),
    force: bool = typer.Option(False, "--force", help="Download again even when a copy is already there."),
) -> None:
    """Download a dataset with kagglehub (needs internet and Kaggle credentials)."""
    from edgedetect.layout import scan_layout
    from edgedetect.errors import EdgeDetectError
    from edgedetect.fetch import DATASETS, fetch as fetch_dataset

    landed = fetch_dataset(name.value, to, force=force)
    output.echo(f"{name.value}: {DATASETS[name.value].description}")
    output.echo(f"downloaded to {landed}")
    try:
        layout = scan_layout(landed)
        layout.check(landed)
        output.echo("found: " + ", ".join(f"{split} {row['REAL']:,} REAL + {row['FAKE']:,} FAKE"
                                         for split, row in layout.counts_by_split().items()))
    except EdgeDetectError as e:  # the download worked; say what is odd about it rather than fail
        output.warning(str(e))
    output.echo("next:")
    output.echo(f"  edgedetect data inspect {_quote(landed)}")
    output.echo(f"  edgedetect train --arch cnn --data {_quote(landed)}")


def inspect(
    paths: List[Path] = typer.Argument(..., metavar="PATH...", show_default=False,
                                       help="Dataset folder or .tar.gz/.tgz/.tar/.zip archive; give several (e.g. a train "
                                            "and a test archive) to look for duplicates across them."),
    json_out: bool = typer.Option(False, "--json", help="Print the whole report as one JSON document."),
    examples: int = typer.Option(5, "--examples", min=0, help="Example groups of duplicates (and unlabelled files) to list."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar on stderr."),
) -> None:
    """Counts per split and class, image sizes, modes, formats, unreadable files, duplicates within and across splits."""
    from edgedetect.inspect import format_report, inspect_dataset

    report = inspect_dataset(paths, progress=output.show_progress(progress), examples=examples)
    if json_out:
        output.print_json(report)
    else:
        output.echo(format_report(report))


def _quote(path: Path) -> str:
    import shlex

    return shlex.quote(str(path))
