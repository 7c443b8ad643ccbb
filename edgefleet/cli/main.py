"""Entry point of the ``edgefleet`` console script.

Each command group lives in its own module exposing ``register(subparsers)``; leaf
parsers set ``handler`` to a function taking the parsed namespace and returning an
exit code. Expected failures are :class:`~edgefleet.errors.EdgefleetError` and are
printed as ``error: ...`` plus a hint, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence

from edgefleet import __version__
from edgefleet.cli.extras import missing_extra_error
from edgefleet.errors import EdgefleetError

Handler = Callable[[argparse.Namespace], int]

# Order here is the order of `edgefleet --help`.
COMMAND_MODULES = (
    "agent",
    "results",
    "config",
    "model",
    "bundle",
    "drift",
    "sync",
    "device",
    "keys",
    "ota",
    "store",
    "controller",
    "simulate",
    "demo",
)

EXIT_USAGE = 2
EXIT_ERROR = 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgefleet",
        description="Edge inference runtime and fleet agent.",
    )
    parser.add_argument("--version", action="version", version=f"edgefleet {__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log debug messages to stderr, with the model runtimes' own messages",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"edgefleet.cli.{name}")
        module.register(subparsers)
    _describe_from_help(parser)
    return parser


def _describe_from_help(parser: argparse.ArgumentParser) -> None:
    """A subcommand registered with ``help=`` only gets that text as its ``--help`` description."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                if not sub.description and helps.get(name):
                    text = str(helps[name])
                    sub.description = text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")
                _describe_from_help(sub)


def iter_commands(parser: argparse.ArgumentParser, prefix: str = "") -> list[str]:
    """Every leaf command path, e.g. ``["model inspect", "model run", ...]`` (used by doc tests)."""
    found: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                path = f"{prefix} {name}".strip()
                children = iter_commands(sub, path)
                found.extend(children or [path])
    return found


def _command_words(args: argparse.Namespace) -> str:
    """``edgefleet controller serve`` for the parsed command, for error messages."""
    words = ["edgefleet"]
    for key, value in vars(args).items():
        if (key == "command" or key.endswith("_command")) and isinstance(value, str):
            words.append(value)
    return "`" + " ".join(words) + "`"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return handler(args)
    except EdgefleetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except ModuleNotFoundError as exc:
        missing = missing_extra_error(exc, _command_words(args))
        if missing is None:
            raise
        print(f"error: {missing}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
