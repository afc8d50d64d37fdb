"""What a report shows, read from a result record: segments, labels, speakers, summary, and
the emotion track over time (the SER partial's windows when the report has them).

The report reads the stored JSON leniently rather than through ``contracts.from_dict``,
which refuses unknown fields: a report must open results of any pipeline version,
including fields added later or missing from older ones (speakers, channels, text sentiment).
What it needs is checked, and a record without it is refused with the field it lacks.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal, Mapping, Sequence

from workers.core.contracts import SerPartial


class NotAResult(ValueError):
    """The data is not a result record (a partial, a job message, some other JSON)."""


@dataclass(frozen=True)
class SegmentView:
    start: float
    end: float
    text: str
    label: str | None  # the segment's top emotion; None when it has no emotion
    scores: Mapping[str, float]
    speaker: str | None
    text_sentiment: str | None  # of the words (POSITIVE, NEGATIVE, NEUTRAL), where the result has one


@dataclass(frozen=True)
class SpeakerView:
    """One entry of the result's per-speaker summary (the joiner computes them)."""

    name: str
    talk_seconds: float
    share: float  # of all speakers' talk time
    turns: int
    dominant: str | None
    distribution: Mapping[str, float]
    text_sentiment: str | None
    interruptions: int
    overlap_seconds: float


@dataclass(frozen=True)
class Track:
    """Each label's score over time: a point per emotion window, or per scored segment when the
    windows are not at hand (the result keeps only the segments' scores)."""

    kind: Literal["window", "segment"]
    points: int
    lines: Mapping[str, Sequence[tuple[float, float]]]  # label -> (time of the point, score)
    window_seconds: float | None = None
    hop_seconds: float | None = None


@dataclass(frozen=True)
class ReportView:
    name: str
    job_id: str
    status: str
    error_code: str | None
    error_message: str | None
    duration: float | None
    language: str | None
    language_probability: float | None
    stt_engine: str
    ser_engine: str
    ser_trained: bool
    pipeline_version: str
    completed_at: str | None
    size: float | None  # bytes
    content_type: str | None
    labels: Sequence[str]  # every emotion label, in the model's order
    segments: Sequence[SegmentView]
    dominant_emotion: str | None
    sentiment: str | None
    distribution: Mapping[str, float]
    sentiment_distribution: Mapping[str, float]
    speech_seconds: float
    text_sentiment: str | None
    speakers: Sequence[SpeakerView]
    track: Track
    turns: Sequence[tuple[float, float, str]] = ()  # diarized (start, end, speaker); may overlap

    def with_windows(self, ser: SerPartial) -> ReportView:
        """The same view with the track of the job's emotion windows; ValueError for another job's
        partial. The track stays per segment when the partial failed or has no windows, and when
        its channels were analysed apart: windows of two channels at one time make no single line,
        while the segments, each scored on its own channel, do."""
        if ser.job_id != self.job_id:
            raise ValueError(f"the SER partial is of job {ser.job_id}, the result of job {self.job_id}")
        if ser.status != "ok" or not ser.windows or len({w.channel for w in ser.windows}) > 1:
            return self
        labels = [*self.labels, *(label for label in ser.labels if label not in self.labels)]
        return replace(self, labels=labels, track=_window_track(ser))

    @property
    def end(self) -> float:
        """Where the timeline ends: the duration, or the last segment when it is unknown."""
        return max([self.duration or 0.0] + [s.end for s in self.segments])


def read_view(record: Any) -> ReportView:
    """The report's view of a result record; raises NotAResult naming what is missing."""
    if not isinstance(record, dict):
        raise NotAResult(f"expected a JSON object, got {type(record).__name__}")
    job = _field(record, "job", dict)
    status = _field(record, "status", str)
    if status not in ("ok", "failed"):
        raise NotAResult(f"'status' is {status!r}, not 'ok' or 'failed'")
    raw_segments = _field(record, "segments", list)
    engines = _field(record, "engines", dict)
    error, summary, timings = (_object(record.get(k)) for k in ("error", "summary", "timings"))
    segments = [_segment(i, s) for i, s in enumerate(raw_segments)]
    return ReportView(
        name=str(_field(job, "name", str, "job.")),
        job_id=str(job.get("job_id") or ""),
        status=status,
        error_code=error.get("code"),
        error_message=error.get("message"),
        duration=_number(record.get("duration")),
        language=record.get("language"),
        language_probability=_number(record.get("language_probability")),
        stt_engine=_engine(engines.get("stt")),
        ser_engine=_engine(engines.get("ser")),
        # Trained only when the record says so: a missing or odd value must not pass placeholders off as emotions.
        ser_trained=_object(engines.get("ser")).get("trained") is True,
        pipeline_version=str(record.get("pipeline_version") or "?"),
        completed_at=timings.get("completed_at"),
        size=_number(job.get("size")),
        content_type=job.get("content_type"),
        labels=_labels(summary, segments),
        segments=segments,
        dominant_emotion=summary.get("dominant_emotion"),
        sentiment=summary.get("sentiment"),
        distribution=_scores(summary.get("distribution")),
        sentiment_distribution=_scores(summary.get("sentiment_distribution")),
        speech_seconds=_number(summary.get("speech_seconds")) or sum(s.end - s.start for s in segments),
        text_sentiment=_sentiment_label(summary.get("text_sentiment")),
        speakers=[_speaker(s) for s in record.get("speakers") or () if isinstance(s, dict) and s.get("speaker")],
        track=_segment_track(segments),
        turns=_turns(record.get("turns")),
    )


