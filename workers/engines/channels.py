"""The engines over each channel of a split recording, merged into one transcript or track."""

from __future__ import annotations

from dataclasses import replace

from workers.processing.audio import SAMPLE_RATE
from workers.processing.channels import ChannelPlan
from workers.engines.coverage import Coverage
from workers.engines.ser import EmotionClassifier, EmotionTrack
from workers.engines.stt import SpeechToText, Transcript


def transcribe_channels(engine: SpeechToText, plan: ChannelPlan) -> Transcript:
    """One transcript: each channel's segments marked with their channel, in time order. The
    language is that of the channel with the most transcribed speech."""
    if not plan.split:
        return engine.transcribe(plan.signals[0])
    parts = [engine.transcribe(signal) for signal in plan.signals]
    segments = sorted(
        (replace(seg, channel=c) for c, t in enumerate(parts) for seg in t.segments),
        key=lambda s: (s.start, s.channel),
    )
    spoken = [sum(s.end - s.start for s in t.segments) for t in parts]
    main = parts[max(range(len(parts)), key=lambda c: (spoken[c], -c))]
    return Transcript(main.language, main.language_probability, max(len(s) for s in plan.signals) / SAMPLE_RATE,
                      [replace(s, id=i) for i, s in enumerate(segments)], sum((t.coverage for t in parts), Coverage()),
                      _any_spent([t.repair_budget_spent for t in parts]))


def _any_spent(spent: list[bool | None]) -> bool | None:
    """Whether any channel's repair ran out of budget; None where no channel had such a repair."""
    known = [s for s in spent if s is not None]
    return any(known) if known else None


def classify_channels(engine: EmotionClassifier, plan: ChannelPlan) -> EmotionTrack:
    """One track: the windows of every channel, each marked with its channel."""
    if not plan.split:
        return engine.classify(plan.signals[0])
    tracks = [engine.classify(signal) for signal in plan.signals]
    windows = [replace(w, channel=c) for c, t in enumerate(tracks) for w in t.windows]
    first = tracks[0]
    return EmotionTrack(first.window_seconds, first.hop_seconds, first.labels, windows,
                        max(t.duration for t in tracks))
