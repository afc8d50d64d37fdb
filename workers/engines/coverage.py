"""Speech coverage: how much of the speech that VAD found the decoded words account for.

Batched Whisper decodes each window of up to 30 s once, without timestamps, at temperature 0,
with none of sequential decoding's fallbacks (faster-whisper lists the compression-ratio and
log-probability thresholds as unused there) and nothing that seeks on past an early end of
text. When the decoder stops early, a whole window of speech comes back as a few tokens (a
lone "10.") or loses a sentence, and nothing downstream notices. This module makes that
visible: VAD's speech regions minus the time the words cover are the holes a transcript
has, and their share is the coverage a result records.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from workers.core.contracts import Segment
from workers.core.engines import Coverage
from workers.engines import vad
from workers.engines.vad import Span

WINDOW_SECONDS = 30.0  # Whisper's receptive field
# Word times come from cross-attention and are off by up to a few hundred ms; VAD pads each
# region by 0.4 s. A word accounts for its own time plus this much either side.
WORD_SLACK_SECONDS = 0.5
# Nobody says a word for longer than this. When a window's text lacks a sentence, the aligner
# spreads the words beside it over the sentence's time ("We" from 183 s to 192 s): such a word
# accounts for this much of its time only, so the sentence it hides still shows as a hole.
WORD_MAX_SECONDS = 3.0
# Speech left uncovered for this long is a hole worth decoding again: shorter gaps are a
# word's timing error, not a lost word.
HOLE_SECONDS = 1.0
# A hole is decoded again with at least this much of the speech either side: the decoder hears
# the words at its edges whole and in context, and holes close together share a decoding.
HOLE_CONTEXT_SECONDS = 1.0


def speech_regions(audio: np.ndarray, block_seconds: float = vad.BLOCK_SECONDS) -> list[Span]:
    """Speech as faster-whisper's batched pipeline finds it (short pauses end a region, none is
    longer than a window)."""
    return vad.speech_regions(audio, min_silence_ms=160, max_seconds=WINDOW_SECONDS, block_seconds=block_seconds)


def windows(regions: Sequence[Span], max_seconds: float = WINDOW_SECONDS) -> list[Span]:
    """Consecutive regions joined into windows of at most ``max_seconds`` of the audio as it
    is, pauses included: the decoder hears sentences apart, as in training, instead of speech
    spliced end to end with the pauses cut out (where faster-whisper's own chunks lose
    sentences at the joins)."""
    out: list[list[float]] = []
    for start, end in regions:
        if out and end - out[-1][0] <= max_seconds:
            out[-1][1] = end
        else:
            out.append([start, end])
    return [(a, b) for a, b in out]


def _union(spans: Iterable[Span]) -> list[Span]:
    merged: list[list[float]] = []
    for a, b in sorted(spans):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return [(a, b) for a, b in merged]


def covered_spans(segments: Sequence[Segment]) -> list[Span]:
    return _union((w.start - WORD_SLACK_SECONDS, min(w.end, w.start + WORD_MAX_SECONDS) + WORD_SLACK_SECONDS)
                  for s in segments for w in s.words)


def uncovered(regions: Sequence[Span], segments: Sequence[Segment]) -> list[Span]:
    """The parts of ``regions`` that no word accounts for."""
    cover = covered_spans(segments)
    out: list[Span] = []
    for start, end in regions:
        cursor = start
        for a, b in cover:
            if b <= cursor or a >= end:
                continue
            if a > cursor:
                out.append((cursor, a))
            cursor = max(cursor, b)
            if cursor >= end:
                break
        if cursor < end:
            out.append((cursor, end))
    return out


def holes(regions: Sequence[Span], segments: Sequence[Segment]) -> list[Span]:
    return [(a, b) for a, b in uncovered(regions, segments) if b - a >= HOLE_SECONDS]


def hole_clips(speech: Sequence[Span], segments: Sequence[Segment]) -> list[Span]:
    """What to decode again where the words leave holes in ``speech`` (a window's regions, in
    order): each hole with a second either side, widened until it ends where a region ends (in
    a pause) and no word runs over its ends. The aligner spreads the words beside a lost
    sentence over the sentence's time, so they are timed wrongly and are decoded again with it.
    Clips that overlap are decoded as one."""
    words = [w for s in segments for w in s.words]
    clips = []
    for start, end in holes(speech, segments):
        clip = (start - HOLE_CONTEXT_SECONDS, end + HOLE_CONTEXT_SECONDS)
        while True:
            ends = [(a, b) for a, b in speech if a < clip[1] and b > clip[0]]
            ends += [(w.start, w.end) for w in words if w.start < clip[1] and w.end > clip[0]]
            wider = (min([clip[0]] + [a for a, _ in ends]), max([clip[1]] + [b for _, b in ends]))
            if wider == clip:
                break
            clip = wider
        clips.append((max(clip[0], speech[0][0]), min(clip[1], speech[-1][1])))
    return _union(clips)


def coverage_of(regions: Sequence[Span], segments: Sequence[Segment]) -> Coverage:
    """Seconds of speech in ``regions`` and the seconds of it that the words of ``segments`` cover."""
    speech = sum(b - a for a, b in regions)
    return Coverage(speech, speech - sum(b - a for a, b in uncovered(regions, segments)))


def in_speech(segment: Segment, regions: Sequence[Span]) -> bool:
    """Whether any word of ``segment`` falls in speech; a segment without words is kept."""
    if not segment.words:
        return True
    return any(w.start < b and w.end > a for w in segment.words for a, b in regions)
