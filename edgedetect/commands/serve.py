"""`edgedetect serve`: a local web page to try a model on your own images (standard library only)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgedetect.commands import output
from edgedetect.commands.options import model_option, threads_option
from edgedetect.serve import DEFAULT_MAX_MB, DEFAULT_PORT


def serve(
    model: Optional[Path] = model_option("The .tflite model \\[default: the shipped model]."),
    port: int = typer.Option(DEFAULT_PORT, "--port", "-p", help="TCP port; 0 picks a free one."),
    host: str = typer.Option("127.0.0.1", "--host",
                             help="Address to listen on. The default keeps the page on this computer; "
                                  "0.0.0.0 shows it to your network."),
    max_mb: float = typer.Option(DEFAULT_MAX_MB, "--max-mb", help="Largest upload accepted, in MB."),
    threads: Optional[int] = threads_option(),
) -> None:
    """Start a page on localhost: drop or pick an image, see REAL/FAKE, p_fake against the threshold, the model
    and its input domain, and the map of where the evidence is. Offline; uploads stay in memory. Ctrl-C stops."""
    from edgedetect.serve import ServeConfig, is_loopback, make_server

    server = make_server(ServeConfig(model=str(model) if model else None, host=host, port=port, max_mb=max_mb,
                                     threads=threads),
                         log=output.log())
    if not is_loopback(host):
        output.warning(f"listening on {host}: anyone who can reach this computer can use the page")
    output.echo(f"edgedetect demo: {server.url} · model {server.demo.description} · Ctrl-C stops")
    try:
        server.serve_forever()
    finally:
        server.server_close()
