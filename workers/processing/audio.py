"""Decode whatever FFmpeg's libraries (through PyAV) can read into 16 kHz mono float32.

The format is found from the content, never from the file name, and no ffmpeg binary is
needed. Bad input raises a PermanentError whose code says what was wrong:
``empty_file``, ``not_audio``, ``corrupt_audio``, ``no_audio_decoded`` or ``too_long``. Audio
that decodes only in part (a truncated or damaged file) is kept, and ``DecodedAudio.warnings``
says what was lost, so the result says it too rather than a log line alone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np

from workers.core.engines import SAMPLE_RATE
from workers.core.errors import PermanentError

log = logging.getLogger(__name__)



MAX_KEPT_CHANNELS = 8


@dataclass(frozen=True)
class DecodedAudio:
    samples: np.ndarray  # float32, mono, SAMPLE_RATE
    source_format: str
    source_rate: int | None
    source_channels: int | None
    channels: tuple[np.ndarray, ...] = ()  # each channel at SAMPLE_RATE, when asked for and there are 2+
    warnings: tuple[str, ...] = ()  # what could not be decoded (packets skipped, an early end)

    @property
    def duration(self) -> float:
        return len(self.samples) / SAMPLE_RATE


def decode(source: str | Path | bytes | BinaryIO, *, max_seconds: float, keep_channels: bool = False) -> DecodedAudio:
    """Decode ``source`` (a path, bytes or a binary file) to 16 kHz mono float32; with
    ``keep_channels``, each of up to 8 channels too."""
    if isinstance(source, (bytes, bytearray)):
        import io

        if not source:
            raise PermanentError("the file is empty (0 bytes)", code="empty_file")
        source = io.BytesIO(source)
    elif isinstance(source, (str, Path)) and Path(source).stat().st_size == 0:
        raise PermanentError("the file is empty (0 bytes)", code="empty_file")
    try:
        container = av.open(source, mode="r", metadata_errors="ignore")
    except av.error.FFmpegError as e:
        raise PermanentError(f"not a recognised audio or video format ({_why(e)})", code="not_audio") from e
    try:
        return _decode_container(container, max_seconds, keep_channels)
    finally:
        container.close()


def _decode_container(container: av.container.InputContainer, max_seconds: float,
                      keep_channels: bool = False) -> DecodedAudio:
    fmt = container.format.name
    if not container.streams.audio:
        kinds = sorted({s.type for s in container.streams}) or ["nothing"]
        raise PermanentError(
            f"no audio stream: the content is {fmt!r} holding {', '.join(kinds)}", code="not_audio"
        )
    stream = container.streams.audio[0]
    declared = _declared_seconds(container, stream)
    if declared is not None and declared > max_seconds * 1.01:
        raise PermanentError(
            f"audio is {declared:.0f} s long; the limit is {max_seconds:.0f} s (MAX_AUDIO_SECONDS)",
            code="too_long",
        )
    limit = int(max_seconds * SAMPLE_RATE)
    # Keep the channels through resampling and average them afterwards: FFmpeg's own downmix
    # sums channels with gains (a 7.1 tone comes out at over 4x its level and clips).
    # Packed samples: PyAV mishandles planar frames of more than 8 channels.
    resampler, shape = av.AudioResampler(format="flt", rate=SAMPLE_RATE), None
    source_channels = stream.codec_context.channels if stream.codec_context else None
    kept = source_channels if keep_channels and 2 <= (source_channels or 0) <= MAX_KEPT_CHANNELS else 1
    buffer = _Samples(int((declared or 60.0) * SAMPLE_RATE) + SAMPLE_RATE, limit, kept)
    errors, warnings = 0, []
    try:
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.error.FFmpegError as e:
                errors += 1
                if errors > 50 and not buffer.size:
                    raise PermanentError(f"the audio stream does not decode ({_why(e)})", code="corrupt_audio") from e
                continue
            for frame in frames:
                # Joined files and chained Ogg change rate or layout mid-stream; a resampler
                # only takes the shape it was set up with, so flush it and start another.
                frame_shape = (frame.format.name, frame.layout.name, frame.sample_rate)
                if frame_shape != shape:
                    if shape is not None:
                        for out in resampler.resample(None):
                            buffer.append(out)
                        resampler = av.AudioResampler(format="flt", rate=SAMPLE_RATE)
                    shape = frame_shape
                for out in resampler.resample(frame):
                    buffer.append(out)
            if buffer.size > limit:
                raise PermanentError(
                    f"audio is longer than the limit of {max_seconds:.0f} s (MAX_AUDIO_SECONDS)",
                    code="too_long",
                )
        for out in resampler.resample(None):
            buffer.append(out)
    except av.error.FFmpegError as e:
        if not buffer.size:
            raise PermanentError(f"the audio stream does not decode ({_why(e)})", code="corrupt_audio") from e
        warnings.append(f"the audio stream ends early ({_why(e)})")
    if errors:
        warnings.append(f"{errors} undecodable packet(s) skipped")
    if buffer.size == 0:
        raise PermanentError(f"no audio could be decoded from the {fmt!r} content", code="no_audio_decoded")
    if warnings:
        decoded = buffer.size / SAMPLE_RATE
        if declared is not None and declared > decoded:
            warnings.append(f"{decoded:.1f} s decoded of the {declared:.1f} s the file declares (truncated or damaged)")
        log.warning("audio decoded in part: %s", "; ".join(warnings))
    return DecodedAudio(buffer.result(), fmt, stream.rate or None, source_channels, buffer.channels(), tuple(warnings))


def _why(error: av.error.FFmpegError) -> str:
    """FFmpeg's reason without the file name: the input is a scratch copy, and a failed result
    must read the same whichever copy it was."""
    return getattr(error, "strerror", None) or str(error)


class _Samples:
    """A growing float32 buffer: one copy of the audio in memory, not a list of chunks plus their
    join. Row 0 is the mono mix; with ``kept`` channels, rows 1.. hold each channel."""

    def __init__(self, expected: int, limit: int, kept: int = 1) -> None:
        self._rows = 1 + (kept if kept > 1 else 0)
        self._data = np.empty((self._rows, min(expected, limit + SAMPLE_RATE)), dtype=np.float32)
        self.size = 0

    def append(self, frame: av.AudioFrame) -> None:
        channels = len(frame.layout.channels)
        packed = np.frombuffer(frame.planes[0], dtype=np.float32)[: frame.samples * channels].reshape(-1, channels)
        if self._rows > 1 and channels != self._rows - 1:  # the layout changed midway: mono from here on
            self._rows = 1
        end = self.size + len(packed)
        if end > self._data.shape[1]:
            grown = np.empty((self._data.shape[0], max(end, int(self._data.shape[1] * 1.5))), dtype=np.float32)
            grown[:, : self.size] = self._data[:, : self.size]
            self._data = grown
        self._data[0, self.size : end] = packed.mean(axis=1, dtype=np.float32) if channels > 1 else packed[:, 0]
        if self._rows > 1:
            self._data[1:, self.size : end] = packed.T
        self.size = end

    def _row(self, k: int) -> np.ndarray:
        samples = self._data[k, : self.size]
        if self._data.shape[1] - self.size > max(SAMPLE_RATE * 10, self._data.shape[1] // 10):
            samples = samples.copy()  # do not keep a mostly empty buffer alive
        if not np.isfinite(samples).all():  # rare; nan_to_num's temporaries cost several copies
            np.nan_to_num(samples, copy=False, nan=0.0, posinf=1.0, neginf=-1.0)
        return samples

    def result(self) -> np.ndarray:
        return self._row(0)

    def channels(self) -> tuple[np.ndarray, ...]:
        return tuple(self._row(k) for k in range(1, self._rows))


def _declared_seconds(container: av.container.InputContainer, stream: av.audio.AudioStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None
