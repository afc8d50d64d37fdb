"""The fault suite runs on the same emulators as tests/integration (skipped with the reason when
one is not installed, failed under CI=true)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import gcs_emulator, pubsub_emulator, unique  # noqa: F401 - fixtures


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)
