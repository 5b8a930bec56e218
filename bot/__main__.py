"""`python -m bot` and the `veille` command (both enter here).

Nothing is imported at module level, on purpose: multiprocessing starts each parse worker
by importing the parent's main module again (the script behind `veille`, or this module's
name for `python -m`), and a worker that re-imported bot.cli carried the whole command line
(typer, rich, the watchlist loader: about 10 MB in every worker). `python -m bot.cli` still
works, with heavier workers.
"""


def main() -> None:
    from bot.cli import main as cli

    cli()


if __name__ == "__main__":
    main()
