"""The project's first diarizer, kept as a baseline for ``python -m bench diarization`` only.

It scored 31.9 % DER (±0.25 s collar) on the AMI test half against 36.9 % for VAD with one
speaker: Resemblyzer's voice embeddings barely tell real speakers apart, Silero VAD misses
far-field speech, and one speaker at a time cannot score overlap.

1. Speech regions from Silero VAD (``workers.engines.vad``).
2. A voice embedding every 0.8 s over 1.6 s of speech, from Resemblyzer's GE2E speaker
   encoder (its trained weights ship in the PyPI wheel; Apache-2.0). The network (a 3-layer
   LSTM over 40 mel bands and a projection) is rebuilt here around those weights, and its mel
   spectrogram made in numpy exactly as Resemblyzer makes it with librosa (equal to 1e-7), so
   neither librosa nor webrtcvad is needed, and no first call spends 20 s compiling numba code.
3. Agglomerative clustering of the embeddings (average linkage, cosine distance) cut at a
   distance threshold, so the number of speakers is found, not given; MIN_SPEAKERS /
   MAX_SPEAKERS bound it. One voice gives one speaker, no speech gives none.
4. Each stretch of speech takes the speaker of the nearest embedding; turns shorter than
   ``min_turn_seconds`` join their neighbour. Speakers are named S1, S2, … in order of
   first appearance.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np

from workers.processing.audio import SAMPLE_RATE
from workers.engines import vad
from workers.engines.diarization import cluster_sampled, within_bounds
from workers.engines.vad import Span
from workers.core.engines import Turn
from workers.core.errors import ConfigError

log = logging.getLogger(__name__)

PARTIAL_FRAMES = 160  # 1.6 s of 10 ms mel frames: what the speaker encoder was trained on
PARTIAL_HOP_FRAMES = 80
BATCH = 64
MAX_CLUSTERED = 3000
MEL_BANDS = 40
N_FFT = 400  # 25 ms
MEL_HOP = SAMPLE_RATE // 100


def resemblyzer_weights() -> Path:
    """``pretrained.pt`` inside the installed resemblyzer package (found, not imported)."""
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the speaker model package 'resemblyzer' is not installed: run `make setup` "
                          "(pip install --no-deps -r requirements-nodeps.txt), or set DIARIZATION=off")
    return Path(next(iter(spec.submodule_search_locations))) / "pretrained.pt"


def _speaker_encoder(device: str):
    import torch
    from torch import nn

    class SpeakerEncoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(MEL_BANDS, 256, 3, batch_first=True)
            self.linear = nn.Linear(256, 256)

        def forward(self, mels: torch.Tensor) -> torch.Tensor:
            _, (hidden, _) = self.lstm(mels)
            raw = torch.relu(self.linear(hidden[-1]))
            return raw / torch.norm(raw, dim=1, keepdim=True).clamp_min(1e-12)

    encoder = SpeakerEncoder()
    state = torch.load(resemblyzer_weights(), map_location="cpu", weights_only=True)["model_state"]
    encoder.load_state_dict({k: v for k, v in state.items() if k.split(".")[0] in ("lstm", "linear")})
    return encoder.to(device).eval()


def mel_spectrogram(audio: np.ndarray) -> np.ndarray:
    """(frames, 40) power mel spectrogram: 25 ms Hann windows every 10 ms, centred, Slaney mel
    bands: what Resemblyzer's ``wav_to_mel_spectrogram`` gives."""
    from faster_whisper.feature_extractor import FeatureExtractor

    padded = np.pad(audio.astype(np.float32), N_FFT // 2)
    frames = 1 + (len(padded) - N_FFT) // MEL_HOP
    if frames <= 0:
        return np.zeros((0, MEL_BANDS), np.float32)
    index = np.arange(N_FFT)[None, :] + MEL_HOP * np.arange(frames)[:, None]
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)
    power = np.abs(np.fft.rfft(padded[index] * window, axis=1)) ** 2
    return (power @ FeatureExtractor.get_mel_filters(SAMPLE_RATE, N_FFT, n_mels=MEL_BANDS).T).astype(np.float32)


