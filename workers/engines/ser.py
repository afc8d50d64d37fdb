"""Speech emotion recognition: a transformers audio-classification model over sliding windows.

Windows default to 3 s with a 1.5 s hop. Emotion corpora (IEMOCAP, RAVDESS, CREMA-D) are
made of 2–5 s utterances, so 3 s is what such models were trained to judge; a 50 % overlap
puts every instant in two windows, which smooths single-window noise and gives segments
as short as 1 s an emotion of their own, for twice the audio's duration in compute. The
windows go through the model in batches, and the score of *every* label is kept (softmax
over all logits, not the pipeline's renormalised top 5).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from workers.core.settings import SerSettings
from workers.core.contracts import EmotionWindow, Engine
from workers.core.engines import SAMPLE_RATE, EmotionTrack
from workers.engines.device import torch_device
from workers.engines.identity import model_id
from workers.core.errors import ConfigError, PermanentError

log = logging.getLogger(__name__)

MIN_WINDOW_SAMPLES = 4_000  # 0.25 s: shorter audio is zero-padded so convolutional front ends fit


def window_bounds(n_samples: int, window: int, hop: int) -> list[tuple[int, int]]:
    """Sample ranges of the windows: regular hops, plus one ending exactly at the end."""
    if n_samples <= window:
        return [(0, n_samples)]
    bounds = [(s, s + window) for s in range(0, n_samples - window + 1, hop)]
    if bounds[-1][1] < n_samples:
        bounds.append((n_samples - window, n_samples))
    return bounds


def check_finite(values: np.ndarray, bounds: list[tuple[int, int]], what: str) -> np.ndarray:
    """``values`` (one row per window of ``bounds``), or a PermanentError naming the first window
    whose row is not finite. Zeros in its place would read as a confident label 0."""
    bad = ~np.isfinite(values).reshape(len(values), -1).all(axis=1)
    if bad.any():
        a, b = bounds[int(np.argmax(bad))]
        raise PermanentError(
            f"the {what} of {int(bad.sum())} window(s), the first at {a / SAMPLE_RATE:.2f}-{b / SAMPLE_RATE:.2f} s, "
            "are not finite numbers (NaN or infinite; float16 on a GPU can overflow: SER_DEVICE=cpu avoids it)",
            code="non_finite_scores")
    return values


class TransformersEmotionEngine:
    @classmethod
    def from_settings(cls, ser: SerSettings, model_path: Path) -> "TransformersEmotionEngine":
        return cls(model_path, device=ser.device, window_seconds=ser.window_seconds, hop_seconds=ser.hop_seconds,
                   batch_size=ser.batch_size)

    def __init__(
        self,
        model_path: Path,
        *,
        device: str = "auto",
        window_seconds: float = 3.0,
        hop_seconds: float = 1.5,
        batch_size: int = 16,
    ) -> None:
        import torch
        import transformers
        from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

        if not (model_path / "config.json").is_file():
            raise ConfigError(
                f"no transformers audio-classification model at {model_path}; "
                "run `python -m workers setup` or set SER_MODEL"
            )
        # transformers prints through a handler of its own; its records go through ours instead
        # (JSON on Cloud Run).
        transformers.utils.logging.disable_default_handler()
        transformers.utils.logging.enable_propagation()
        self._torch = torch
        self.device = torch_device(device)
        self._extractor = AutoFeatureExtractor.from_pretrained(model_path, local_files_only=True)
        self._model = AutoModelForAudioClassification.from_pretrained(model_path, local_files_only=True)
        self._model.to(self.device).eval()
        config = self._model.config
        self.labels = [str(config.id2label[i]) for i in range(config.num_labels)]
        self._multi_label = config.problem_type == "multi_label_classification"
        self._window = int(round(window_seconds * SAMPLE_RATE))
        self._hop = int(round(hop_seconds * SAMPLE_RATE))
        self._batch_size = max(1, batch_size)
        self.window_seconds, self.hop_seconds = window_seconds, hop_seconds
        trained = not bool(getattr(config, "untrained", False))
        self.engine = Engine("transformers", model_id(model_path), transformers.__version__, trained)
        if not trained:
            log.warning("SER model %s is UNTRAINED (random weights): its emotions are meaningless", model_path)

    def classify(self, audio: np.ndarray) -> EmotionTrack:
        bounds = window_bounds(len(audio), self._window, self._hop)
        windows: list[EmotionWindow] = []
        for i in range(0, len(bounds), self._batch_size):
            batch = bounds[i : i + self._batch_size]
            scores = check_finite(self._scores([audio[a:b] for a, b in batch]), batch, "emotion scores")
            windows.extend(
                EmotionWindow(a / SAMPLE_RATE, b / SAMPLE_RATE, [float(x) for x in row])
                for (a, b), row in zip(batch, scores)
            )
        return EmotionTrack(self.window_seconds, self.hop_seconds, self.labels, windows, len(audio) / SAMPLE_RATE)

    def _scores(self, chunks: list[np.ndarray]) -> np.ndarray:
        torch = self._torch
        chunks = [
            np.pad(c, (0, MIN_WINDOW_SAMPLES - len(c))) if len(c) < MIN_WINDOW_SAMPLES else c for c in chunks
        ]
        inputs = self._extractor(
            chunks, sampling_rate=SAMPLE_RATE, return_tensors="pt", padding=True
        ).to(self.device)
        with torch.inference_mode():
            logits = self._model(**inputs).logits.float()
        probs = torch.sigmoid(logits) if self._multi_label else torch.softmax(logits, dim=-1)
        return probs.cpu().numpy().astype(np.float64)
