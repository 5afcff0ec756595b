"""The `ace-etl` console script. It owns Ctrl-C before it imports anything else: until a command takes over
(`ace_etl.cli.handles_errors`, which stops workers gracefully) and again once the command is done, Ctrl-C
quits at once with one line and exit status 130. Nothing is being written at those moments.

The handler is installed when this module is imported, not when `main` is called: the generated script runs
code of its own between the two. Only the interpreter's own start-up (its `site` module, before the script's
first line) is out of reach."""

import signal  # first: nothing before the handler


def quit_now(signum: int, frame: object) -> None:
    """SIGINT handler for the moments no command is running: one line, exit 130, no traceback."""
    import os

    os.write(2, b"error: interrupted\n")
    os._exit(130)


signal.signal(signal.SIGINT, quit_now)


def main() -> None:
    from ace_etl import heap  # the garbage collector's settings: nothing else imported

    heap.tune()  # before the imports, which allocate as much as a run
    try:
        from ace_etl.cli import main as cli_main  # typer and rich: what start-up spends its time on

        cli_main()
    except KeyboardInterrupt:
        # Raised by a command's own handler outside the command (an instant between its last line and
        # restoring `quit_now`): the same one line.
        quit_now(signal.SIGINT, None)
    finally:
        heap.freeze_at_exit()  # 0.14 s of every command, 4% of a day's run
