"""Reports on disk: how a page reaches its audio, and a page per result of a results folder."""

from __future__ import annotations

import base64
import json
import logging
import mimetypes
import os
from pathlib import Path
from urllib.parse import quote

from workers.adapters.local import LocalBlobStore
from workers.core.contracts import SerPartial, loads
from workers.core.errors import NotFound
from workers.core.jobs import RESULT_SUFFIX, partial_key
from workers.report.index import render_index
from workers.report.page import render_view
from workers.report.view import ReportView, read_view

log = logging.getLogger(__name__)

REPORT_SUFFIX = ".html"
INDEX_NAME = "index.html"


def link(target: Path, page_dir: Path) -> str:
    """A URL for ``target`` relative to a page in ``page_dir``: it keeps working when the folder moves."""
    return quote(Path(os.path.relpath(target.resolve(), page_dir.resolve())).as_posix())


def data_uri(audio: Path) -> str:
    """The audio inside the page, for a report that travels alone (a third larger than the file)."""
    kind = mimetypes.guess_type(audio.name)[0] or "application/octet-stream"
    return f"data:{kind};base64," + base64.b64encode(audio.read_bytes()).decode("ascii")


def audio_beside(result_path: Path, name: str) -> Path | None:
    """The audio a result was made from, when it lies beside the result: ``call.flac`` next to
    ``call.flac.json``, or a file named as the job's object next to it."""
    for candidate in (result_path.with_suffix(""), result_path.parent / Path(name).name):
        if candidate != result_path and candidate.is_file():
            return candidate
    return None


def windows_beside(result_path: Path, view: ReportView, staging_dir: str) -> Path | None:
    """The SER partial that `run` left for this job in the staging folder (``staging_dir`` inside
    the results folder holding ``result_path``), if it is there."""
    depth = view.name.count("/")  # results/calls/a.flac.json is the result of calls/a.flac
    if depth >= len(result_path.parents) or not view.job_id:
        return None
    candidate = result_path.parents[depth] / staging_dir / partial_key(view.job_id, "ser")
    return candidate if candidate.is_file() else None


def read_windows(data: bytes) -> SerPartial:
    """An SER partial; ValueError when the data is not one."""
    return loads(SerPartial, data)


def write_reports(store: LocalBlobStore, results_bucket: str, inbox_bucket: str, staging_bucket: str) -> Path:
    """``<name>.html`` beside every result in the results folder, each with a timeline point per
    emotion window when the job's SER partial is still in staging, linked to its audio in the
    inbox when that is still there, and ``index.html`` listing them all; returns the index's path."""
    root = store.root(results_bucket)
    listed: list[tuple[str, ReportView]] = []
    for info in store.list(results_bucket):
        if not info.name.endswith(RESULT_SUFFIX):
            continue
        try:
            view = read_view(json.loads(store.read(results_bucket, info.name)[0]))
        except ValueError as e:  # not JSON, or NotAResult
            log.warning("no report for %s: not a result (%s)", info.name, e)
            continue
        windows = _stored_windows(store, staging_bucket, view)
        name = info.name[: -len(RESULT_SUFFIX)]
        page_path = store.path(results_bucket, name + REPORT_SUFFIX)
        audio = store.path(inbox_bucket, name)
        html = render_view(view.with_windows(windows) if windows else view,
                           audio_src=link(audio, page_path.parent) if audio.is_file() else None)
        store.write(results_bucket, name + REPORT_SUFFIX, html.encode(), if_generation_match=None,
                    content_type="text/html")
        listed.append((link(page_path, root), view))
    index = render_index(listed, title=f"Results in {root.name}")
    store.write(results_bucket, INDEX_NAME, index.encode(), if_generation_match=None, content_type="text/html")
    log.info("wrote %d reports and %s", len(listed), INDEX_NAME)
    return store.path(results_bucket, INDEX_NAME)


def _stored_windows(store: LocalBlobStore, staging_bucket: str, view: ReportView) -> SerPartial | None:
    try:
        return read_windows(store.read(staging_bucket, partial_key(view.job_id, "ser"))[0])
    except NotFound:
        return None
    except ValueError as e:
        log.warning("no emotion windows for %s: its SER partial does not read (%s)", view.name, e)
        return None
