"""``runbook`` and ``python -m runner``: answer ``--version`` before loading anything else."""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:] in (["--version"], ["-V"]):
        from runner import __version__

        print(f"runbook {__version__}")
        return
    from runner.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
