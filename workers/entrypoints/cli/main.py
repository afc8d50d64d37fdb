"""Command line: ``speechmood COMMAND --help`` (or ``python -m workers COMMAND --help``) explains each command.

Each command lives in a module of this package that registers it (``local``, ``report``,
``train``, ``cloud``, ``ops``); the options they share are in ``options``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from workers import PIPELINE_VERSION
from workers.core.errors import PipelineError
from workers.entrypoints.cli import cloud, local, ops, report, train

COMMANDS = (local, report, train, cloud, ops)

EPILOG = """
examples:
  %(prog)s setup                         assemble the offline default models
  %(prog)s run samples/ results/         every file under samples/ -> results/<name>.json
  %(prog)s analyze call.m4a              print one merged result as JSON
  %(prog)s report results/call.m4a.json  the result as an HTML page (run ... --report: every file)
"""


def build_parser(prog: str = "python -m workers") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Speech to transcripts with voice emotion: Whisper STT and windowed SER, merged per segment.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {PIPELINE_VERSION}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for commands in COMMANDS:
        commands.register(sub)
    return parser


def console() -> int:
    """The installed command, ``speechmood`` (``pip install .``): the same commands as ``python -m workers``."""
    return main(prog="speechmood")


def main(argv: list[str] | None = None, prog: str = "python -m workers") -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
