"""Merge an STT partial and an SER partial into one result.

Every transcript segment gets the time-overlap-weighted mean of the scores of the emotion
windows that cover it; the whole-file summary weights each segment's scores by its
duration, so it describes the speech, not the silence around it. A segment whose top score
is below the emotion head's calibrated threshold (``SerPartial.uncertain_below``) is marked
``uncertain``, and the summaries count its seconds.

Emotion does not depend on the transcript: where STT returned no words (no segment, or only
segments such as "..." with no letter or digit) but diarization (or,
for channels analysed apart, VAD) found speech (humming, a laugh, a language the STT model
knows badly), the summary and the per-speaker figures are scored over those speech regions,
and ``summary.emotion_from`` says ``speech``. Pure and deterministic: the same partials
always give the same result, apart from ``timings``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Mapping, Optional, Sequence

import numpy as np

from workers.core.contracts import (
    EmotionWindow,
    Engines,
    Error,
    JobMessage,
    LabelScore,
    Result,
    ResultSegment,
    ResultTimings,
    ScoredSentiment,
    SegmentEmotion,
    Sentiment,
    SerPartial,
    SpeakerSummary,
    SpeakerTurn,
    SttPartial,
    Summary,
)
from workers.processing import speakers
from workers.processing.sentiment_map import DEFAULT_SENTIMENT_MAP, SENTIMENTS, parse_sentiment_map, sentiment_of
from workers.processing.text_sentiment import TEXT_CUTOFF, fused_sentiment, label_of, text_sentiment, voice_valence

__all__ = ["DEFAULT_SENTIMENT_MAP", "SENTIMENTS", "merge", "parse_sentiment_map", "sentiment_of", "window_weights"]

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


def _emotion(scores: np.ndarray, labels: Sequence[str], mapping: Mapping[str, Sentiment],
             uncertain_below: Optional[float]) -> SegmentEmotion:
    best = int(np.argmax(scores))
    return SegmentEmotion(
        label=labels[best],
        sentiment=sentiment_of(labels[best], mapping),
        scores=[LabelScore(label, float(s)) for label, s in zip(labels, scores)],
        uncertain=_uncertain(scores, uncertain_below),
    )


def _uncertain(scores: np.ndarray, uncertain_below: Optional[float]) -> Optional[bool]:
    return None if uncertain_below is None else bool(np.max(scores) < uncertain_below)


Tracks = dict[Optional[int], tuple[list[EmotionWindow], np.ndarray]]


def _scores_over(start: float, end: float, channel: Optional[int], tracks: Tracks) -> Optional[np.ndarray]:
    """The overlap-weighted mean of the scores of the windows over [start, end] on ``channel``."""
    track = tracks.get(channel) or tracks.get(None)
    if track is None:
        return None
    windows, matrix = track
    weights = window_weights(start, end, windows)
    return weights @ matrix / weights.sum()


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
    channels = stt.channels or ser.channels
    tracks = _tracks(ser.windows) if emotions_ok else {}
    turns = ser.speakers if ser.status == "ok" else None
    language = stt.language

    segments: list[ResultSegment] = []
    segment_scores: list[tuple[float, np.ndarray]] = []
    attributed, named_turns = (speakers.attribute_with_turns(stt.segments, turns, channels)
                               if stt.status == "ok" else ([], None))
    threshold = ser.uncertain_below if emotions_ok else None
    for seg in attributed:
        emotion, voice = None, None
        scores = _scores_over(seg.start, seg.end, seg.channel, tracks)
        if scores is not None:
            emotion = _emotion(scores, ser.labels, sentiment_map, threshold)
            voice = voice_valence(ser.labels, scores, sentiment_map)
            segment_scores.append((seg.end - seg.start, scores))
        text = text_sentiment(seg.text, language)
        segments.append(ResultSegment(**vars(seg), emotion=emotion, text_sentiment=text,
                                      fused_sentiment=fused_sentiment(voice, text)))

    summary, speaker_summaries = None, None
    worded = any(_has_words(s.text) for s in segments)
    regions = _speech_regions(named_turns, turns, channels) if emotions_ok and not worded else []
    if emotions_ok and stt.status == "ok" and regions:
        summary = replace(_summary(_region_scores(regions, tracks), ser.labels, sentiment_map, threshold),
                          emotion_from="speech")
        speaker_summaries = _speaker_summaries_of_speech(regions, tracks, ser.labels, sentiment_map, threshold)
    elif emotions_ok and stt.status == "ok":
        summary = replace(_summary(segment_scores, ser.labels, sentiment_map, threshold),
                          text_sentiment=_mean_text_sentiment(segments),
                          emotion_from="transcript" if segment_scores else None)
    if emotions_ok and speaker_summaries is None:
        speaker_summaries = _speaker_summaries(segments, ser.labels, sentiment_map, named_turns, threshold)

    return Result(
        job=job,
        status="failed" if failed else "ok",
        error=failed,
        language=stt.language,
        language_probability=stt.language_probability,
        duration=stt.duration if stt.duration is not None else ser.duration,
        segments=segments,
        summary=summary,
        engines=Engines(stt=stt.engine, ser=ser.engine, diarizer=ser.diarizer if turns is not None else None),
        pipeline_version=pipeline_version,
        submitted_at=job.submitted_at,
        timings=ResultTimings(stt=stt.timing, ser=ser.timing, completed_at=completed_at),
        channels=channels,
        speakers=speaker_summaries,
        speech_coverage=stt.speech_coverage if stt.status == "ok" else None,
        decode_warnings=stt.decode_warnings or ser.decode_warnings,
        turns=named_turns,
        repair_budget_spent=stt.repair_budget_spent if stt.status == "ok" else None,
    )


def _has_words(text: str) -> bool:
    """Whether a segment's text holds a word: Whisper writes "..." or "" for a laugh or a hum."""
    return any(ch.isalnum() for ch in text)


