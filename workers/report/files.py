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
from workers.core.contracts import Result, SerPartial, loads
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


class ReportWriter:
    """``<name>.html`` beside results in a results folder, each with a timeline point per emotion window when the job's
    SER partial is still in staging and linked to its audio in the inbox when that is still there; ``finish`` adds a
    page for every other result in the folder and ``index.html`` listing them all."""

    def __init__(self, store: LocalBlobStore, results_bucket: str, inbox_bucket: str, staging_bucket: str) -> None:
        self.store, self.results, self.inbox, self.staging = store, results_bucket, inbox_bucket, staging_bucket
        self._listed: dict[str, ReportView] = {}  # result name -> its view, for the index

    def page(self, name: str, result: Result) -> None:
        """The page of ``name``'s result, from the result at hand (``run --report`` holds each one it made)."""
        self._write(name, read_view(result))

    def finish(self) -> Path:
        """Pages for the results not paged yet (earlier runs'), then the index; returns the index's path."""
        for info in self.store.list(self.results):
            if not info.name.endswith(RESULT_SUFFIX) or info.name[: -len(RESULT_SUFFIX)] in self._listed:
                continue
            try:
                view = read_view(json.loads(self.store.read(self.results, info.name)[0]))
            except ValueError as e:  # not JSON, or NotAResult
                log.warning("no report for %s: not a result (%s)", info.name, e)
                continue
            self._write(info.name[: -len(RESULT_SUFFIX)], view)
        root = self.store.root(self.results)
        listed = [(link(self.store.path(self.results, name + REPORT_SUFFIX), root), view)
                  for name, view in sorted(self._listed.items())]
        index = render_index(listed, title=f"Results in {root.name}")
        self.store.write(self.results, INDEX_NAME, index.encode(), if_generation_match=None, content_type="text/html")
        log.info("wrote %d reports and %s", len(listed), INDEX_NAME)
        return self.store.path(self.results, INDEX_NAME)

    def _write(self, name: str, view: ReportView) -> None:
        windows = _stored_windows(self.store, self.staging, view)
        page_path = self.store.path(self.results, name + REPORT_SUFFIX)
        audio = self.store.path(self.inbox, name)
        html = render_view(view.with_windows(windows) if windows else view,
                           audio_src=link(audio, page_path.parent) if audio.is_file() else None)
        self.store.write(self.results, name + REPORT_SUFFIX, html.encode(), if_generation_match=None,
                         content_type="text/html")
        self._listed[name] = view


def write_reports(store: LocalBlobStore, results_bucket: str, inbox_bucket: str, staging_bucket: str) -> Path:
    """A page beside every result in the results folder and the index (see ``ReportWriter``)."""
    return ReportWriter(store, results_bucket, inbox_bucket, staging_bucket).finish()


def _stored_windows(store: LocalBlobStore, staging_bucket: str, view: ReportView) -> SerPartial | None:
    try:
        return read_windows(store.read(staging_bucket, partial_key(view.job_id, "ser"))[0])
    except NotFound:
        return None
    except ValueError as e:
        log.warning("no emotion windows for %s: its SER partial does not read (%s)", view.name, e)
        return None
