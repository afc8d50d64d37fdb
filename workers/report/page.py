"""One result as one self-contained HTML page: header, summary cards, timeline, transcript.

``render_report`` is pure (a result record in, a string out); ``render_view`` is the same from
the record's view, for a caller that has read it already. The page stays light for an
hour of speech: one list item per segment, one polyline per emotion label, one rectangle
per segment in the speaker lanes, and a small script that reads the segment times once.
"""

from __future__ import annotations

from html import escape
from typing import Any, Mapping

from workers.core.contracts import SerPartial
from workers.report.layout import SENTIMENT_RULES, clock, colour_class, colour_rules, dash, page, percent
from workers.report.view import ReportView, SegmentView, read_view

# Timeline geometry, in SVG user units (the picture scales to the page's width).
WIDTH, LEFT, RIGHT, TOP = 1000.0, 72.0, 10.0, 8.0
PLOT_HEIGHT, LANE_HEIGHT, LANE_GAP, AXIS_HEIGHT = 150.0, 16.0, 4.0, 22.0
TURN_HEIGHT = 4.0  # the diarized turns' bar along the bottom of a speaker's lane
TICK_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200)


def render_report(result: dict[str, Any], *, audio_src: str | None = None,
                  windows: SerPartial | None = None) -> str:
    """The page for one result record; ``audio_src`` (a URL: relative path or data URI) adds a player,
    ``windows`` (the job's SER partial) a timeline point per emotion window instead of per segment.
    Raises NotAResult for a record that is not a result."""
    view = read_view(result)
    return render_view(view.with_windows(windows) if windows else view, audio_src=audio_src)


def render_view(view: ReportView, *, audio_src: str | None = None) -> str:
    index = {label: i for i, label in enumerate(view.labels)}
    hours = view.end >= 3600
    main = []
    if view.status != "ok":
        main.append(
            '<section class="failure" role="alert"><h2>This file could not be analysed</h2>'
            f"<p><code>{escape(view.error_code or 'unknown')}</code>: "
            f"{escape(view.error_message or 'no reason was recorded')}</p>"
            "<p>Whatever was known about the file is shown below.</p></section>"
        )
    if not view.ser_trained and view.segments:
        main.append('<p class="note">The emotion model is <strong>untrained</strong> (random weights): the emotions '
                    "on this page are placeholders, not measurements.</p>")
    if view.status == "ok" or view.segments:
        main += [_summary(view, index), _timeline(view, index, hours), _transcript(view, index, audio_src, hours)]
    return page(f"{view.name} – emotion report", _header(view) + "<main>" + "".join(main) + "</main>",
                style=colour_rules(view.labels) + SENTIMENT_RULES, script=True)


def _header(view: ReportView) -> str:
    language = view.language or "–"
    if view.language and view.language_probability is not None:
        language += f" ({percent(view.language_probability)} sure)"
    emotion = escape(view.ser_engine) + ("" if view.ser_trained else ' <span class="badge">untrained</span>')
    facts = [
        ("status", escape(view.status)),
        ("duration", clock(view.duration)),
        ("language", escape(language)),
        ("speech recognition", escape(view.stt_engine)),
        ("emotion model", emotion),
        ("pipeline", escape(view.pipeline_version)),
    ]
    if view.status != "ok":  # what little is known of a file that failed
        facts += [("type", escape(view.content_type or "unknown")), ("size", _bytes(view.size))]
    if view.completed_at:
        facts.append(("analysed", escape(view.completed_at)))
    items = "".join(f"<div><dt>{k}</dt><dd>{v}</dd></div>" for k, v in facts)
    return f'<header><h1>{escape(view.name)}</h1><dl class="meta">{items}</dl></header>'


def _bytes(size: float | None) -> str:
    if size is None:
        return "–"
    if size < 1000:
        return f"{size:.0f} bytes"
    return f"{size / 1e3:.1f} KB" if size < 1e6 else f"{size / 1e6:.1f} MB"


def _bars(shares: Mapping[str, float], classes: Mapping[str, str]) -> str:
    rows = "".join(
        f'<li class="{classes.get(label, "")}"><span>{escape(label.lower())}</span>'
        f'<span class="bar" aria-hidden="true"><span style="width:{min(max(share, 0.0), 1.0) * 100:.1f}%">'
        f'</span></span><span class="pct">{percent(share)}</span></li>'
        for label, share in shares.items()
    )
    return f'<ul class="bars">{rows}</ul>'


