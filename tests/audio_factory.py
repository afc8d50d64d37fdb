"""Make test audio in memory: tones, noise, silence, speech samples, in any container PyAV writes."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from workers.processing.audio import SAMPLE_RATE, decode

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"

# container format, codec, sample format, file suffix
FORMATS = {
    "wav": ("wav", "pcm_s16le", "s16", ".wav"),
    "mp3": ("mp3", "libmp3lame", "s16p", ".mp3"),
    "m4a": ("ipod", "aac", "fltp", ".m4a"),
    "ogg": ("ogg", "libopus", "s16", ".ogg"),
    "flac": ("flac", "flac", "s16", ".flac"),
    "webm": ("webm", "libopus", "s16", ".webm"),
}


def tone(seconds: float, rate: int = 16_000, freq: float = 440.0, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def noise(seconds: float, rate: int = 16_000, amplitude: float = 0.5, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (amplitude * rng.uniform(-1, 1, int(seconds * rate))).astype(np.float32)


def music(seconds: float, rate: int = 16_000, seed: int = 0) -> np.ndarray:
    """A tune: chords of harmonic tones, a new one every quarter second, over a kick drum each half."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    out = np.zeros_like(t)
    note = int(0.25 * rate)
    for start in range(0, len(t), note):
        part = t[start : start + note] - t[start]
        for semitone in rng.choice([0, 3, 4, 7, 10, 12], size=3, replace=False):
            freq = 220.0 * 2 ** (semitone / 12)
            tone = sum(np.sin(2 * np.pi * k * freq * part) / k for k in (1, 2, 3))
            out[start : start + note] += tone * np.exp(-3 * part)
    beat = int(0.5 * rate)
    for start in range(0, len(t), beat):
        part = t[start : start + beat] - t[start]
        out[start : start + beat] += 2.0 * np.sin(2 * np.pi * 60 * part) * np.exp(-12 * part)
    return (0.3 * out / np.abs(out).max()).astype(np.float32)


def vowel(seconds: float, f0: float = 140.0, formants=((700, 110), (1220, 120), (2600, 160)), seed: int = 0,
          rate: int = 16_000) -> np.ndarray:
    """A sung or hummed vowel: a glottal pulse train at ``f0`` with vibrato through formant resonators
    (centre and bandwidth in Hz), peak 0.3."""
    from scipy.signal import lfilter

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    pitch = f0 * (1 + 0.04 * np.sin(2 * np.pi * 5 * t) + 0.1 * np.sin(2 * np.pi * 0.4 * t))
    pulses = (np.diff(np.floor(np.cumsum(pitch / rate)), prepend=0) > 0).astype(float)
    out = lfilter([1], [1, -0.97], pulses) + 0.02 * rng.normal(size=len(t))
    for centre, bandwidth in formants:
        r, theta = np.exp(-np.pi * bandwidth / rate), 2 * np.pi * centre / rate
        out = lfilter([1 - r], [1, -2 * r * np.cos(theta), r * r], out)
    out = out * np.minimum(1, np.minimum(t / 0.05, (t[-1] - t) / 0.05))
    return (0.3 * out / np.abs(out).max()).astype(np.float32)


def laugh(peak: float = 0.03, rate: int = 16_000) -> np.ndarray:
    """Two quiet bursts of "ha ha ha ha ha ha", 5 s: a voice and no word (Whisper base writes none, or "...")."""
    parts = []
    for seed in (1, 2):
        rng = np.random.default_rng(seed)
        parts.append(np.zeros(int(0.4 * rate), np.float32))
        for k in range(6):
            breath = 0.05 * rng.normal(size=int(0.08 * rate)).astype(np.float32)
            ha = vowel(0.12, f0=260 - 10 * k, formants=((800, 150), (1300, 200), (2700, 300)), seed=k, rate=rate)
            parts += [breath, ha, np.zeros(int(0.08 * rate), np.float32)]
        parts.append(np.zeros(int(0.4 * rate), np.float32))
    out = np.concatenate(parts)
    return (out * peak / np.abs(out).max()).astype(np.float32)


def babble() -> np.ndarray:
    """Six talkers at once, 14 s: the three speech samples, each twice, shifted."""
    voices = [decode(SAMPLES / name, max_seconds=60).samples[: 12 * SAMPLE_RATE]
              for name in ("en_support_call.flac", "es_reserva.flac", "de_termin.flac")]
    out = np.zeros(14 * SAMPLE_RATE, dtype=np.float32)
    for k, voice in enumerate(voices * 2):
        shift = int(0.7 * k * SAMPLE_RATE)
        out[shift : shift + len(voice)] += voice[: len(out) - shift]
    return out / np.abs(out).max() * 0.5


def encode(samples: np.ndarray, rate: int = 16_000, fmt: str = "wav", channels: int = 1) -> bytes:
    """Encode mono float samples (copied to every channel) into a real file of format ``fmt``."""
    container_format, codec, sample_fmt, _ = FORMATS[fmt]
    if codec == "libopus" and rate not in (8000, 12000, 16000, 24000, 48000):
        raise ValueError("opus needs a standard rate")
    buf = io.BytesIO()
    layout = {1: "mono", 2: "stereo", 6: "5.1", 8: "7.1"}[channels]
    with av.open(buf, mode="w", format=container_format) as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        frame_size = stream.codec_context.frame_size or 1024
        pcm = np.clip(samples, -1, 1)
        data = np.repeat(pcm[None, :], channels, axis=0)
        if sample_fmt.startswith("s16"):
            data = (data * 32767).astype(np.int16)
        pts = 0
        for start in range(0, data.shape[1], frame_size):
            chunk = data[:, start : start + frame_size]
            if sample_fmt.endswith("p") or sample_fmt == "fltp":
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format=sample_fmt, layout=layout)
            else:
                frame = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(chunk.T.reshape(1, -1)), format=sample_fmt, layout=layout
                )
            frame.sample_rate = rate
            frame.pts = pts
            frame.time_base = Fraction(1, rate)
            pts += chunk.shape[1]
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def random_bytes(size: int, seed: int = 0) -> bytes:
    """Bytes that are no format, the same on every run (a failure can be reproduced)."""
    return np.random.default_rng(seed).bytes(size)


def png_bytes() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" + b"\xff\x00\x00" * 2 + b"\x00" + b"\x00\xff\x00" * 2)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("inside.wav", encode(tone(1.0)))
    return buf.getvalue()


def speech_sample() -> Path:
    return SAMPLES / "en_support_call.flac"
