"""Where there is speech: Silero VAD, the ONNX model faster-whisper ships, in seconds."""

from __future__ import annotations

import math

import numpy as np

from workers.processing.audio import SAMPLE_RATE

Span = tuple[float, float]


def speech_regions(audio: np.ndarray, *, min_silence_ms: int, pad_ms: int = 400,
                   max_seconds: float = math.inf) -> list[Span]:
    """(start, end) of each stretch of speech: a pause of ``min_silence_ms`` ends one, each is
    padded by ``pad_ms`` and none is longer than ``max_seconds``."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    options = VadOptions(min_silence_duration_ms=min_silence_ms, speech_pad_ms=pad_ms,
                         max_speech_duration_s=max_seconds)
    return [(r["start"] / SAMPLE_RATE, r["end"] / SAMPLE_RATE) for r in get_speech_timestamps(audio, options)]
