"""The index of a results folder: one row per file, linking to its report."""

from __future__ import annotations

from html import escape
from typing import Sequence

from workers.report.layout import clock, colour_class, colour_rules, page
from workers.report.view import ReportView


def render_index(reports: Sequence[tuple[str, ReportView]], *, title: str) -> str:
    """``reports`` are (link to the page, the result's view) pairs, listed in the order given."""
    # Every label of every file, in the models' order: a label gets the colour its page gives it.
    labels = list(dict.fromkeys(label for _, v in reports for label in v.labels))
    index = {label: i for i, label in enumerate(labels)}
    failed = sum(v.status != "ok" for _, v in reports)
    audio = sum(v.duration or 0.0 for _, v in reports)
    rows = "".join(_row(href, view, index) for href, view in reports)
    body = (
        f"<header><h1>{escape(title)}</h1><p>{len(reports)} file{'s' * (len(reports) != 1)}: "
        f"{len(reports) - failed} ok, {failed} failed; {clock(audio)} of audio.</p></header><main>"
        + (
            '<table class="files"><thead><tr><th scope="col">file</th><th scope="col">status</th>'
            '<th scope="col">duration</th><th scope="col">language</th><th scope="col">dominant emotion</th>'
            f'<th scope="col">segments</th><th scope="col">error</th></tr></thead><tbody>{rows}</tbody></table>'
            if reports else '<p class="empty">No results yet.</p>'
        )
        + "</main>"
    )
    return page(title, body, style=colour_rules(labels))


def _row(href: str, view: ReportView, index: dict[str, int]) -> str:
    emotion = "–"
    if view.dominant_emotion:
        untrained = "" if view.ser_trained else " <small>(untrained model)</small>"
        emotion = (f'<span class="{colour_class(view.dominant_emotion, index)}"><span class="swatch"></span>'
                   f"{escape(view.dominant_emotion)}</span>{untrained}")
    error = ""
    if view.status != "ok":
        error = f"<code>{escape(view.error_code or '')}</code>: {escape(view.error_message or '')}"
    return (
        f'<tr class="{escape(view.status)}"><td><a href="{escape(href)}">{escape(view.name)}</a></td>'
        f"<td>{escape(view.status)}</td><td class=\"num\">{clock(view.duration)}</td>"
        f"<td>{escape(view.language or '–')}</td><td>{emotion}</td><td class=\"num\">{len(view.segments)}</td>"
        f"<td>{error}</td></tr>"
    )