def _summary(view: ReportView, index: dict[str, int]) -> str:
    classes = {label: colour_class(label, index) for label in index}
    cards = []
    if view.dominant_emotion:
        sentiment = f" <small>({escape(view.sentiment.lower())})</small>" if view.sentiment else ""
        cards.append(_card("Dominant emotion", f'<p class="big {colour_class(view.dominant_emotion, index)}">'
                                               '<span class="swatch"></span>'
                                               f"{escape(view.dominant_emotion)}{sentiment}</p>"))
    if view.sentiment_distribution:
        classes_of_sentiment = {s: f"s-{s.lower()}" for s in view.sentiment_distribution}
        cards.append(_card("Sentiment", _bars(view.sentiment_distribution, classes_of_sentiment)
                           + _words(view.text_sentiment, "p")))
    speech = f'<p class="big">{clock(view.speech_seconds)}</p><p>'
    if view.duration and view.speech_seconds <= view.duration:
        speech += f"{percent(view.speech_seconds / view.duration)} of {clock(view.duration)}, "
    elif view.duration:  # channels or speakers talking at once
        speech += f"more than the {clock(view.duration)} of audio: voices overlap; "
    speech += f"{len(view.segments)} segment{'s' * (len(view.segments) != 1)}</p>"
    if view.emotion_from_speech:
        speech += ('<p class="note">No words were transcribed: the emotion was scored over the speech the '
                   "diarizer found.</p>")
    speech += _uncertain(view.uncertain_seconds, view.speech_seconds)
    cards.append(_card("Speech", speech))
    if view.distribution:
        cards.append(_card("Emotions (speech-weighted)", _bars(view.distribution, classes)))
    for speaker in view.speakers:
        body = (f'<p class="big">{escape(speaker.name)}</p><p>{clock(speaker.talk_seconds)} talking '
                f"({percent(speaker.share)} of speech), {speaker.turns} turn{'s' * (speaker.turns != 1)}")
        if speaker.interruptions or speaker.overlap_seconds:
            body += (f", {speaker.interruptions} interruption{'s' * (speaker.interruptions != 1)}, "
                     f"{speaker.overlap_seconds:.1f} s over another speaker")
        body += "</p>" + _words(speaker.text_sentiment, "p")
        body += _uncertain(speaker.uncertain_seconds, speaker.talk_seconds)
        if speaker.dominant:
            body += (f'<p class="{colour_class(speaker.dominant, index)}"><span class="swatch"></span>'
                     f"mostly {escape(speaker.dominant)}</p>" + _bars(speaker.distribution, classes))
        cards.append(_card("Speaker", body))
    return ('<section aria-labelledby="h-summary"><h2 id="h-summary">Summary</h2>'
            f'<div class="cards">{"".join(cards)}</div></section>')


def _uncertain(seconds: float | None, of: float) -> str:
    """How much of the scored speech has an uncertain emotion, where the emotion model says."""
    if seconds is None:
        return ""
    share = f" ({percent(seconds / of)})" if of > 0 else ""
    return f'<p class="uncertain">emotion uncertain for {clock(seconds)}{share}</p>'


def _words(sentiment: str | None, tag: str) -> str:
    """What the words say (text sentiment), where the result has it: English only."""
    return f"<{tag} class=\"words\">words: {escape(sentiment.lower())}</{tag}>" if sentiment else ""


def _card(title: str, body: str) -> str:
    return f'<div class="card"><h3>{escape(title)}</h3>{body}</div>'


