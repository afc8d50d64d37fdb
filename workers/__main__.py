"""Command line: ``python -m workers COMMAND --help`` explains each command.

Every setting can be given as an option (``--stt-model PATH``) or as the environment
variable of the same name (``STT_MODEL=PATH``); options win. Command modules register
themselves from ``COMMAND_MODULES``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from dataclasses import fields
from typing import Callable

from workers import PIPELINE_VERSION
from workers.errors import PipelineError
from workers.settings import Settings

COMMAND_MODULES = (
    "workers.cli_local", "workers.cli_report", "workers.cli_train", "workers.cli_cloud", "workers.cli_ops",
)

EPILOG = """
examples:
  python -m workers setup                         assemble the offline default models
  python -m workers run samples/ results/         every file under samples/ -> results/<name>.json
  python -m workers analyze call.m4a              print one merged result as JSON
  python -m workers report results/call.m4a.json  the result as an HTML page (run ... --report: every file)
"""


def add_settings_options(parser: argparse.ArgumentParser, groups: tuple[str, ...] = ("core",),
                         only: tuple[str, ...] = ()) -> None:
    """One --option per setting of the given groups (or just the settings named in ``only``),
    documented with its variable and default."""
    group = parser.add_argument_group("settings (each also read from the environment variable shown)")
    for f in fields(Settings):
        if (f.name not in only) if only else (f.metadata["group"] not in groups):
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = f.type if isinstance(f.type, type) else {"int": int, "float": float, "str": str}[f.type]
        default = "<repo>/.models" if f.name == "models_dir" else f.default
        group.add_argument(
            flag,
            dest=f"setting_{f.name}",
            type=kind,
            default=None,
            metavar=f.metadata["env"],
            help=f"{f.metadata['help']} [env {f.metadata['env']}; default: {default!r}]",
        )


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides = {k[len("setting_"):]: v for k, v in vars(args).items() if k.startswith("setting_")}
    return Settings.from_env(**overrides)


def finish_command(
    parser: argparse.ArgumentParser,
    handler: Callable[[argparse.Namespace], int],
    groups: tuple[str, ...] = ("core",),
    *,
    verbose: bool = True,
    only: tuple[str, ...] = (),
) -> None:
    """The options every command ends with: -v (when it logs steps) and its settings."""
    if verbose:
        parser.add_argument("-v", "--verbose", action="store_true", help="log every step")
    add_settings_options(parser, groups, only)
    parser.set_defaults(handler=handler)


def command_settings(args: argparse.Namespace) -> Settings:
    """Settings for a one-shot command: logging at INFO under -v, at LOG_LEVEL when that is set,
    and at WARNING otherwise (a command's own output is its summary)."""
    from workers import bootstrap

    settings = settings_from_args(args)
    if getattr(args, "verbose", False):
        level = "INFO"
    else:
        level = None if "LOG_LEVEL" in os.environ else "WARNING"
    bootstrap.configure_logging(settings, default_level=level)
    return settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m workers",
        description="Speech to transcripts with voice emotion: Whisper STT and windowed SER, merged per segment.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {PIPELINE_VERSION}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)
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


if __name__ == "__main__":
    sys.exit(main())
