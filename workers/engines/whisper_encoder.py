"""Whisper's own encoder as a voice feature extractor: one pooled vector per SER window.

Each window goes through the encoder alone (a 3 s window is 300 mel frames and 150 encoder
frames: CTranslate2 accepts inputs shorter than Whisper's 30 s, at a fraction of the cost),
and the encoder frames that cover real audio are pooled: their mean (``pooling="mean"``), or
their mean and standard deviation side by side (``"mean+std"``: twice the dimensions; the
spread of the frames over a window carries how much the voice moves). ``loudness="mel-peak"``
shifts each window's log-mel so that its loudest bin sits at a fixed level before the encoder:
a gain on the recording (a quiet microphone, a hot one) is a constant shift of Whisper's
log-mel, so this removes it, window by window, with no state across windows (a lone short clip
and an hour-long call are treated alike). Training (``workers train-ser``) and inference (the
``whisper-head`` SER engine) both call :meth:`WhisperEncoder.pooled` with the head's own
pooling and loudness, so a head always sees features made the way it was trained on. A head over
intermediate layers (``layers`` in its meta) gets them from
:class:`~workers.engines.whisper_layers.WhisperLayerEncoder` instead, which runs these weights
block by block.

Training computes in float32 on the CPU (``workers train-ser --compute-type``), whose results
agree from one CPU to the next; the engine runs int8 on CPU and float16 on CUDA for speed. The
model card states what that difference does to the head's figures.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from workers.processing.audio import SAMPLE_RATE
from workers.engines.heap import share_one_arena
from workers.engines.identity import model_id
from workers.engines.ser import check_finite, window_bounds
from workers.engines.device import ctranslate2_device, threads_per_worker
from workers.core.errors import ConfigError

MEL_HOP = 160  # samples per mel frame (10 ms)
ENCODER_STRIDE = 2  # mel frames per encoder frame
POOLINGS = ("mean", "mean+std")
LOUDNESS = ("none", "mel-peak")
# Whisper's log-mel is log10(power) floored at its maximum - 8, then (x + 4) / 4; "mel-peak" puts
# each window's maximum here (before that scaling): the median peak of EmoDB and LJ Speech windows.
MEL_PEAK_LEVEL = 1.5


def probe_signal() -> np.ndarray:
    """A fixed 3 s voice-like signal (a gliding harmonic tone, syllable-rate loudness): the
    features an encoder makes of it identify the encoder far more surely than its name."""
    t = np.arange(3 * SAMPLE_RATE) / SAMPLE_RATE
    f0 = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    voice = sum(np.sin(k * phase) / k for k in range(1, 12))
    syllables = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    return (0.1 * voice * syllables).astype(np.float32)


def check_pooling(pooling: str, loudness: str) -> None:
    """A ConfigError unless ``pooling`` and ``loudness`` are ones the encoders know."""
    if pooling not in POOLINGS or loudness not in LOUDNESS:
        raise ConfigError(f"unknown pooling {pooling!r} or loudness {loudness!r} (pooling: "
                          f"{', '.join(POOLINGS)}; loudness: {', '.join(LOUDNESS)})")


def require_model(model_path: Path) -> None:
    """A ConfigError unless ``model_path`` holds a CTranslate2 Whisper model."""
    if not (model_path / "model.bin").is_file():
        raise ConfigError(f"no CTranslate2 Whisper model at {model_path} (model.bin missing): "
                          "the whisper-head SER engine needs Whisper's encoder; run `python -m workers setup`")


class ProbedEncoder:
    """What every SER feature encoder shares: its features of ``probe_signal()`` identify it to a
    head. A subclass sets ``self._probes = {}`` and defines ``pooled``."""

    _probes: dict[tuple[str, str], np.ndarray]

    def pooled(self, audio: np.ndarray, window: int, hop: int, *, pooling: str = "mean",
               loudness: str = "none") -> tuple[list[tuple[int, int]], np.ndarray]:
        raise NotImplementedError

    @property
    def dims(self) -> int:
        return int(self.probe_features.shape[0])

    @functools.cached_property
    def probe_features(self) -> np.ndarray:
        """The mean-pooled features of ``probe_signal()``: what identifies this encoder to a head."""
        return self.probe()

    def probe(self, pooling: str = "mean", loudness: str = "none") -> np.ndarray:
        """The features of ``probe_signal()`` as a head with this pooling and loudness sees them."""
        key = (pooling, loudness)
        if key not in self._probes:
            probe = probe_signal()
            self._probes[key] = self.pooled(probe, len(probe), len(probe), pooling=pooling, loudness=loudness)[1][0]
        return self._probes[key]


class WhisperEncoder(ProbedEncoder):
    """The encoder of a CTranslate2 Whisper model (int8 on CPU, float16 on CUDA by default)."""

    def __init__(self, model_path: Path, *, device: str = "auto", compute_type: str = "auto",
                 cpu_threads: int = 0, batch_size: int = 16, workers: int = 1) -> None:
        import ctranslate2
        from faster_whisper.feature_extractor import FeatureExtractor

        share_one_arena()  # before CTranslate2 starts its threads (workers.engines.heap)

        require_model(model_path)
        self.device = ctranslate2_device(device)
        self.compute_type = ("float16" if self.device == "cuda" else "int8") if compute_type == "auto" else compute_type
        self.workers, self.threads = max(1, workers), threads_per_worker(cpu_threads, workers)
        self._ct2 = ctranslate2
        self._model = ctranslate2.models.Whisper(str(model_path), device=self.device, compute_type=self.compute_type,
                                                 intra_threads=self.threads, inter_threads=self.workers)
        self.n_mels = int(self._model.n_mels)
        self._mel = FeatureExtractor(feature_size=self.n_mels)
        self._batch_size = max(1, batch_size)
        self.model_path = model_path
        self.model_id = model_id(model_path.resolve())
        self.version = ctranslate2.__version__
        self._probes: dict[tuple[str, str], np.ndarray] = {}

    def pooled(self, audio: np.ndarray, window: int, hop: int, *, pooling: str = "mean",
               loudness: str = "none") -> tuple[list[tuple[int, int]], np.ndarray]:
        """The windows of ``audio`` (sample bounds) and each one's pooled encoder frames.

        Audio shorter than one window is zero-padded to it (as Whisper pads to 30 s) and only
        the frames that cover real samples are pooled."""
        check_pooling(pooling, loudness)
        bounds = window_bounds(len(audio), window, hop)
        frames = window // MEL_HOP
        pooled: list[np.ndarray] = []
        for i in range(0, len(bounds), self._batch_size):
            batch = bounds[i : i + self._batch_size]
            mels = np.stack([self._log_mel(audio[a:b], window, frames, loudness) for a, b in batch])
            encoded = np.asarray(self._model.encode(self._ct2.StorageView.from_array(mels), to_cpu=True))
            for (a, b), frames_out in zip(batch, encoded.astype(np.float32)):
                valid = max(1, -(-(b - a) // (MEL_HOP * ENCODER_STRIDE)))
                pooled.append(pool(frames_out[:valid], pooling))
        return bounds, check_finite(np.stack(pooled), bounds, "encoder features").astype(np.float32)

    def _log_mel(self, chunk: np.ndarray, window: int, frames: int, loudness: str = "none") -> np.ndarray:
        padded = np.pad(chunk.astype(np.float32), (0, window - len(chunk)))
        mel = self._mel(padded, padding=0)[:, :frames]
        if loudness == "mel-peak":
            mel = peak_normalised(mel)
        return np.ascontiguousarray(mel, dtype=np.float32)


def pool(frames: np.ndarray, pooling: str) -> np.ndarray:
    """One vector from a window's encoder frames (frames x dims)."""
    mean = frames.astype(np.float64).mean(axis=0)
    if pooling == "mean":
        return mean
    return np.concatenate([mean, frames.astype(np.float64).std(axis=0)])


def peak_normalised(mel: np.ndarray) -> np.ndarray:
    """Whisper's scaled log-mel ``(max(log10 p, max - 8) + 4) / 4`` of the same window with its
    loudest bin at ``MEL_PEAK_LEVEL``: a gain g adds 2 log10 g to every log10 p, so shifting by
    the peak undoes it (the floor at max - 8 moves with the peak)."""
    raw = mel.astype(np.float64) * 4.0 - 4.0  # back to max(log10 p, max - 8)
    return ((raw - raw.max() + MEL_PEAK_LEVEL) + 4.0) / 4.0
