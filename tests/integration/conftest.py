"""Session fixtures that run the real emulators on 127.0.0.1, once per test session.

``pubsub_emulator`` yields ``host:port`` and sets PUBSUB_EMULATOR_HOST for every client made
afterwards; ``gcs_emulator`` yields the URL that STORAGE_EMULATOR_HOST takes, and publishes an
OBJECT_FINALIZE notification to ``GCS_NOTIFY_TOPIC`` for every finalized object. Set-up
helpers (buckets, topics, push/pull subscriptions with dead-letter policies) are in
``devstack.emulators``. An emulator that is not installed skips these tests with the
reason, except under CI=true, where it fails them: CI must exercise the emulators.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from devstack import emulators

GCS_NOTIFY_TOPIC = "gcs-notifications"
PROJECT = emulators.PROJECT


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"emulator missing under CI: {reason}", pytrace=False)
    pytest.skip(f"emulator not installed: {reason}")


@pytest.fixture(scope="session")
def pubsub_emulator(tmp_path_factory: pytest.TempPathFactory):
    try:
        emulator = emulators.PubSubEmulator(tmp_path_factory.mktemp("pubsub"))
        emulator.start()
    except emulators.EmulatorUnavailable as e:
        _unavailable(str(e))
    previous = os.environ.get("PUBSUB_EMULATOR_HOST")
    os.environ["PUBSUB_EMULATOR_HOST"] = emulator.host_port
    os.environ.setdefault("GOOGLE_CLOUD_PROJECT", PROJECT)
    try:
        yield emulator.host_port
    finally:
        emulator.stop()
        _restore("PUBSUB_EMULATOR_HOST", previous)


@pytest.fixture(scope="session")
def gcs_emulator(pubsub_emulator: str, tmp_path_factory: pytest.TempPathFactory):
    emulators.create_topic(GCS_NOTIFY_TOPIC)
    try:
        server = emulators.FakeGcsServer(
            tmp_path_factory.mktemp("gcs"), pubsub_host_port=pubsub_emulator, notify_topic=GCS_NOTIFY_TOPIC,
        )
        server.start()
    except emulators.EmulatorUnavailable as e:
        _unavailable(str(e))
    previous = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = server.url
    try:
        yield server.url
    finally:
        server.stop()
        _restore("STORAGE_EMULATOR_HOST", previous)


@contextlib.contextmanager
def running(dev) -> Iterator:
    """A started DevStack, stopped afterwards; a start that fails prints its children's logs."""
    try:
        dev.start()
    except Exception:
        print(dev.log_tails())
        dev.stop()
        raise
    try:
        yield dev
    finally:
        dev.stop()


@pytest.fixture
def unique() -> str:
    """A short suffix that keeps one test's buckets, topics and subscriptions apart from another's."""
    return uuid.uuid4().hex[:8]


@pytest.fixture
def gcs_store(gcs_emulator: str):
    from workers.adapters.gcs import GcsBlobStore, storage_client

    return GcsBlobStore(storage_client(PROJECT, gcs_emulator))


def _restore(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