def _speech_regions(named_turns: Optional[Sequence[SpeakerTurn]], turns: Optional[Sequence[SpeakerTurn]],
                    channels: Optional[Sequence[str]]) -> list[SpeakerTurn]:
    """Where someone speaks: the diarized turns of mono audio (named S1, S2, ...), or each channel's
    VAD speech when channels are analysed apart; none where neither was analysed."""
    if channels:
        return sorted((t for t in turns or [] if t.channel is not None), key=lambda t: (t.start, t.channel))
    return list(named_turns or [])


def _region_scores(regions: Sequence[SpeakerTurn], tracks: Tracks) -> list[tuple[float, np.ndarray]]:
    """(seconds, scores) of each stretch of speech: the turns of a channel joined where they overlap,
    so that two people at once count once."""
    out = []
    for channel in dict.fromkeys(t.channel for t in regions):
        for start, end in speakers.speech_spans([t for t in regions if t.channel == channel]):
            scores = _scores_over(start, end, channel, tracks)
            if scores is not None:
                out.append((end - start, scores))
    return out


def _speaker_summaries_of_speech(regions: Sequence[SpeakerTurn], tracks: Tracks, labels: Sequence[str],
                                 mapping: Mapping[str, Sentiment],
                                 uncertain_below: Optional[float]) -> Optional[list[SpeakerSummary]]:
    """Per speaker of the speech regions, where no transcript segment carries an emotion."""
    names = list(dict.fromkeys(t.speaker for t in regions))
    if not names:
        return None
    talked = speakers.talk_seconds(regions)
    total = sum(talked.values()) or 1.0
    out = []
    for name in names:
        mine = [t for t in regions if t.speaker == name]
        part = _summary(_region_scores(mine, tracks), labels, mapping, uncertain_below)
        out.append(_speaker_summary(name, mine[0].channel, talked[name], total, speakers.turn_count(regions, name),
                                    part, None, speakers.overlaps(regions, name)))
    return out


def _speaker_summary(name: str, channel: Optional[int], talk: float, total: float, turns: int, part: Summary,
                     text: Optional[ScoredSentiment], overlaps: tuple[int, float]) -> SpeakerSummary:
    """One speaker's figures: their talk time against everyone's, and their emotion summary."""
    interruptions, overlap = overlaps
    return SpeakerSummary(
        speaker=name, channel=channel, talk_seconds=talk, share=min(1.0, talk / total), turns=turns,
        dominant_emotion=part.dominant_emotion, distribution=part.distribution,
        sentiment_distribution=part.sentiment_distribution, text_sentiment=text, interruptions=interruptions,
        overlap_seconds=overlap, uncertain_seconds=part.uncertain_seconds)


def _tracks(windows: Sequence[EmotionWindow]) -> Tracks:
    """The emotion windows of each channel (None: the mono mix) with their score matrix."""
    by_channel: dict[Optional[int], list[EmotionWindow]] = {}
    for w in windows:
        by_channel.setdefault(w.channel, []).append(w)
    return {c: (ws, np.array([w.scores for w in ws], dtype=np.float64)) for c, ws in by_channel.items()}


def _mean_text_sentiment(segments: Sequence[ResultSegment]) -> Optional[ScoredSentiment]:
    scored = [(s.end - s.start, s.text_sentiment.score) for s in segments if s.text_sentiment is not None]
    if not scored:
        return None
    weights = np.maximum([d for d, _ in scored], 1e-3)
    score = float(np.average([x for _, x in scored], weights=weights))
    return ScoredSentiment(label_of(score, TEXT_CUTOFF), score)


def _speaker_summaries(segments: Sequence[ResultSegment], labels: Sequence[str], mapping: Mapping[str, Sentiment],
                       turns: Optional[Sequence[SpeakerTurn]] = None,
                       uncertain_below: Optional[float] = None) -> Optional[list[SpeakerSummary]]:
    """Per speaker of the segments; talk time, interruptions and overlap from the diarized turns
    where there are any (mono: the diarizer's own speech, not the transcript's segments, which
    reach into silence), else from the segments (channels analysed apart overlap in time)."""
    names = list(dict.fromkeys(s.speaker for s in segments if s.speaker is not None))
    if not names:
        return None
    talked = speakers.talk_seconds(turns) if turns else {}
    total = (sum(talked.values()) if turns else sum(s.end - s.start for s in segments if s.speaker is not None)) or 1.0
    out = []
    for name in names:
        mine = [s for s in segments if s.speaker == name]
        scored = [(s.end - s.start, np.array([x.score for x in s.emotion.scores])) for s in mine if s.emotion]
        part = _summary(scored, labels, mapping, uncertain_below)
        talk = talked.get(name, 0.0) if turns else sum(s.end - s.start for s in mine)
        out.append(_speaker_summary(name, mine[0].channel, talk, total, speakers.turn_count(segments, name), part,
                                    _mean_text_sentiment(mine), speakers.overlaps(turns or segments, name)))
    return out


def _summary(
    segment_scores: list[tuple[float, np.ndarray]], labels: Sequence[str], mapping: Mapping[str, Sentiment],
    uncertain_below: Optional[float] = None,
) -> Summary:
    uncertain = None if uncertain_below is None else float(
        sum(d for d, scores in segment_scores if _uncertain(scores, uncertain_below)))
    if not segment_scores:
        return Summary(None, None, [], [], 0.0, uncertain_seconds=uncertain)
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
        uncertain_seconds=uncertain,
    )
