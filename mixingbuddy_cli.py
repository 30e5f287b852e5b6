"""The `mixingbuddy` command line: one sub-command per job; user errors exit with code 2 and one line."""

from __future__ import annotations

import argparse
import sys


def tiny_checkpoint(args: argparse.Namespace) -> int:
    from mixingbuddy_tiny import save_tiny_checkpoint

    save_tiny_checkpoint(args.out, seed=args.seed)
    print(f"Wrote a tiny random MixingBuddy checkpoint to {args.out}")
    return 0


def add_model_commands(commands) -> None:
    p = commands.add_parser("tiny-checkpoint", help="write a tiny random model folder in Hub layout")
    p.add_argument("out", help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=tiny_checkpoint)


def build_parser() -> argparse.ArgumentParser:
    from dataset_builder.cli import add_dataset_commands

    parser = argparse.ArgumentParser(prog="mixingbuddy", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_model_commands(commands)
    add_dataset_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except (ValueError, OSError) as err:  # bad input from the user: one line, no traceback
        print(f"mixingbuddy {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