class ResemblyzerDiarizer:
    def __init__(self, *, device: str = "auto", threshold: float = 0.35, min_speakers: int = 0,
                 max_speakers: int = 0, min_turn_seconds: float = 0.6) -> None:
        import torch

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self._torch = torch
        self.device = device
        self._encoder = _speaker_encoder(device)
        self.threshold = threshold
        self.min_speakers, self.max_speakers = min_speakers, max_speakers
        self.min_turn_seconds = min_turn_seconds

    def turns(self, audio: np.ndarray) -> list[Turn]:
        regions = speech_regions(audio)
        if not regions:
            return []
        centres, embeddings = self._embeddings(audio, regions)
        labels = self._cluster(embeddings)
        return _named(_merged(_assigned(regions, centres, labels), self.min_turn_seconds))

    def _embeddings(self, audio: np.ndarray, regions: list[Span]) -> tuple[np.ndarray, np.ndarray]:
        mels, centres = [], []
        for start, end in regions:
            chunk = audio[int(start * SAMPLE_RATE):int(end * SAMPLE_RATE)]
            mel = mel_spectrogram(chunk)
            if len(mel) < PARTIAL_FRAMES:  # short speech: one partial, padded by repetition
                mel = np.resize(mel, (PARTIAL_FRAMES, mel.shape[1])) if len(mel) else mel
                offsets = [0] if len(mel) else []
            else:
                offsets = list(range(0, len(mel) - PARTIAL_FRAMES + 1, PARTIAL_HOP_FRAMES))
                if offsets[-1] + PARTIAL_FRAMES < len(mel):
                    offsets.append(len(mel) - PARTIAL_FRAMES)
            for o in offsets:
                mels.append(mel[o:o + PARTIAL_FRAMES])
                span = min(PARTIAL_FRAMES, (end - start) * 100)
                centres.append(start + (o + span / 2) / 100)
        torch, threads = self._torch, self._torch.get_num_threads()
        # The LSTM steps through 160 frames of small matrices: a second thread gains little, and
        # beside the Whisper engines (which use every core) OpenMP's spinning made it 4x slower.
        torch.set_num_threads(1)
        try:
            with torch.inference_mode():
                embeddings = np.concatenate([
                    self._encoder(torch.from_numpy(np.stack(mels[i:i + BATCH])).to(self.device)).cpu().numpy()
                    for i in range(0, len(mels), BATCH)])
        finally:
            torch.set_num_threads(threads)
        return np.asarray(centres), embeddings

    def _cluster(self, embeddings: np.ndarray) -> np.ndarray:
        """Cluster labels; past ``MAX_CLUSTERED`` (about 40 minutes of speech) an even sample is clustered."""
        return cluster_sampled(embeddings, self._linkage_labels, MAX_CLUSTERED)

    def _linkage_labels(self, embeddings: np.ndarray) -> np.ndarray:
        from scipy.cluster.hierarchy import fcluster, linkage

        if len(embeddings) < 2:
            return np.zeros(len(embeddings), dtype=int)
        tree = linkage(embeddings, method="average", metric="cosine")
        labels = fcluster(tree, t=self.threshold, criterion="distance")
        return within_bounds(tree, labels, len(embeddings), self.min_speakers, self.max_speakers)


def speech_regions(audio: np.ndarray) -> list[Span]:
    """Speech as turns are cut from it: a 0.3 s pause ends a region, padded by 0.1 s."""
    return vad.speech_regions(audio, min_silence_ms=300, pad_ms=100)


def _assigned(regions: list[Span], centres: np.ndarray, labels: np.ndarray) -> list[Turn]:
    """Every stretch of speech gets the label of the nearest embedding (cut halfway between)."""
    turns = []
    for start, end in regions:
        inside = np.flatnonzero((centres >= start) & (centres <= end))
        if len(inside) == 0:
            inside = np.array([int(np.argmin(np.abs(centres - (start + end) / 2)))])
        cuts = [start] + [(centres[a] + centres[b]) / 2 for a, b in zip(inside[:-1], inside[1:])] + [end]
        turns += [Turn(float(cuts[k]), float(cuts[k + 1]), str(labels[i])) for k, i in enumerate(inside)]
    return turns


def _merged(turns: list[Turn], min_seconds: float) -> list[Turn]:
    """Adjacent turns of one speaker joined; a turn shorter than ``min_seconds`` between two
    turns of one other speaker takes theirs (a blip, not a speaker change)."""
    for _ in range(2):
        joined: list[Turn] = []
        for t in turns:
            if joined and joined[-1].speaker == t.speaker and t.start - joined[-1].end < 1.0:
                joined[-1] = Turn(joined[-1].start, t.end, t.speaker)
            else:
                joined.append(t)
        turns = [
            Turn(t.start, t.end, joined[k - 1].speaker)
            if 0 < k < len(joined) - 1 and t.end - t.start < min_seconds
            and joined[k - 1].speaker == joined[k + 1].speaker else t
            for k, t in enumerate(joined)
        ]
    return turns


def _named(turns: list[Turn]) -> list[Turn]:
    names: dict[str, str] = {}
    for t in turns:
        names.setdefault(t.speaker, f"S{len(names) + 1}")
    return [Turn(round(t.start, 3), round(t.end, 3), names[t.speaker]) for t in turns]
