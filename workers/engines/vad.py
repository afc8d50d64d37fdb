"""Where there is speech: Silero VAD, the ONNX model faster-whisper ships, in seconds.

Silero runs over everything it is given at once, and its memory grows with that: measured on
generated speech, +283 MB over a 15-minute file and +654 MB over a 60-minute one. So long
audio goes through it in blocks of about ``BLOCK_SECONDS``, each cut at the quietest 100 ms
near its end, and a 4-hour file needs the memory of a 2-minute one.
"""

from __future__ import annotations

import math

import numpy as np

from workers.core.engines import SAMPLE_RATE

Span = tuple[float, float]

BLOCK_SECONDS = 120.0


def speech_regions(audio: np.ndarray, *, min_silence_ms: int, pad_ms: int = 400, max_seconds: float = math.inf,
                   block_seconds: float = BLOCK_SECONDS) -> list[Span]:
    """(start, end) of each stretch of speech: a pause of ``min_silence_ms`` ends one, each is
    padded by ``pad_ms`` and none is longer than ``max_seconds``; found block by block."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    options = VadOptions(min_silence_duration_ms=min_silence_ms, speech_pad_ms=pad_ms,
                         max_speech_duration_s=max_seconds)
    return [((start + r["start"]) / SAMPLE_RATE, (start + r["end"]) / SAMPLE_RATE)
            for start, end in block_bounds(audio, int(block_seconds * SAMPLE_RATE))
            for r in get_speech_timestamps(audio[start:end], options)]


def block_bounds(audio: np.ndarray, block: int, search: int = 15 * SAMPLE_RATE) -> list[tuple[int, int]]:
    """Sample ranges of about ``block`` samples, each cut at the quietest 100 ms within
    ``search`` samples of its end (at most half a block)."""
    search = min(search, block // 2)
    n = len(audio)
    if n <= block + block // 5:
        return [(0, n)]
    frame = SAMPLE_RATE // 10
    bounds, start = [], 0
    while n - start > block + block // 5:
        lo, hi = start + block - search, min(start + block + search, n - frame)
        frames = audio[lo : lo + (hi - lo) // frame * frame].reshape(-1, frame)
        if len(frames):
            quietest = int(np.argmin(np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))))
            cut = lo + quietest * frame + frame // 2
        else:  # a block shorter than the frames searched
            cut = start + block
        bounds.append((start, cut))
        start = cut
    bounds.append((start, n))
    return bounds
