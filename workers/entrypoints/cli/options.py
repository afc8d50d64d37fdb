"""The options every command shares: one --option per setting, and the settings they give.

Every setting can be given as an option (``--stt-model PATH``) or as the environment
variable of the same name (``STT_MODEL=PATH``); options win.
"""

from __future__ import annotations

import argparse
import os
from typing import Callable

from workers.composition import configure_logging
from workers.core.settings import SETTINGS, Setting, Settings


def add_settings_options(parser: argparse.ArgumentParser, groups: tuple[str, ...] = ("core",),
                         only: tuple[str, ...] = ()) -> None:
    """One --option per setting of the given groups (or just the settings named in ``only``),
    documented with its variable and default."""
    group = parser.add_argument_group("settings (each also read from the environment variable shown)")
    for s in SETTINGS:
        if (s.option not in only) if only else (s.group not in groups):
            continue
        group.add_argument(
            "--" + s.option.replace("_", "-"),
            dest=f"setting_{s.option}",
            type=str if s.kind is bool else s.kind,
            default=None,
            metavar=s.env,
            help=f"{s.help} [env {s.env}; default: {_default(s)!r}]",
        )


def _default(s: Setting) -> object:
    """As the environment variable would say it for text and switches, the value for numbers."""
    return s.shown_default if s.kind in (str, bool) else s.default


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
    settings = settings_from_args(args)
    if getattr(args, "verbose", False):
        level = "INFO"
    else:
        level = None if "LOG_LEVEL" in os.environ else "WARNING"
    configure_logging(settings.log, default_level=level)
    return settings
