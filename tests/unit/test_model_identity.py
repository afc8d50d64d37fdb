"""Results name the model that made them, from a MODEL_ID file when the model carries one."""

from __future__ import annotations

import shutil

from workers.engines.identity import model_id
from workers.engines.ser import TransformersEmotionEngine


def test_a_model_folder_is_named_by_its_model_id_file_or_else_by_its_name(tmp_path) -> None:
    baked = tmp_path / "stt"
    baked.mkdir()
    (baked / "MODEL_ID").write_text("mobiuslabsgmbh/faster-whisper-large-v3-turbo@0a1b2c\n")
    plain = tmp_path / "whisper-base-ct2"
    plain.mkdir()
    assert model_id(baked) == "mobiuslabsgmbh/faster-whisper-large-v3-turbo@0a1b2c"
    assert model_id(plain) == "whisper-base-ct2"


def test_a_checkpoint_file_reads_the_id_beside_it(tmp_path) -> None:
    checkpoint = tmp_path / "large-v3.pt"
    checkpoint.write_bytes(b"")
    assert model_id(checkpoint) == "large-v3"
    (tmp_path / "large-v3.MODEL_ID").write_text("openai/whisper-large-v3@f00d\n")
    assert model_id(checkpoint) == "openai/whisper-large-v3@f00d"


def test_the_engine_records_the_model_id(untrained_settings, tmp_path) -> None:
    source = untrained_settings.ser_model_path
    copy = tmp_path / "ser"
    shutil.copytree(source, copy)
    (copy / "MODEL_ID").write_text("example/ser@1234\n")
    assert TransformersEmotionEngine(copy).engine.model == "example/ser@1234"
    assert TransformersEmotionEngine(source).engine.model == source.name
