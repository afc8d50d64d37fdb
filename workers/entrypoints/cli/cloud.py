"""Cloud commands: serve (one worker service) and dev-stack (the whole cloud path on emulators)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from workers.composition import configure_logging
from workers.core.errors import ConfigError
from workers.entrypoints.cli.options import finish_command, settings_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="run one worker service (role stt, ser, joiner or api) over HTTP",
        description="Serve one role of the cloud pipeline with aiohttp: Pub/Sub push endpoints (/push/job for "
        "stt and ser, /push/partial for the joiner) with OIDC verification, direct endpoints "
        "(/v1/transcribe, /v1/emotions, /v1/analyze for the api role) and /healthz, which answers 503 until "
        "the model is loaded. Logs are JSON lines on Cloud Run.",
    )
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0, as Cloud Run needs)")
    finish_command(p, cmd_serve, ("core", "cloud", "logging"), verbose=False)

    p = sub.add_parser(
        "dev-stack",
        help="run the whole cloud path locally on the Pub/Sub and GCS emulators",
        description="Start the Pub/Sub emulator, fake-gcs-server, the trigger function (functions-framework), "
        "the notification-to-CloudEvent bridge and the stt, ser and joiner services, all on 127.0.0.1, and "
        "wire them as the cloud does. Without FILEs it prints how to upload and waits until Ctrl-C; with "
        "--process FILE... it uploads the files to the emulated inbox, prints each merged result as one JSON "
        "line on stdout, and stops everything it started.",
    )
    p.add_argument("--process", nargs="+", type=Path, metavar="FILE", help="files to run through the stack")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the results (--process)")
    p.add_argument("--workdir", type=Path, default=None, help="where logs go (default: a temporary folder)")
    finish_command(p, cmd_dev_stack, ("core",), verbose=False)


def cmd_serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from workers.entrypoints.http.app import STATE, create_app

    settings = settings_from_args(args)
    configure_logging(settings.log)
    if not settings.service.role:
        raise ConfigError("set the role with --role or ROLE")

    def fatal(error: BaseException) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # a service that cannot load its model must not linger

    app = create_app(settings, settings.service.role, on_load_error=fatal)
    # Cloud Run sends SIGTERM and allows 10 s: in-flight requests get 8 s to finish.
    web.run_app(app, host=args.host, port=settings.service.port, shutdown_timeout=8.0, print=None,
                handle_signals=True, access_log=None)
    return 1 if app[STATE].load_error else 0


def cmd_dev_stack(args: argparse.Namespace) -> int:
    try:
        from devstack.stack import run_dev_stack
    except ImportError as e:
        raise ConfigError("dev-stack is a development tool: run it from a source checkout of the project "
                          f"(the devstack package beside workers/ is missing: {e})") from e

    settings = settings_from_args(args)
    configure_logging(settings.log, default_level="INFO")
    # `kill` stops the stack as Ctrl-C does: everything it started is stopped on the way out.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    return run_dev_stack(settings, files=args.process or [], timeout=args.timeout, workdir=args.workdir,
                         out=sys.stdout)
