"""What a report shows, read from a result record: segments, labels, speakers, summary, and
the emotion track over time (the SER partial's windows when the report has them).

A stored record is read through the typed contract (``contracts.from_dict``), with the tolerance a report of any
pipeline version needs: fields a newer version added are left out at every level, and those an older version did not
have yet (speakers, channels, text sentiment, coverage) take their defaults. A record that does not fit the contract
otherwise (a partial, a job message, a duration that is not a number) is refused, naming where it does not fit. One
rule is the report's own: the emotion model counts as trained only where the record says ``trained: true`` (the
contract's default, for the oldest records, is true; a report must not pass placeholders off as emotions).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal, Mapping, Sequence

from workers.core.contracts import (
    Engine, LabelScore, Result, ResultSegment, SerPartial, SpeakerSummary, SpeakerTurn, Summary, from_dict,
)


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
    uncertain: bool = False  # the emotion's top score is below the head's calibrated threshold


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
    uncertain_seconds: float | None = None  # of their scored speech; None: no threshold known


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
    uncertain_seconds: float | None = None  # of speech_seconds whose emotion is uncertain; None: no threshold known
    emotion_from_speech: bool = False  # no transcript: the summary was scored over the speech regions

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
    """The report's view of a result: a ``Result``, or a stored record of any pipeline version (raises NotAResult
    naming where it does not fit the contract)."""
    if isinstance(record, Result):
        return _view(record, trained=record.engines.ser.trained)
    if not isinstance(record, dict):
        raise NotAResult(f"expected a JSON object, got {type(record).__name__}")
    for key in ("job", "status", "segments", "engines"):
        if key not in record:
            raise NotAResult(f"no '{key}' field")
    if record["status"] not in ("ok", "failed"):
        raise NotAResult(f"'status' is {record['status']!r}, not 'ok' or 'failed'")
    try:
        result = from_dict(Result, record, known_only=True)
    except ValueError as e:
        raise NotAResult(f"not a result of any pipeline version: {e}") from None
    ser = record["engines"].get("ser") if isinstance(record["engines"], dict) else None
    return _view(result, trained=isinstance(ser, dict) and ser.get("trained") is True)


def _view(result: Result, *, trained: bool) -> ReportView:
    segments = [_segment(s) for s in result.segments]
    summary = result.summary
    return ReportView(
        name=result.job.name,
        job_id=result.job.job_id,
        status=result.status,
        error_code=result.error.code if result.error else None,
        error_message=result.error.message if result.error else None,
        duration=result.duration,
        language=result.language,
        language_probability=result.language_probability,
        stt_engine=_engine(result.engines.stt),
        ser_engine=_engine(result.engines.ser),
        ser_trained=trained,
        pipeline_version=result.pipeline_version or "?",
        completed_at=result.timings.completed_at or None,
        size=float(result.job.size),
        content_type=result.job.content_type,
        labels=_labels(summary, segments),
        segments=segments,
        dominant_emotion=summary.dominant_emotion if summary else None,
        sentiment=summary.sentiment if summary else None,
        distribution=_scores(summary.distribution) if summary else {},
        sentiment_distribution=_scores(summary.sentiment_distribution) if summary else {},
        speech_seconds=summary.speech_seconds if summary else sum(s.end - s.start for s in segments),
        text_sentiment=summary.text_sentiment.label if summary and summary.text_sentiment else None,
        speakers=[_speaker(s) for s in result.speakers or ()],
        track=_segment_track(segments),
        turns=_turns(result.turns),
        uncertain_seconds=summary.uncertain_seconds if summary else None,
        emotion_from_speech=bool(summary and summary.emotion_from == "speech"),
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


def _segment(raw: ResultSegment) -> SegmentView:
    emotion = raw.emotion
    return SegmentView(
        start=raw.start,
        end=raw.end,
        text=raw.text.strip(),
        label=emotion.label if emotion else None,
        scores=_scores(emotion.scores) if emotion else {},
        speaker=raw.speaker,
        text_sentiment=raw.text_sentiment.label if raw.text_sentiment else None,
        uncertain=bool(emotion and emotion.uncertain),
    )


def _turns(turns: Sequence[SpeakerTurn] | None) -> list[tuple[float, float, str]]:
    """The result's diarized turns (start, end, speaker); they may overlap."""
    return [(t.start, t.end, t.speaker) for t in turns or ()]


def _speaker(raw: SpeakerSummary) -> SpeakerView:
    return SpeakerView(
        name=raw.speaker,
        talk_seconds=raw.talk_seconds,
        share=raw.share,
        turns=raw.turns,
        dominant=raw.dominant_emotion,
        distribution=_scores(raw.distribution),
        text_sentiment=raw.text_sentiment.label if raw.text_sentiment else None,
        interruptions=raw.interruptions,
        overlap_seconds=raw.overlap_seconds,
        uncertain_seconds=raw.uncertain_seconds,
    )


def _scores(items: Sequence[LabelScore]) -> dict[str, float]:
    return {item.label: item.score for item in items}


def _labels(summary: Summary | None, segments: Sequence[SegmentView]) -> list[str]:
    labels = list(_scores(summary.distribution)) if summary else []
    for seg in segments:
        labels += [label for label in seg.scores if label not in labels]
    return labels


def _engine(engine: Engine) -> str:
    return " ".join(part for part in (engine.name, engine.model) if part) or "?"
