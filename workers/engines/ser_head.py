"""A small trained emotion head over pooled Whisper encoder features, and its file format.

The head is a multinomial logistic regression over standardised features:
``softmax(((x - mean) / scale) @ weights + bias)``, evaluated in numpy, so the services need
no training library. It is stored as ``head.npz`` (NumPy's zip of plain arrays, read with
``allow_pickle=False``; never a pickle):

=========  ==========  =========================================================
array      shape       meaning
=========  ==========  =========================================================
meta       ()          JSON text: format, version, name, labels, encoder id,
                       window/hop, pooling, loudness, licence note,
                       temperature, uncertain_below, training data set,
                       speakers, options, metrics, calibration
mean       (d,)        feature means of the training windows
scale      (d,)        feature standard deviations of the training windows
weights    (d, k)      one column per label, in the order of ``meta.labels``
bias       (k,)
probe      (d,)        the training encoder's pooled features of ``probe_signal()``
=========  ==========  =========================================================

``pooling`` (``mean`` or ``mean+std``) and ``loudness`` (``none`` or ``mel-peak``) say how the
encoder's frames become the features (:mod:`workers.engines.whisper_encoder`); heads written
before they existed are ``mean`` / ``none``. ``layers`` (a list of encoder layer numbers: 0 is the
input of the first block, the encoder's depth its output) and ``layer_mix`` (``concat`` or
``mean``) say which encoder layers are pooled (:mod:`workers.engines.whisper_layers`); absent or
empty, the encoder's last layer as CTranslate2 gives it, as for every head before them.
``licence`` is a short note on the terms of the data the head was trained on; the engine reports
it in ``engines.ser`` of every result.

``temperature`` (T) divides the logits before the softmax, fitted on the held-out folds of
``train-ser`` so that a label given probability p is right about p of the time; heads written
before it existed have T = 1. ``uncertain_below`` is the calibrated probability under which a
segment's emotion is marked ``uncertain`` (chosen on the same folds, see
:mod:`workers.training.calibration`); None where the head states none.

``probe`` ties a head to the encoder it was trained on: a head loaded over an encoder whose
features of the fixed probe signal differ (another Whisper size, another checkpoint under the
same folder name) is refused rather than left to produce confident nonsense.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from workers.core.errors import ConfigError

HEAD_FORMAT = "speech-pipeline/ser-head"
HEAD_FORMAT_VERSION = 1
HEAD_FILE = "head.npz"
CARD_FILE = "MODEL_CARD.md"
ENCODER_DIR = "encoder"
# Cosine similarity of probe features that still counts as the same encoder: int8, float32
# and float16 runs of one checkpoint agree to better than 0.99; another checkpoint does not.
SAME_ENCODER_COSINE = 0.97
_ARRAYS = ("mean", "scale", "weights", "bias", "probe")


@dataclass(frozen=True, eq=False)
class SerHead:
    name: str
    labels: tuple[str, ...]
    encoder_id: str
    window_seconds: float
    hop_seconds: float
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: np.ndarray
    probe: np.ndarray
    training: dict[str, Any] = field(default_factory=dict)
    pooling: str = "mean"
    loudness: str = "none"
    licence: str = ""
    temperature: float = 1.0
    uncertain_below: float | None = None
    layers: tuple[int, ...] = ()  # () : the encoder's last layer (CTranslate2)
    layer_mix: str = "concat"

    def __post_init__(self) -> None:
        d, k = self.weights.shape
        if k != len(self.labels) or self.bias.shape != (k,) or not (
                self.mean.shape == self.scale.shape == self.probe.shape == (d,)):
            raise ConfigError(f"emotion head {self.name!r}: array shapes do not agree with each other")
        if not self.temperature > 0:
            raise ConfigError(f"emotion head {self.name!r}: temperature {self.temperature!r} is not positive")

    @property
    def dims(self) -> int:
        return int(self.weights.shape[0])

    @property
    def head_id(self) -> str:
        """The name and a digest of the weights: a retrained head is a new id, a re-saved one is not."""
        digest = hashlib.sha256(json.dumps(self.labels).encode())
        for name in _ARRAYS:
            digest.update(np.ascontiguousarray(getattr(self, name), dtype=np.float32).tobytes())
        if (self.pooling, self.loudness) != ("mean", "none"):  # heads from before these options keep their ids
            digest.update(f"{self.pooling}|{self.loudness}".encode())
        if self.layers:  # nor do heads from before layers
            digest.update(f"layers {','.join(map(str, self.layers))}|{self.layer_mix}".encode())
        if (self.temperature, self.uncertain_below) != (1.0, None):  # calibrated: other probabilities, another id
            digest.update(f"{self.temperature!r}|{self.uncertain_below!r}".encode())
        return f"{self.name}@{digest.hexdigest()[:12]}"

    def logits(self, features: np.ndarray) -> np.ndarray:
        """The head's uncalibrated logits (temperature 1) for each row of ``features``."""
        return ((features.astype(np.float64) - self.mean) / self.scale) @ self.weights + self.bias

    def probabilities(self, features: np.ndarray, *, calibrated: bool = True) -> np.ndarray:
        """Probability of every label for each row of ``features`` (rows sum to 1), the logits divided
        by the head's temperature unless ``calibrated`` is False."""
        return softmax(self.logits(features), self.temperature if calibrated else 1.0)

    def check_encoder(self, encoder_id: str, dims: int, probe_features: np.ndarray) -> None:
        """Refuse an encoder other than the one this head was trained on."""
        if dims != self.dims:
            raise ConfigError(
                f"emotion head {self.head_id} was trained on {self.dims}-dimensional features of "
                f"{self.encoder_id!r}; the encoder {encoder_id!r} gives {dims}: train a head for it "
                "with `python -m workers train-ser`")
        a, b = probe_features.astype(np.float64), self.probe.astype(np.float64)
        cosine = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) or 1.0))
        if cosine < SAME_ENCODER_COSINE:
            raise ConfigError(
                f"emotion head {self.head_id} was trained on the encoder {self.encoder_id!r}, but the encoder "
                f"{encoder_id!r} makes other features (probe similarity {cosine:.3f} < {SAME_ENCODER_COSINE}): "
                "train a head for it with `python -m workers train-ser`")

    def save(self, path: Path) -> None:
        meta = {
            "format": HEAD_FORMAT, "format_version": HEAD_FORMAT_VERSION, "name": self.name,
            "head_id": self.head_id, "labels": list(self.labels), "encoder_id": self.encoder_id,
            "window_seconds": self.window_seconds, "hop_seconds": self.hop_seconds,
            "classifier": f"multinomial logistic regression over standardised {self.pooling}-pooled encoder frames",
            "pooling": self.pooling, "loudness": self.loudness, "licence": self.licence,
            "temperature": self.temperature, "uncertain_below": self.uncertain_below,
            **({"layers": list(self.layers), "layer_mix": self.layer_mix} if self.layers else {}),
            "training": self.training,
        }
        arrays = {name: np.asarray(getattr(self, name), dtype=np.float32) for name in _ARRAYS}
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as out:
            np.savez_compressed(out, meta=np.array(json.dumps(meta, sort_keys=True)), **arrays)

    @classmethod
    def load(cls, path: Path) -> "SerHead":
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                arrays = {name: data[name].astype(np.float64) for name in _ARRAYS}
        except FileNotFoundError as e:
            raise ConfigError(f"no emotion head at {path}: run `python -m workers setup` or "
                              "`python -m workers train-ser`") from e
        except (OSError, ValueError, KeyError) as e:
            raise ConfigError(f"{path} is not an emotion head file ({e})") from e
        if meta.get("format") != HEAD_FORMAT or meta.get("format_version") != HEAD_FORMAT_VERSION:
            raise ConfigError(f"{path} is a {meta.get('format')!r} version {meta.get('format_version')!r} file, "
                              f"not a {HEAD_FORMAT!r} version {HEAD_FORMAT_VERSION} emotion head")
        return cls(name=meta["name"], labels=tuple(meta["labels"]), encoder_id=meta["encoder_id"],
                   window_seconds=float(meta["window_seconds"]), hop_seconds=float(meta["hop_seconds"]),
                   training=meta.get("training", {}), pooling=meta.get("pooling", "mean"),
                   loudness=meta.get("loudness", "none"), licence=meta.get("licence", ""),
                   temperature=float(meta.get("temperature", 1.0)), uncertain_below=_optional_float(
                       meta.get("uncertain_below")),
                   layers=tuple(int(k) for k in meta.get("layers") or ()), layer_mix=meta.get("layer_mix", "concat"),
                   **arrays)


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature``."""
    scaled = logits / temperature
    scaled = scaled - scaled.max(axis=-1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=-1, keepdims=True)
