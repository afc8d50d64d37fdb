"""Public recordings in ``../shared/external`` (never copied into the project).

Where they are absent (a user's clone) a test that needs them skips with the reason; under CI
(``CI=true``) their absence is a failure, never a skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from workers.core.settings import REPO_ROOT

EXTERNAL = REPO_ROOT.parent / "shared" / "external"


def external(relative: str) -> Path:
    path = EXTERNAL / relative
    if not path.exists():
        message = f"{path} is absent: the public recordings live in ../shared/external beside the project"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path
