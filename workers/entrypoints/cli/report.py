"""The report command: a result JSON as an HTML page a person reads."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from workers.core.errors import ConfigError
from workers.report.files import audio_beside, data_uri, link, read_windows, windows_beside
from workers.report.page import render_view
from workers.report.view import ReportView, read_view


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write one self-contained HTML page for a result JSON",
        description="Write RESULT.json (a file `run` or `analyze` wrote) as one HTML page with everything inline:\n"
        "header, summary cards, the emotion timeline and the transcript coloured by emotion. With the audio,\n"
        "a player plays from the segment you click. For a whole folder: `run INBOX RESULTS --report`.",
        epilog="examples:\n"
        "  python -m workers report results/call.flac.json                 -> results/call.flac.html\n"
        "  python -m workers report r.json --audio call.flac -o call.html   player linked to call.flac\n"
        "  python -m workers report r.json --audio call.flac --embed-audio  one file to mail",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("result", type=Path, metavar="RESULT.json", help="a merged result (one JSON object)")
    p.add_argument("--audio", type=Path, metavar="FILE",
                   help="the audio the result was made from (default: the file beside RESULT.json, if it is there)")
    p.add_argument("--windows", type=Path, metavar="SER.json",
                   help="the job's SER partial, for a timeline point per emotion window instead of per segment "
                   "(default: the one `run` left in the results folder's .staging, if it is there)")
    p.add_argument("--embed-audio", action="store_true",
                   help="put the audio inside the page (a third larger than the audio) instead of linking it")
    p.add_argument("-o", "--output", type=Path, metavar="OUT.html",
                   help="where to write the page (default: RESULT.json with .html for .json)")
    p.set_defaults(handler=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from workers.composition import LOCAL_STAGING_DIR  # the composition root loads the engines' modules: only here

    view = _read_result(args.result)
    windows = args.windows or windows_beside(args.result, view, LOCAL_STAGING_DIR)
    if windows is not None:
        view = _with_windows(view, windows)
    if args.audio is not None and not args.audio.is_file():
        raise ConfigError(f"audio file {args.audio} does not exist")
    audio = args.audio or audio_beside(args.result, view.name)
    if args.embed_audio and audio is None:
        raise ConfigError("--embed-audio needs the audio: give --audio FILE")
    output = args.output or args.result.with_suffix(".html")
    if output.resolve() == args.result.resolve():
        raise ConfigError(f"the page would overwrite the result {args.result}: give -o OUT.html")
    source = None
    if audio is not None:
        source = data_uri(audio) if args.embed_audio else link(audio, output.parent)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render_view(view, audio_src=source), encoding="utf-8")
    print(f"report: {output}" + (f" (audio: {audio})" if audio else " (no audio found; --audio FILE adds a player)")
          + (f" (emotion windows: {windows})" if windows else ""), file=sys.stderr)
    return 0


def _read_result(path: Path) -> ReportView:
    if not path.is_file():
        raise ConfigError(f"{path} " + ("is a folder, not a result file" if path.exists() else "does not exist"))
    try:
        return read_view(json.loads(path.read_bytes()))
    except ValueError as e:  # not JSON, or NotAResult
        raise ConfigError(f"{path} is not a result JSON ({e}); give a file that `run` or `analyze` wrote") from e


def _with_windows(view: ReportView, path: Path) -> ReportView:
    if not path.is_file():
        raise ConfigError(f"SER partial {path} does not exist")
    try:
        return view.with_windows(read_windows(path.read_bytes()))
    except ValueError as e:  # not an SER partial, or another job's
        raise ConfigError(f"{path} is not this result's SER partial ({e})") from e
