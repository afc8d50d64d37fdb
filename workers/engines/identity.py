"""Which model a result was made with: the name every partial and result records.

A model folder may carry a ``MODEL_ID`` file (the GPU image writes ``repo@commit`` there when it
fetches the weights at build time); otherwise the folder's name is the id (the offline defaults
are named after what they are). A ``.pt`` checkpoint reads ``<name>.MODEL_ID`` beside it. The
id is part of the engine that partials record, so a new checkpoint, even under the same path,
makes reprocessing redo what the old one made.
"""

from __future__ import annotations

from pathlib import Path

MODEL_ID_FILE = "MODEL_ID"


def model_id(path: Path) -> str:
    marker = path / MODEL_ID_FILE if path.is_dir() else path.with_name(f"{path.stem}.{MODEL_ID_FILE}")
    try:
        text = marker.read_text(encoding="utf-8").strip()
    except (FileNotFoundError, NotADirectoryError):
        text = ""
    return text.splitlines()[0].strip() if text else (path.name if path.is_dir() else path.stem)
