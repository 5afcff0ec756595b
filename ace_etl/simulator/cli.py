"""`ace-etl simulator`: serve the bundled API stand-in. (placeholder: the simulator work fills this in)"""

from __future__ import annotations

import typer


def simulator(
    host: str = typer.Option("127.0.0.1", help="Address to listen on (loopback by default)."),
    port: int = typer.Option(0, help="Port to listen on; 0 picks a free one."),
) -> None:
    """Serve the bundled ACE IoT API simulator under /api."""
    raise typer.Exit(2)
