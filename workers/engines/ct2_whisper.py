"""An openai-whisper checkpoint made from a CTranslate2 Whisper model, offline, at set-up.

The two STT engines then run the same weights, so their accuracy and speed compare fairly.
CTranslate2's ``model.bin`` is a list of named tensors (its ``ModelSpec._serialize``): a
version, the spec name, a revision, then per variable its name, rank, shape, type id, byte
count and bytes, and finally aliases. Attention projections are stored fused (query, key
and value in one matrix); openai-whisper keeps them apart, and its key projection has no
bias (the fused bias holds zeros there).
"""

from __future__ import annotations

import json
import os
import re
import struct
import tempfile
from pathlib import Path

import numpy as np

from workers.core.errors import ConfigError

_TYPES = (np.float32, np.int8, np.int16, np.int32, np.float16)  # CTranslate2's DataType enum order
_SUPPORTED_VERSIONS = (5, 6)


def read_variables(model_bin: Path) -> dict[str, np.ndarray]:
    """Every named tensor of a CTranslate2 ``model.bin`` (aliases resolved), as numpy arrays."""
    data = model_bin.read_bytes()
    offset = 0

    def take(fmt: str) -> int:
        nonlocal offset
        (value,) = struct.unpack_from(fmt, data, offset)
        offset += struct.calcsize(fmt)
        return value

    def text() -> str:
        nonlocal offset
        length = take("H")  # counts the trailing NUL
        value = data[offset : offset + length - 1].decode("utf-8")
        offset += length
        return value

    version = take("I")
    if version not in _SUPPORTED_VERSIONS:
        raise ConfigError(f"{model_bin}: CTranslate2 binary version {version} is not one this reader knows "
                          f"({_SUPPORTED_VERSIONS})")
    spec, _revision = text(), take("I")
    if spec != "WhisperSpec":
        raise ConfigError(f"{model_bin} holds a {spec}, not a Whisper model")
    variables: dict[str, np.ndarray] = {}
    for _ in range(take("I")):
        name = text()
        shape = [take("I") for _ in range(take("B"))]
        dtype, size = np.dtype(_TYPES[take("B")]), take("I")
        variables[name] = np.frombuffer(data, dtype, size // dtype.itemsize, offset).reshape(shape)
        offset += size
    for _ in range(take("I")):
        alias, target = text(), text()
        variables[alias] = variables[target]
    return variables


def _attention(v: dict[str, np.ndarray], ct2: str, ours: str, cross: bool) -> dict[str, np.ndarray]:
    if cross:
        query_w, query_b = v[f"{ct2}/linear_0/weight"], v[f"{ct2}/linear_0/bias"]
        key_w, value_w = np.split(v[f"{ct2}/linear_1/weight"], 2)
        _, value_b = np.split(v[f"{ct2}/linear_1/bias"], 2)
        out = "linear_2"
    else:
        query_w, key_w, value_w = np.split(v[f"{ct2}/linear_0/weight"], 3)
        query_b, _, value_b = np.split(v[f"{ct2}/linear_0/bias"], 3)
        out = "linear_1"
    return {
        f"{ours}.query.weight": query_w, f"{ours}.query.bias": query_b,
        f"{ours}.key.weight": key_w,
        f"{ours}.value.weight": value_w, f"{ours}.value.bias": value_b,
        f"{ours}.out.weight": v[f"{ct2}/{out}/weight"], f"{ours}.out.bias": v[f"{ct2}/{out}/bias"],
    }


def _norm(v: dict[str, np.ndarray], ct2: str, ours: str) -> dict[str, np.ndarray]:
    return {f"{ours}.weight": v[f"{ct2}/gamma"], f"{ours}.bias": v[f"{ct2}/beta"]}


def _mlp(v: dict[str, np.ndarray], ct2: str, ours: str) -> dict[str, np.ndarray]:
    return {
        f"{ours}.mlp.0.weight": v[f"{ct2}/linear_0/weight"], f"{ours}.mlp.0.bias": v[f"{ct2}/linear_0/bias"],
        f"{ours}.mlp.2.weight": v[f"{ct2}/linear_1/weight"], f"{ours}.mlp.2.bias": v[f"{ct2}/linear_1/bias"],
        **_norm(v, f"{ct2}/layer_norm", f"{ours}.mlp_ln"),
    }


def _layers(v: dict[str, np.ndarray], side: str) -> int:
    return 1 + max(int(m.group(1)) for k in v if (m := re.match(rf"{side}/layer_(\d+)/", k)))


def openai_state(ct2_dir: Path) -> dict:
    """The checkpoint ``whisper.load_model`` reads (``dims``, ``model_state_dict``), plus the
    model's ``alignment_heads`` as [layer, head] pairs, which word timestamps need."""
    import torch

    v = read_variables(ct2_dir / "model.bin")
    config = json.loads((ct2_dir / "config.json").read_text())
    n_audio_layer, n_text_layer = _layers(v, "encoder"), _layers(v, "decoder")
    vocab, state = v["decoder/embeddings/weight"].shape
    dims = dict(
        n_mels=int(v["encoder/conv1/weight"].shape[1]),
        n_audio_ctx=int(v["encoder/position_encodings/encodings"].shape[0]),
        n_audio_state=int(state), n_audio_head=int(v["encoder/num_heads"]), n_audio_layer=n_audio_layer,
        n_vocab=int(vocab), n_text_ctx=int(v["decoder/position_encodings/encodings"].shape[0]), n_text_state=int(state),
        n_text_head=int(v["decoder/num_heads"]), n_text_layer=n_text_layer,
    )
    weights: dict[str, np.ndarray] = {
        "encoder.conv1.weight": v["encoder/conv1/weight"], "encoder.conv1.bias": v["encoder/conv1/bias"],
        "encoder.conv2.weight": v["encoder/conv2/weight"], "encoder.conv2.bias": v["encoder/conv2/bias"],
        "encoder.positional_embedding": v["encoder/position_encodings/encodings"],
        **_norm(v, "encoder/layer_norm", "encoder.ln_post"),
        "decoder.token_embedding.weight": v["decoder/embeddings/weight"],
        "decoder.positional_embedding": v["decoder/position_encodings/encodings"],
        **_norm(v, "decoder/layer_norm", "decoder.ln"),
    }
    for i in range(n_audio_layer):
        ct2, ours = f"encoder/layer_{i}", f"encoder.blocks.{i}"
        weights |= _attention(v, f"{ct2}/self_attention", f"{ours}.attn", cross=False)
        weights |= _norm(v, f"{ct2}/self_attention/layer_norm", f"{ours}.attn_ln")
        weights |= _mlp(v, f"{ct2}/ffn", ours)
    for i in range(n_text_layer):
        ct2, ours = f"decoder/layer_{i}", f"decoder.blocks.{i}"
        weights |= _attention(v, f"{ct2}/self_attention", f"{ours}.attn", cross=False)
        weights |= _norm(v, f"{ct2}/self_attention/layer_norm", f"{ours}.attn_ln")
        weights |= _attention(v, f"{ct2}/attention", f"{ours}.cross_attn", cross=True)
        weights |= _norm(v, f"{ct2}/attention/layer_norm", f"{ours}.cross_attn_ln")
        weights |= _mlp(v, f"{ct2}/ffn", ours)
    return {
        "dims": dims,
        "model_state_dict": {k: torch.from_numpy(np.array(a)) for k, a in weights.items()},
        "alignment_heads": [[int(layer), int(head)] for layer, head in config.get("alignment_heads", [])],
    }


def convert(ct2_dir: Path, dest: Path) -> Path:
    """Write ``dest`` (a ``.pt`` file) from the CTranslate2 model in ``ct2_dir``; a reader never
    sees half a file (written beside it, then renamed)."""
    import torch

    fd, scratch = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    os.close(fd)
    try:
        torch.save(openai_state(ct2_dir), scratch)
        os.chmod(scratch, 0o644)  # mkstemp's 0600 would hide the model from a service user
        os.replace(scratch, dest)
    finally:
        if os.path.exists(scratch):
            os.unlink(scratch)
    return dest
