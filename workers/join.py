"""Merge an STT partial and an SER partial into one result.

Every transcript segment gets the time-overlap-weighted mean of the scores of the emotion
windows that cover it; the whole-file summary weights each segment's scores by its
duration, so it describes the speech, not the silence around it. Pure and deterministic:
the same partials always give the same result, apart from ``timings``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Mapping, Sequence

import numpy as np

from workers.contracts import (
    EmotionWindow,
    Engines,
    Error,
    JobMessage,
    LabelScore,
    Result,
    ResultSegment,
    ResultTimings,
    SegmentEmotion,
    Sentiment,
    SerPartial,
    SttPartial,
    Summary,
)
from workers.errors import ConfigError

SENTIMENTS: tuple[Sentiment, ...] = ("POSITIVE", "NEGATIVE", "NEUTRAL")

# Label spellings used by common emotion checkpoints (IEMOCAP/RAVDESS/CREMA-D/superb).
DEFAULT_SENTIMENT_MAP: dict[str, Sentiment] = {
    **dict.fromkeys(["happy", "hap", "happiness", "joy", "excited", "exc", "surprise", "surprised", "sur", "pleasant"], "POSITIVE"),
    **dict.fromkeys(["angry", "ang", "anger", "sad", "sadness", "fear", "fearful", "fea", "disgust", "disgusted", "dis", "frustrated", "fru", "contempt"], "NEGATIVE"),
    **dict.fromkeys(["neutral", "neu", "calm", "other", "unknown", "xxx"], "NEUTRAL"),
}


def parse_sentiment_map(spec: str) -> dict[str, Sentiment]:
    """Built-in map updated with ``label=SENTIMENT,label=SENTIMENT`` from SENTIMENT_MAP."""
    mapping = dict(DEFAULT_SENTIMENT_MAP)
    for item in filter(None, (p.strip() for p in spec.split(","))):
        label, sep, sentiment = item.partition("=")
        sentiment = sentiment.strip().upper()
        if not sep or sentiment not in SENTIMENTS:
            raise ConfigError(f"SENTIMENT_MAP entry {item!r} must look like label=POSITIVE|NEGATIVE|NEUTRAL")
        mapping[label.strip().lower()] = sentiment  # type: ignore[assignment]
    return mapping


def sentiment_of(label: str, mapping: Mapping[str, Sentiment]) -> Sentiment:
    return mapping.get(label.lower(), "NEUTRAL")


def window_weights(start: float, end: float, windows: Sequence[EmotionWindow]) -> np.ndarray:
    """Seconds of overlap between [start, end] and each window; the nearest window if none."""
    starts = np.array([w.start for w in windows])
    ends = np.array([w.end for w in windows])
    overlap = np.clip(np.minimum(ends, end) - np.maximum(starts, start), 0.0, None)
    if overlap.sum() > 0:
        return overlap
    centre = (start + end) / 2
    nearest = np.argmin(np.abs((starts + ends) / 2 - centre))
    weights = np.zeros(len(windows))
    weights[nearest] = 1.0
    return weights


def _emotion(scores: np.ndarray, labels: Sequence[str], mapping: Mapping[str, Sentiment]) -> SegmentEmotion:
    best = int(np.argmax(scores))
    return SegmentEmotion(
        label=labels[best],
        sentiment=sentiment_of(labels[best], mapping),
        scores=[LabelScore(label, float(s)) for label, s in zip(labels, scores)],
    )


def merge(
    job: JobMessage,
    stt: SttPartial,
    ser: SerPartial,
    *,
    sentiment_map: Mapping[str, Sentiment],
    pipeline_version: str,
    completed_at: str,
) -> Result:
    failed = next((p.error for p in (stt, ser) if p.status == "failed"), None)
    if ser.status == "ok" and any(len(w.scores) != len(ser.labels) for w in ser.windows):
        # A partial that contradicts itself: say so in a failed result rather than crash the joiner.
        failed = failed or Error("invalid_ser_partial", f"emotion windows do not carry one score for each of "
                                                        f"the {len(ser.labels)} labels {list(ser.labels)}")
        ser = replace(ser, status="failed", windows=[])
    emotions_ok = ser.status == "ok" and bool(ser.windows)
    matrix = np.array([w.scores for w in ser.windows], dtype=np.float64) if emotions_ok else None

    segments: list[ResultSegment] = []
    segment_scores: list[tuple[float, np.ndarray]] = []
    for seg in stt.segments if stt.status == "ok" else []:
        emotion = None
        if matrix is not None:
            weights = window_weights(seg.start, seg.end, ser.windows)
            scores = weights @ matrix / weights.sum()
            emotion = _emotion(scores, ser.labels, sentiment_map)
            segment_scores.append((seg.end - seg.start, scores))
        segments.append(
            ResultSegment(
                seg.id, seg.start, seg.end, seg.text, seg.avg_logprob, seg.no_speech_prob, seg.words, emotion
            )
        )

    summary = None
    if emotions_ok and stt.status == "ok":
        summary = _summary(segment_scores, ser.labels, sentiment_map)

    return Result(
        job=job,
        status="failed" if failed else "ok",
        error=failed,
        language=stt.language,
        language_probability=stt.language_probability,
        duration=stt.duration if stt.duration is not None else ser.duration,
        segments=segments,
        summary=summary,
        engines=Engines(stt=stt.engine, ser=ser.engine),
        pipeline_version=pipeline_version,
        submitted_at=job.submitted_at,
        timings=ResultTimings(stt=stt.timing, ser=ser.timing, completed_at=completed_at),
    )


def _summary(
    segment_scores: list[tuple[float, np.ndarray]], labels: Sequence[str], mapping: Mapping[str, Sentiment]
) -> Summary:
    if not segment_scores:
        return Summary(None, None, [], [], 0.0)
    durations = np.array([d for d, _ in segment_scores])
    weights = np.maximum(durations, 1e-3)  # a zero-length segment still counts, a little
    distribution = np.stack([s for _, s in segment_scores]).T @ weights / weights.sum()
    by_sentiment = {s: 0.0 for s in SENTIMENTS}
    for label, score in zip(labels, distribution):
        by_sentiment[sentiment_of(label, mapping)] += float(score)
    dominant = labels[int(np.argmax(distribution))]
    return Summary(
        dominant_emotion=dominant,
        # The sentiment of the dominant emotion, as each segment's is of its own top label;
        # sentiment_distribution has the shares (capped at 1: multi-label scores need not sum to 1).
        sentiment=sentiment_of(dominant, mapping),
        distribution=[LabelScore(label, float(s)) for label, s in zip(labels, distribution)],
        sentiment_distribution=[LabelScore(s, min(1.0, v)) for s, v in by_sentiment.items()],
        speech_seconds=float(durations.sum()),
    )
