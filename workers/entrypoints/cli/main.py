"""Command line: ``python -m workers COMMAND --help`` explains each command.

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
  python -m workers setup                         assemble the offline default models
  python -m workers run samples/ results/         every file under samples/ -> results/<name>.json
  python -m workers analyze call.m4a              print one merged result as JSON
  python -m workers report results/call.m4a.json  the result as an HTML page (run ... --report: every file)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m workers",
        description="Speech to transcripts with voice emotion: Whisper STT and windowed SER, merged per segment.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {PIPELINE_VERSION}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for commands in COMMANDS:
        commands.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
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
