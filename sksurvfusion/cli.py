"""Command line: ``sksurvfusion demo``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sksurvfusion",
        description="Multi-modal survival prediction from foundation-model embeddings.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the adapter ablation on the bundled cohort")
    demo.add_argument("--output", default="demo_output", help="folder for the results")
    demo.add_argument("--quick", action="store_true", help="a fast, smaller run")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    if args.command == "demo":
        print("sksurvfusion demo: the evaluation study is not built yet.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
