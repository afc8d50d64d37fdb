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

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from workers.processing.audio import SAMPLE_RATE, DecodedAudio
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
