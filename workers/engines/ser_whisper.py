"""The ``whisper-head`` SER engine: Whisper's encoder over the SER windows, then a trained head.

A model folder holds ``head.npz`` (see :mod:`workers.engines.ser_head`), its ``MODEL_CARD.md``
and ``encoder``: the CTranslate2 Whisper model the head was trained on (``workers setup`` links
the multilingual base model there). The head gives the calibrated probability of every label it
knows (its logits divided by its temperature) and the threshold under which an emotion is uncertain.
A head over the last encoder layer runs CTranslate2's encoder; a head over other layers
(``layers`` in its meta) runs the same weights block by block in torch
(:mod:`workers.engines.whisper_layers`), only as deep as its deepest layer.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from workers.core.engines import SAMPLE_RATE
from workers.core.settings import SerSettings
from workers.core.contracts import EmotionWindow, Engine
from workers.core.engines import EmotionTrack
from workers.engines.ser_head import ENCODER_DIR, HEAD_FILE, SerHead
from workers.engines.whisper_encoder import WhisperEncoder
from workers.engines.whisper_layers import WhisperLayerEncoder, feature_encoder

log = logging.getLogger(__name__)

ENGINE_NAME = "whisper-head"


def check_head_fits(head: SerHead, encoder: WhisperEncoder | WhisperLayerEncoder) -> None:
    probe = encoder.probe(head.pooling, head.loudness)
    head.check_encoder(encoder.model_id, int(probe.shape[0]), probe)


class WhisperHeadEmotionEngine:
    @classmethod
    def from_settings(cls, ser: SerSettings, model_path: Path,
                      workers: int = 1) -> "WhisperHeadEmotionEngine":
        return cls(model_path, workers=workers, device=ser.device, compute_type=ser.compute_type,
                   window_seconds=ser.window_seconds,
                   hop_seconds=ser.hop_seconds, batch_size=ser.batch_size, cpu_threads=ser.cpu_threads)

    def __init__(
        self,
        model_path: Path,
        *,
        device: str = "auto",
        compute_type: str = "auto",
        window_seconds: float = 3.0,
        hop_seconds: float = 1.5,
        batch_size: int = 16,
        cpu_threads: int = 0,
        workers: int = 1,
    ) -> None:
        self.head = SerHead.load(model_path / HEAD_FILE)
        self.encoder = feature_encoder(model_path / ENCODER_DIR, layers=self.head.layers,
                                       layer_mix=self.head.layer_mix, device=device, compute_type=compute_type,
                                       cpu_threads=cpu_threads, batch_size=batch_size, workers=workers)
        check_head_fits(self.head, self.encoder)
        self.device = self.encoder.device
        if (window_seconds, hop_seconds) != (self.head.window_seconds, self.head.hop_seconds):
            log.warning("SER windows of %.2f s every %.2f s differ from the %.2f s / %.2f s the head %s was "
                        "trained on", window_seconds, hop_seconds, self.head.window_seconds,
                        self.head.hop_seconds, self.head.head_id)
        self.labels = list(self.head.labels)
        self.window_seconds, self.hop_seconds = window_seconds, hop_seconds
        self._window = int(round(window_seconds * SAMPLE_RATE))
        self._hop = int(round(hop_seconds * SAMPLE_RATE))
        self.engine = Engine(ENGINE_NAME, f"{self.encoder.model_id}+{self.head.head_id}", self.encoder.version, True,
                             self.head.licence or None)

    def classify(self, audio: np.ndarray) -> EmotionTrack:
        bounds, features = self.encoder.pooled(audio, self._window, self._hop, pooling=self.head.pooling,
                                               loudness=self.head.loudness)
        scores = self.head.probabilities(features)
        windows = [EmotionWindow(a / SAMPLE_RATE, b / SAMPLE_RATE, [float(x) for x in row])
                   for (a, b), row in zip(bounds, scores)]
        return EmotionTrack(self.window_seconds, self.hop_seconds, self.labels, windows, len(audio) / SAMPLE_RATE,
                            self.head.uncertain_below)
