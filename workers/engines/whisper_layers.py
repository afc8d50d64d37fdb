"""Whisper's encoder block by block: pooled features of intermediate layers for the emotion head.

CTranslate2 gives only the encoder's last layer. The middle blocks of a speech model carry more
of *how* something is said (pitch, energy, voice quality) and less of *what* is said, and the
SER literature finds them to transfer better across corpora. This encoder runs the same weights
(read from the CTranslate2 ``model.bin`` the head's ``encoder`` folder holds, so no other model
file is needed) in torch, float32, one 3 s window at a time: the log-mel of the window alone
(300 frames), the two convolutions, the first 150 of Whisper's sinusoidal position embeddings
(the window is the first 3 s of Whisper's 30 s context), then only as many blocks as the
deepest layer asked for. Layer 0 is the input of the first block, layer ``i`` the output of
block ``i``; the last layer is taken after Whisper's final layer norm, as CTranslate2 gives it
(:mod:`workers.engines.whisper_encoder`; their features agree to rounding).

``layers`` names the layers whose pooled frames are concatenated (``(3,)``, ``(2, 4)``), or
averaged first with ``layer_mix="mean"`` (a fixed, equal weighting of the layers). ``pooled`` and
``probe`` take the pooling and loudness of
:class:`~workers.engines.whisper_encoder.WhisperEncoder`, so the two encoders are
interchangeable under a head; :func:`feature_encoder` makes the one a head's options ask for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from workers.core.errors import ConfigError
from workers.engines.device import threads_per_worker
from workers.engines.identity import model_id
from workers.engines.ser import check_finite, window_bounds
from workers.engines.whisper_encoder import ENCODER_STRIDE, MEL_HOP, ProbedEncoder, check_pooling, peak_normalised, \
    pool, require_model

LAYER_MIXES = ("concat", "mean")


def check_layers(layers: Sequence[int], depth: int, layer_mix: str = "concat") -> tuple[int, ...]:
    """``layers`` as a sorted tuple, or a ConfigError saying what the encoder has."""
    chosen = tuple(sorted({int(k) for k in layers}))
    if not chosen or chosen[0] < 0 or chosen[-1] > depth:
        raise ConfigError(f"encoder layers {','.join(map(str, layers)) or '(none)'}: this encoder has the layers "
                          f"0 (the input of the first block) to {depth} (its output)")
    if layer_mix not in LAYER_MIXES:
        raise ConfigError(f"unknown layer mix {layer_mix!r} (one of {', '.join(LAYER_MIXES)})")
    return chosen


class WhisperLayerEncoder(ProbedEncoder):
    """The encoder of the CTranslate2 Whisper model in ``model_path``, run in torch (float32, CPU)."""

    def __init__(self, model_path: Path, *, layers: Sequence[int] = (), layer_mix: str = "concat",
                 device: str = "cpu", cpu_threads: int = 0, batch_size: int = 16, workers: int = 1) -> None:
        import torch
        from faster_whisper.feature_extractor import FeatureExtractor
        from whisper.model import AudioEncoder

        from workers.engines.ct2_whisper import openai_state

        require_model(model_path)
        state = openai_state(model_path)
        dims = state["dims"]
        encoder = AudioEncoder(dims["n_mels"], dims["n_audio_ctx"], dims["n_audio_state"], dims["n_audio_head"],
                               dims["n_audio_layer"])
        prefix = "encoder."
        encoder.load_state_dict({k[len(prefix):]: v.float() for k, v in state["model_state_dict"].items()
                                 if k.startswith(prefix)})
        from workers.engines.device import torch_device

        self._torch = torch
        self.device = torch_device(device)
        self._encoder = encoder.eval().to(self.device)
        # files in flight call one model at once (torch inference is thread-safe); each call gets its share
        self.workers, self.threads = max(1, workers), threads_per_worker(cpu_threads, workers)
        self._threads = self.threads
        self.depth = int(dims["n_audio_layer"])
        self.layers = check_layers(layers or (self.depth,), self.depth, layer_mix)
        self.layer_mix = layer_mix
        self.n_mels = int(dims["n_mels"])
        self._mel = FeatureExtractor(feature_size=self.n_mels)
        self._batch_size = max(1, batch_size)
        self.model_path = model_path
        self.model_id = model_id(model_path.resolve())
        self.version = f"torch {torch.__version__}"
        self.compute_type = "float32"
        self._probes: dict[tuple[str, str], np.ndarray] = {}

    def pooled(self, audio: np.ndarray, window: int, hop: int, *, pooling: str = "mean",
               loudness: str = "none") -> tuple[list[tuple[int, int]], np.ndarray]:
        """The windows of ``audio`` (sample bounds) and each one's pooled frames of the encoder's
        ``layers``, concatenated or averaged (``layer_mix``), as :meth:`WhisperEncoder.pooled`."""
        check_pooling(pooling, loudness)
        chosen, layer_mix = self.layers, self.layer_mix
        bounds = window_bounds(len(audio), window, hop)
        found: list[np.ndarray] = []
        for i in range(0, len(bounds), self._batch_size):
            batch = bounds[i: i + self._batch_size]
            per_layer = self.frames([audio[a:b] for a, b in batch], window, loudness, chosen)
            for j, (a, b) in enumerate(batch):
                valid = max(1, -(-(b - a) // (MEL_HOP * ENCODER_STRIDE)))
                vectors = [pool(per_layer[k][j, :valid], pooling) for k in chosen]
                found.append(np.mean(vectors, axis=0) if layer_mix == "mean" else np.concatenate(vectors))
        return bounds, check_finite(np.stack(found), bounds, "encoder features").astype(np.float32)

    def frames(self, chunks: Sequence[np.ndarray], window: int, loudness: str,
               layers: Sequence[int]) -> dict[int, np.ndarray]:
        """Encoder frames (batch x frames x dims) of each layer in ``layers`` for ``chunks``, each
        zero-padded to ``window`` samples."""
        torch = self._torch
        n_frames = window // MEL_HOP
        mels = np.stack([self._log_mel(c, window, n_frames, loudness) for c in chunks])
        wanted = set(layers)
        out: dict[int, np.ndarray] = {}
        previous = torch.get_num_threads()
        torch.set_num_threads(self._threads)
        try:
            with torch.inference_mode():
                e = self._encoder
                x = torch.nn.functional.gelu(e.conv1(torch.from_numpy(mels).to(self.device)))
                x = torch.nn.functional.gelu(e.conv2(x)).permute(0, 2, 1)
                x = x + e.positional_embedding[: x.shape[1]]
                for depth in range(max(wanted) + 1):
                    if depth:
                        x = e.blocks[depth - 1](x)
                    if depth in wanted:
                        y = e.ln_post(x) if depth == self.depth else x
                        out[depth] = y.float().cpu().numpy()
        finally:
            torch.set_num_threads(previous)
        return out

    def _log_mel(self, chunk: np.ndarray, window: int, frames: int, loudness: str) -> np.ndarray:
        padded = np.pad(chunk.astype(np.float32), (0, window - len(chunk)))
        mel = self._mel(padded, padding=0)[:, :frames]
        if loudness == "mel-peak":
            mel = peak_normalised(mel)
        return np.ascontiguousarray(mel, dtype=np.float32)


def feature_encoder(model_path: Path, *, layers: Sequence[int] = (), layer_mix: str = "concat",
                    device: str = "auto", compute_type: str = "auto", cpu_threads: int = 0, batch_size: int = 16,
                    workers: int = 1):
    """The encoder a head with these options was trained on: CTranslate2's (its last layer,
    int8/float16 by ``compute_type``) without ``layers``, else this block-by-block one (float32)."""
    if not layers:
        from workers.engines.whisper_encoder import WhisperEncoder

        return WhisperEncoder(model_path, device=device, compute_type=compute_type, cpu_threads=cpu_threads,
                              batch_size=batch_size, workers=workers)
    return WhisperLayerEncoder(model_path, layers=layers, layer_mix=layer_mix, device=device,
                               cpu_threads=cpu_threads, batch_size=batch_size, workers=workers)