def _timeline(view: ReportView, index: dict[str, int], hours: bool) -> str:
    if not view.segments:
        return ""
    track = view.track
    # A lane per speaker in order of first appearance; one "speech" lane when nobody is named.
    lanes = list(dict.fromkeys([s.speaker for s in view.segments] + [who for *_, who in view.turns]))
    end = view.end or 1.0
    x0, x1 = LEFT, WIDTH - RIGHT

    def x(t: float) -> float:
        return x0 + (x1 - x0) * t / end

    def y(score: float) -> float:
        return TOP + PLOT_HEIGHT * (1 - min(max(score, 0.0), 1.0))

    lanes_top = TOP + PLOT_HEIGHT + AXIS_HEIGHT
    height = lanes_top + len(lanes) * (LANE_HEIGHT + LANE_GAP) + 2
    out = [f'<svg class="timeline" viewBox="0 0 {WIDTH:g} {height:g}" role="img" '
           f'aria-labelledby="h-timeline d-timeline" data-x0="{x0:g}" data-x1="{x1:g}" data-end="{end:g}">']
    for score in (0.0, 0.5, 1.0):
        out.append(f'<line class="grid" x1="{x0:g}" x2="{x1:g}" y1="{y(score):g}" y2="{y(score):g}"/>'
                   f'<text x="{x0 - 6:g}" y="{y(score) + 4:g}" text-anchor="end">{percent(score)}</text>')
    step = next((s for s in TICK_STEPS if end / s <= 10), TICK_STEPS[-1])
    for k in range(int(end // step) + 1):
        anchor = "end" if x(k * step) > x1 - 20 else "middle"  # the last label stays inside the picture
        out.append(f'<text x="{x(k * step):.1f}" y="{TOP + PLOT_HEIGHT + 15:g}" text-anchor="{anchor}">'
                   f"{clock(k * step, hours=hours)}</text>")
    for label, i in index.items():
        points = " ".join(f"{x(t):.1f},{y(score):.1f}" for t, score in track.lines.get(label, ()))
        out.append(f'<polyline class="line e{i}" data-label="{escape(label)}" points="{points}"{dash(i)}/>')
    for row, speaker in enumerate(lanes):
        top = lanes_top + row * (LANE_HEIGHT + LANE_GAP)
        name = speaker if speaker is not None else ("speech" if len(lanes) == 1 else "unknown")
        out.append(f'<rect class="lane" x="{x0:g}" y="{top:g}" width="{x1 - x0:g}" height="{LANE_HEIGHT:g}"/>'
                   f'<text x="{x0 - 6:g}" y="{top + 12:g}" text-anchor="end">{escape(name)}</text>')
        out += [f'<rect class="s {colour_class(s.label, index)}" x="{x(s.start):.1f}" y="{top:g}" '
                f'width="{max(x(s.end) - x(s.start), 0.5):.1f}" height="{LANE_HEIGHT:g}"/>'
                for s in view.segments if s.speaker == speaker]
        # the diarized turns as a thin bar along the lane's bottom, over the segments: two speakers'
        # bars at one time overlap
        out += [f'<rect class="turn" x="{x(a):.1f}" y="{top + LANE_HEIGHT - TURN_HEIGHT:g}" '
                f'width="{max(x(b) - x(a), 0.5):.1f}" height="{TURN_HEIGHT:g}"/>'
                for a, b, who in view.turns if who == speaker]
    out.append(f'<line class="playhead" x1="{x0:g}" x2="{x0:g}" y1="{TOP:g}" y2="{height:g}" visibility="hidden"/>')
    legend = "".join(f'<li class="e{i}"><svg width="28" height="10" aria-hidden="true">'
                     f'<line x1="0" y1="5" x2="28" y2="5"{dash(i)}/></svg>{escape(label)}</li>'
                     for label, i in index.items())
    if track.kind == "window":
        measured = (f"in each of the {track.points} emotion windows ({track.window_seconds:g} s long, "
                    f"one every {track.hop_seconds:g} s)")
    else:
        measured = f"of each of the {track.points} scored segments"
    turns = (" (the dark bar along its bottom: when the diarizer hears them, at once where two talk together)"
             if view.turns else "")
    described = (f"Score of each emotion label {measured}, at its middle, over {clock(end)}; below, when each "
                 f"{'speaker' if lanes != [None] else 'segment'} speaks, coloured by its top emotion{turns}. "
                 "Click to play from there.")
    return (f'<section aria-labelledby="h-timeline"><h2 id="h-timeline">Emotion over time</h2>'
            f'<ul class="legend" aria-label="legend">{legend}</ul>{"".join(out)}</svg>'
            f'<p class="help" id="d-timeline">{described}</p></section>')


def _transcript(view: ReportView, index: dict[str, int], audio_src: str | None, hours: bool) -> str:
    head = '<section aria-labelledby="h-transcript"><h2 id="h-transcript">Transcript</h2>'
    if not view.segments:
        return head + '<p class="empty">No speech was found in this file.</p></section>'
    if audio_src:
        player = f'<div class="player"><audio controls preload="metadata" src="{escape(audio_src)}"></audio></div>'
        keys = ("<kbd>↑</kbd> <kbd>↓</kbd> move between segments, <kbd>Enter</kbd> plays from the segment, "
                "<kbd>Esc</kbd> pauses.")
    else:
        player = ""
        keys = ("<kbd>↑</kbd> <kbd>↓</kbd> move between segments; no audio is linked "
                "(give <code>--audio FILE</code> to play from a segment).")
    rows = "".join(_segment_row(s, index, hours, first=(n == 0)) for n, s in enumerate(view.segments))
    return f'{head}{player}<p class="help">{keys}</p><ol class="transcript">{rows}</ol></section>'


def _segment_row(seg: SegmentView, index: dict[str, int], hours: bool, *, first: bool) -> str:
    emotion = "–" if seg.label is None else escape(seg.label)
    if seg.label in seg.scores:
        emotion += f" <small>{percent(seg.scores[seg.label])}</small>"
    if seg.uncertain:
        emotion += ' <small class="uncertain">uncertain</small>'
    emotion += _words(seg.text_sentiment, "small")
    speaker = f'<span class="who">{escape(seg.speaker)}</span>' if seg.speaker is not None else ""
    return (f'<li class="seg {colour_class(seg.label, index)}" data-s="{seg.start:g}" data-e="{seg.end:g}" '
            f'tabindex="{0 if first else -1}"><span class="when">{clock(seg.start, hours=hours)}</span>'
            f'<span class="emo">{emotion}</span><span class="text">{speaker}{escape(seg.text)}</span></li>')
