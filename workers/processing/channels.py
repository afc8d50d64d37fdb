"""Which channels of a recording are analysed apart (a call recorded agent-left, customer-right).

``CHANNEL_MODE``: ``mix`` averages every channel to mono; ``split`` analyses each channel
(up to 8) on its own; ``auto`` (default) splits a two-channel recording whose channels carry
different talkers and mixes everything else. "Different" is measured, not guessed from the
layout: both channels must hold sound (neither more than 30 dB below the other, neither near
digital silence), and their loudness over time (50 ms frames) must not move together
(correlation < 0.5): one talker heard on two microphones, or a mono file stored as stereo,
moves together and is mixed. Recordings with more than two channels (surround mixes) are
mixed unless ``split`` asks otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Sequence

import numpy as np

from workers.core.engines import SAMPLE_RATE, Coverage, EmotionClassifier, EmotionTrack, SpeechToText, Transcript
from workers.processing.audio import DecodedAudio
from workers.core.errors import ConfigError

CHANNEL_MODES = ("auto", "mix", "split")
FRAME = SAMPLE_RATE // 20
SILENT_DB = -60.0
LEVEL_GAP_DB = 30.0
SAME_TALKER_CORRELATION = 0.5


@dataclass(frozen=True)
class ChannelPlan:
    signals: tuple[np.ndarray, ...]  # the mono mix alone, or each channel
    names: Optional[list[str]]  # None: mono

    @property
    def split(self) -> bool:
        return self.names is not None


def plan(audio: DecodedAudio, mode: str, names: Sequence[str] = ()) -> ChannelPlan:
    if mode not in CHANNEL_MODES:
        raise ConfigError(f"CHANNEL_MODE must be one of {', '.join(CHANNEL_MODES)}, got {mode!r}")
    channels = audio.channels
    split = len(channels) >= 2 and (mode == "split" or (mode == "auto" and len(channels) == 2
                                                         and different_talkers(*channels)))
    if not split:
        return ChannelPlan((audio.samples,), None)
    return ChannelPlan(channels, channel_names(len(channels), names))


def channel_names(count: int, names: Sequence[str] = ()) -> list[str]:
    """The names given (CHANNEL_NAMES), then CH1, CH2, … for the rest."""
    given = [n.strip() for n in names if n.strip()]
    return [given[k] if k < len(given) else f"CH{k + 1}" for k in range(count)]


def different_talkers(left: np.ndarray, right: np.ndarray) -> bool:
    a, b = _frame_levels_db(left), _frame_levels_db(right)
    if len(a) < 4:
        return False
    loud_a, loud_b = np.percentile(a, 95), np.percentile(b, 95)
    if min(loud_a, loud_b) < SILENT_DB or abs(loud_a - loud_b) > LEVEL_GAP_DB:
        return False
    energy_a, energy_b = 10 ** (a / 10), 10 ** (b / 10)
    if energy_a.std() == 0 or energy_b.std() == 0:
        return False
    return float(np.corrcoef(energy_a, energy_b)[0, 1]) < SAME_TALKER_CORRELATION


def _frame_levels_db(x: np.ndarray) -> np.ndarray:
    frames = x[: len(x) // FRAME * FRAME].reshape(-1, FRAME).astype(np.float64)
    return 10 * np.log10(np.mean(frames ** 2, axis=1) + 1e-12)


# --- the engines over each channel of a split recording, merged into one transcript or track ---

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
                        max(t.duration for t in tracks), first.uncertain_below)