def _window_track(ser: SerPartial) -> Track:
    lines: dict[str, list[tuple[float, float]]] = {label: [] for label in ser.labels}
    for window in ser.windows:
        middle = (window.start + window.end) / 2
        for label, score in zip(ser.labels, window.scores):
            lines[label].append((middle, score))
    return Track("window", len(ser.windows), lines, ser.window_seconds, ser.hop_seconds)


def _segment_track(segments: Sequence[SegmentView]) -> Track:
    lines: dict[str, list[tuple[float, float]]] = {}
    scored = [s for s in segments if s.scores]
    for seg in scored:
        for label, score in seg.scores.items():
            lines.setdefault(label, []).append(((seg.start + seg.end) / 2, score))
    return Track("segment", len(scored), lines)


def _field(data: dict, key: str, kind: type, where: str = "") -> Any:
    if key not in data:
        raise NotAResult(f"no '{where}{key}' field")
    if not isinstance(data[key], kind):
        raise NotAResult(f"'{where}{key}' is not a {kind.__name__}")
    return data[key]


def _segment(index: int, raw: Any) -> SegmentView:
    if not isinstance(raw, dict):
        raise NotAResult(f"segment {index} is not an object")
    try:
        start, end = float(raw["start"]), float(raw["end"])
    except (KeyError, TypeError, ValueError):
        raise NotAResult(f"segment {index} has no numeric 'start' and 'end'") from None
    emotion = _object(raw.get("emotion"))
    speaker = raw.get("speaker")
    return SegmentView(
        start=start,
        end=end,
        text=str(raw.get("text") or "").strip(),
        label=emotion.get("label"),
        scores=_scores(emotion.get("scores")),
        speaker=None if speaker is None else str(speaker),
        text_sentiment=_sentiment_label(raw.get("text_sentiment")),
    )


def _turns(raw: Any) -> list[tuple[float, float, str]]:
    """The result's diarized turns; entries without numeric times or a speaker are left out."""
    out = []
    for t in raw if isinstance(raw, list) else ():
        t = _object(t)
        start, end = _number(t.get("start")), _number(t.get("end"))
        if start is not None and end is not None and t.get("speaker") is not None:
            out.append((start, end, str(t["speaker"])))
    return out


def _speaker(raw: dict) -> SpeakerView:
    return SpeakerView(
        name=str(raw["speaker"]),
        talk_seconds=_number(raw.get("talk_seconds")) or 0.0,
        share=_number(raw.get("share")) or 0.0,
        turns=int(_number(raw.get("turns")) or 0),
        dominant=raw.get("dominant_emotion"),
        distribution=_scores(raw.get("distribution")),
        text_sentiment=_sentiment_label(raw.get("text_sentiment")),
        interruptions=int(_number(raw.get("interruptions")) or 0),
        overlap_seconds=_number(raw.get("overlap_seconds")) or 0.0,
    )


def _sentiment_label(scored: Any) -> str | None:
    label = _object(scored).get("label")
    return str(label) if label else None


def _object(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _scores(items: Any) -> dict[str, float]:
    """``[{label, score}, …]`` as a mapping; entries without a numeric score are left out."""
    pairs = ((i.get("label"), _number(i.get("score"))) for i in items if isinstance(i, dict)) \
        if isinstance(items, list) else ()
    return {str(label): score for label, score in pairs if label is not None and score is not None}


def _labels(summary: dict, segments: Sequence[SegmentView]) -> list[str]:
    labels = list(_scores(summary.get("distribution")))
    for seg in segments:
        labels += [label for label in seg.scores if label not in labels]
    return labels


def _engine(engine: Any) -> str:
    if not isinstance(engine, dict):
        return "?"
    return " ".join(str(engine[k]) for k in ("name", "model") if engine.get(k))
