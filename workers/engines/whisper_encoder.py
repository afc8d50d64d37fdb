"""Whisper's own encoder as a voice feature extractor: one pooled vector per SER window.

Each window goes through the encoder alone (a 3 s window is 300 mel frames and 150 encoder
frames: CTranslate2 accepts inputs shorter than Whisper's 30 s, at a fraction of the cost),
and the encoder frames that cover real audio are averaged. Training (``workers train-ser``)
and inference (the ``whisper-head`` SER engine) both call :meth:`WhisperEncoder.pooled`, so
a head always sees features made exactly the way it was trained on.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from workers.processing.audio import SAMPLE_RATE
from workers.engines.heap import share_one_arena
from workers.engines.identity import model_id
from workers.engines.ser import check_finite, window_bounds
from workers.engines.device import ctranslate2_device
from workers.core.errors import ConfigError

MEL_HOP = 160  # samples per mel frame (10 ms)
ENCODER_STRIDE = 2  # mel frames per encoder frame


def probe_signal() -> np.ndarray:
    """A fixed 3 s voice-like signal (a gliding harmonic tone, syllable-rate loudness): the
    features an encoder makes of it identify the encoder far more surely than its name."""
    t = np.arange(3 * SAMPLE_RATE) / SAMPLE_RATE
    f0 = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    voice = sum(np.sin(k * phase) / k for k in range(1, 12))
    syllables = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    return (0.1 * voice * syllables).astype(np.float32)


class WhisperEncoder:
    """The encoder of a CTranslate2 Whisper model (int8 on CPU, float16 on CUDA by default)."""

    def __init__(self, model_path: Path, *, device: str = "auto", compute_type: str = "auto",
                 cpu_threads: int = 0, batch_size: int = 16) -> None:
        import ctranslate2
        from faster_whisper.feature_extractor import FeatureExtractor

        share_one_arena()  # before CTranslate2 starts its threads (workers.engines.heap)

        if not (model_path / "model.bin").is_file():
            raise ConfigError(f"no CTranslate2 Whisper model at {model_path} (model.bin missing): "
                              "the whisper-head SER engine needs Whisper's encoder; run `python -m workers setup`")
        self.device = ctranslate2_device(device)
        self.compute_type = ("float16" if self.device == "cuda" else "int8") if compute_type == "auto" else compute_type
        threads = cpu_threads or len(os.sched_getaffinity(0))
        self._ct2 = ctranslate2
        self._model = ctranslate2.models.Whisper(str(model_path), device=self.device,
                                                 compute_type=self.compute_type, intra_threads=threads)
        self.n_mels = int(self._model.n_mels)
        self._mel = FeatureExtractor(feature_size=self.n_mels)
        self._batch_size = max(1, batch_size)
        self.model_path = model_path
        self.model_id = model_id(model_path.resolve())
        self.version = ctranslate2.__version__

    @property
    def dims(self) -> int:
        return int(self.probe_features.shape[0])

    @functools.cached_property
    def probe_features(self) -> np.ndarray:
        """The pooled features of ``probe_signal()``: what identifies this encoder to a head."""
        probe = probe_signal()
        return self.pooled(probe, len(probe), len(probe))[1][0]

    def pooled(self, audio: np.ndarray, window: int, hop: int) -> tuple[list[tuple[int, int]], np.ndarray]:
        """The windows of ``audio`` (sample bounds) and each one's mean encoder frame.

        Audio shorter than one window is zero-padded to it (as Whisper pads to 30 s) and only
        the frames that cover real samples are pooled."""
        bounds = window_bounds(len(audio), window, hop)
        frames = window // MEL_HOP
        pooled: list[np.ndarray] = []
        for i in range(0, len(bounds), self._batch_size):
            batch = bounds[i : i + self._batch_size]
            mels = np.stack([self._log_mel(audio[a:b], window, frames) for a, b in batch])
            encoded = np.asarray(self._model.encode(self._ct2.StorageView.from_array(mels), to_cpu=True))
            for (a, b), frames_out in zip(batch, encoded.astype(np.float32)):
                valid = max(1, -(-(b - a) // (MEL_HOP * ENCODER_STRIDE)))
                pooled.append(frames_out[:valid].mean(axis=0))
        return bounds, check_finite(np.stack(pooled), bounds, "encoder features").astype(np.float32)

    def _log_mel(self, chunk: np.ndarray, window: int, frames: int) -> np.ndarray:
        padded = np.pad(chunk.astype(np.float32), (0, window - len(chunk)))
        return np.ascontiguousarray(self._mel(padded, padding=0)[:, :frames], dtype=np.float32)
