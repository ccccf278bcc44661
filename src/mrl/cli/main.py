"""`mrl` entry point: each command group module adds its subcommands via `add_commands`."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from mrl.errors import MrlError

# One module per command group; each defines add_commands(subparsers) and sets `func`
# on its parsers, func(args) -> exit code. Keyed by the commands each module adds, so
# `mrl <command>` imports only its own module: a command's start does not pay for the
# others' imports (torch, scikit-learn and transformers take seconds).
COMMAND_MODULES = {
    "cascade": "cascade",
    "train": "train",
    "embed": "evaluate",
    "eval": "evaluate",
    "reproduce": "reproduce",
    "index": "retrieval",
    "search": "retrieval",
    "adapt": "adapt",
    "export": "export",
    "serve": "serve",
}


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line: the problem, and where the usage is.

    Sub-command parsers inherit the class, so every `mrl ...` usage error reads the same.
    """

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `mrl` parser: every command, or only `command`'s module when it is a known one."""
    parser = OneLineErrorParser(
        prog="mrl", description="Matryoshka Representation Learning toolkit"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = dict.fromkeys(COMMAND_MODULES.values())  # each once, in the listed order
    if command in COMMAND_MODULES:
        modules = {COMMAND_MODULES[command]: None}
    for name in modules:
        importlib.import_module(f"mrl.cli.{name}").add_commands(subparsers)
    return parser


def _command(argv: Sequence[str]) -> str | None:
    """The command word of `argv` (its first argument that is not an option), if any."""
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    parser = build_parser(_command(argv))
    args, extra = parser.parse_known_args(argv)
    # A command that takes free config overrides (`--key=value` or `--key value`) declares
    # an `overrides` default (mrl train); for every other command an unknown flag stays an error.
    if extra and not hasattr(args, "overrides"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if hasattr(args, "overrides"):
        args.overrides = extra
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"mrl {args.command}: interrupted", file=sys.stderr)
        return 130
    except (MrlError, ValueError, OSError) as e:
        # the error contract (mrl.errors): a named problem and its fix, one line, exit 2
        print(f"mrl {args.command}: error: {one_line(e)}", file=sys.stderr)
        return 2
    except Exception as e:
        if args.verbose:
            raise
        print(
            f"mrl {args.command}: internal error: {type(e).__name__}: {one_line(e)} "
            "(this is a bug in mrl: rerun with -v for the traceback and report it)",
            file=sys.stderr,
        )
        return 1


def one_line(error: BaseException) -> str:
    """The error's message on one line (an OSError's own message names its path)."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text


if __name__ == "__main__":
    sys.exit(main())
