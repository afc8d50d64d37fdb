"""What a report shows, read from a result record: segments, labels, speakers, summary, and
the emotion track over time (the SER partial's windows when the report has them).

The report reads the stored JSON leniently rather than through ``contracts.from_dict``,
which refuses unknown fields: a report must open results of any pipeline version,
including fields added later (``speaker`` and ``channel`` per segment). What it needs is
checked, and a record without it is refused with the field it lacks.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal, Mapping, Sequence

from workers.contracts import SerPartial


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


@dataclass(frozen=True)
class SpeakerView:
    name: str
    talk_seconds: float
    share: float  # of all speech in the file
    turns: int
    distribution: Mapping[str, float]  # duration-weighted mean of the speaker's segment scores

    @property
    def dominant(self) -> str | None:
        return max(self.distribution, key=self.distribution.__getitem__) if self.distribution else None


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
    speakers: Sequence[SpeakerView]
    track: Track

    def with_windows(self, ser: SerPartial) -> ReportView:
        """The same view with the track of the job's emotion windows (kept as it is when the SER
        partial failed or has none); ValueError for another job's partial."""
        if ser.job_id != self.job_id:
            raise ValueError(f"the SER partial is of job {ser.job_id}, the result of job {self.job_id}")
        if ser.status != "ok" or not ser.windows:
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
        ser_trained=bool(_object(engines.get("ser")).get("trained", True)),
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
        speakers=speakers_of(segments),
        track=_segment_track(segments),
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


def speakers_of(segments: Sequence[SegmentView]) -> list[SpeakerView]:
    """Per speaker, in order of first appearance; none when no segment names a speaker.

    A turn is a run of consecutive segments of one speaker. The emotion distribution
    weights each segment by its duration, as the result's own summary does.
    """
    talk: dict[str, float] = {}
    turns: dict[str, int] = {}
    weighted: dict[str, dict[str, float]] = {}
    weight: dict[str, float] = {}
    previous = None
    for seg in segments:
        if seg.speaker is None:
            continue
        seconds = seg.end - seg.start
        talk[seg.speaker] = talk.get(seg.speaker, 0.0) + seconds
        turns[seg.speaker] = turns.get(seg.speaker, 0) + (seg.speaker != previous)
        previous = seg.speaker
        sums = weighted.setdefault(seg.speaker, {})
        if seg.scores:
            w = max(seconds, 1e-3)  # a zero-length segment still counts, a little (as in the summary)
            weight[seg.speaker] = weight.get(seg.speaker, 0.0) + w
            for label, score in seg.scores.items():
                sums[label] = sums.get(label, 0.0) + score * w
    total = sum(talk.values())
    return [
        SpeakerView(
            name=name,
            talk_seconds=seconds,
            share=seconds / total if total else 0.0,
            turns=turns[name],
            distribution={label: v / weight[name] for label, v in weighted[name].items()},
        )
        for name, seconds in talk.items()
    ]


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
    )


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
