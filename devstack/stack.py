"""The cloud path on one machine: emulators, trigger, bridge and worker services, wired as in
the cloud (push subscriptions with retry and dead-letter policies, a kept dead-letter pull
subscription per topic). Used by ``python -m workers dev-stack`` and the end-to-end tests.

Push authentication is off here: the Pub/Sub emulator attaches no OIDC token (the services
accept that only because they are told they talk to emulators).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Sequence

from devstack import emulators
from devstack.bridge import NotificationBridge
from workers.composition import Root
from workers.core.contracts import Result, loads, to_dict
from workers.core.errors import NotFound
from workers.core.jobs import result_key
from workers.core.settings import REPO_ROOT, SETTINGS, Settings

log = logging.getLogger(__name__)

NOTIFY_TOPIC = "gcs-notifications"
SERVICE_ROLES = ("stt", "ser", "joiner")
PUSH_PATHS = {"stt": "/push/job", "ser": "/push/job", "joiner": "/push/partial"}


@dataclass(frozen=True)
class Delivery:
    """How a push subscription delivers: its ack deadline, retry backoff and dead-letter policy."""

    ack_deadline_seconds: int
    max_delivery_attempts: int
    backoff_seconds: tuple[float, float]


# Terraform's defaults (infra/terraform/variables.tf); a test keeps the two equal, so a change
# there is a change here, and DEV_STACK_DELIVERY's reasons are looked at again.
PRODUCTION_DELIVERY = Delivery(ack_deadline_seconds=600, max_delivery_attempts=50, backoff_seconds=(10.0, 600.0))
# What the Pub/Sub emulator does, measured (tests/integration/test_emulator_delivery.py): with a
# 1-10 s backoff a failed push is retried after about 1, 3, 3, 3 s and dead-lettered after
# max_delivery_attempts failed pushes (a 5xx, a 503 while loading, a refused or cut connection
# all count); a message whose push is still open is pushed again only once the ack deadline
# passes. So: the same ack deadline (a long job is not pushed twice), and 20 attempts, which at
# the emulator's pace ride out about a minute of faults (a storage outage) before a message is
# dead-lettered, where production's 50 with its backoff ride out hours. What outlasts that is in
# a dead-letter subscription (redrive) or stuck (stuck --republish). Unlike production, the
# emulator stops pushing when several messages of a subscription fail at once: 8 messages
# answered 500 were pushed 2-3 times each within 4 s, then never again and never dead-lettered
# (whatever the ack deadline or attempts; setting the push config again does not revive them).
# So a restart holds its service's pushes until it is ready (restart()): pushes into a
# restarting service stalled jobs (ser killed twice in a burst of 30: 21 left with one partial
# and no dead letter after 2 min; none now), and a fault that fails many pushes at once (a 403
# on staging) still strands jobs in the dev stack, where production retries them for hours.
DEV_STACK_DELIVERY = Delivery(ack_deadline_seconds=PRODUCTION_DELIVERY.ack_deadline_seconds,
                              max_delivery_attempts=20, backoff_seconds=(1.0, 10.0))


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a child process these settings (only what differs from the defaults)."""
    defaults = Settings()
    return {s.env: s.as_env(s.value(settings)) for s in SETTINGS if s.value(settings) != s.value(defaults)}


@dataclass
class Names:
    """Buckets, topics and subscriptions of one stack (a prefix keeps stacks in one emulator apart)."""

    prefix: str = ""

    @property
    def inbox(self) -> str:
        return f"{self.prefix}inbox"

    @property
    def staging(self) -> str:
        return f"{self.prefix}staging"

    @property
    def results(self) -> str:
        return f"{self.prefix}results"

    @property
    def jobs(self) -> str:
        return f"{self.prefix}jobs"

    @property
    def partials(self) -> str:
        return f"{self.prefix}partials"

    def dead_letter(self, topic: str) -> str:
        return f"{topic}-dead-letter"


class DevStack:
    def __init__(self, settings: Settings, workdir: Path, *, pubsub_host_port: str, gcs_url: str,
                 notify_topic: str = NOTIFY_TOPIC, prefix: str = "", delivery: Delivery = DEV_STACK_DELIVERY) -> None:
        self.names = Names(prefix)
        self.workdir = workdir
        self.pubsub_host_port = pubsub_host_port
        self.gcs_url = gcs_url
        self.notify_topic = notify_topic
        self.delivery = delivery
        self.settings = settings.replace(
            project=emulators.PROJECT, inbox_bucket=self.names.inbox, staging_bucket=self.names.staging,
            results_bucket=self.names.results, jobs_topic=self.names.jobs, partials_topic=self.names.partials,
            push_auth="off", pubsub_emulator_host=pubsub_host_port, storage_emulator_host=gcs_url,
        )
        self.store = Root.cloud(self.settings).store
        self.urls: dict[str, str] = {}
        self.processes: dict[str, emulators._Process] = {}
        self.subscriptions: dict[str, str] = {}  # role -> its push subscription
        self.bridge: NotificationBridge | None = None

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self, timeout: float = 180.0) -> "DevStack":
        with emulators.stopped_on_failure(self):
            self._start(timeout)
        return self

    def _start(self, timeout: float) -> None:
        os.environ["PUBSUB_EMULATOR_HOST"] = self.pubsub_host_port
        n = self.names
        for bucket in (n.inbox, n.staging, n.results):
            emulators.create_bucket(self.gcs_url, bucket)
        for topic in (n.jobs, n.partials):
            emulators.create_topic(topic)
            emulators.create_topic(n.dead_letter(topic))
            # The dead-letter topic's pull subscription keeps what lands there for inspection and redrive.
            emulators.create_subscription(n.dead_letter(topic), n.dead_letter(topic))
        for role in SERVICE_ROLES:
            self.start_service(role)
        self._start_trigger()
        for role in SERVICE_ROLES:
            emulators.wait_http(self.urls[role] + "/healthz", timeout, self.processes[role].proc,
                                self.processes[role].log_path, ok_only=True)
        emulators.wait_http(self.urls["trigger"] + "/", timeout, self.processes["trigger"].proc,
                            self.processes["trigger"].log_path)
        for role in SERVICE_ROLES:
            topic = n.partials if role == "joiner" else n.jobs
            self.subscriptions[role] = emulators.create_subscription(
                f"{topic}-{role}", topic, push_endpoint=self.urls[role] + PUSH_PATHS[role],
                ack_deadline_seconds=self.delivery.ack_deadline_seconds, dead_letter_topic=n.dead_letter(topic),
                max_delivery_attempts=self.delivery.max_delivery_attempts,
                min_backoff_seconds=self.delivery.backoff_seconds[0],
                max_backoff_seconds=self.delivery.backoff_seconds[1],
            )
        bridge_sub = emulators.create_subscription(f"{n.prefix}{self.notify_topic}-bridge", self.notify_topic)
        self.bridge = NotificationBridge(bridge_sub, self.urls["trigger"] + "/", bucket=n.inbox).start()
        return self

    def start_service(self, role: str, port: int | None = None, extra_env: dict[str, str] | None = None) -> None:
        port = port or emulators.free_port()
        self.urls[role] = f"http://{emulators.HOST}:{port}"
        process = emulators._Process(role, self.workdir)
        env = {**os.environ, **settings_env(self.settings), "ROLE": role, "PORT": str(port),
               "PYTHONPATH": str(REPO_ROOT), **(extra_env or {})}
        # The caller's working directory: relative model paths in the settings mean the same.
        process.spawn([sys.executable, "-m", "workers", "serve", "--host", emulators.HOST], env=env, cwd=Path.cwd())
        self.processes[role] = process

    def _start_trigger(self) -> None:
        port = emulators.free_port()
        self.urls["trigger"] = f"http://{emulators.HOST}:{port}"
        process = emulators._Process("trigger", self.workdir)
        env = {**os.environ, **settings_env(self.settings), "PYTHONPATH": str(REPO_ROOT)}
        process.spawn([sys.executable, "-m", "functions_framework", "--target", "on_finalized",
                       "--source", str(REPO_ROOT / "trigger" / "main.py"), "--signature-type", "cloudevent",
                       "--host", emulators.HOST, "--port", str(port)], env=env)
        self.processes["trigger"] = process

    def kill(self, role: str) -> None:
        """SIGKILL one service, as a crashed instance (its in-flight push is redelivered)."""
        import signal

        process = self.processes[role]
        if process.proc is not None:
            os.killpg(process.proc.pid, signal.SIGKILL)
            process.proc.wait()

    def restart(self, role: str, timeout: float = 120.0) -> None:
        """Start ``role`` again on its port. Its push subscription holds the messages until the
        new process is ready, as Cloud Run's startup probe keeps requests off a starting instance:
        no push meets a closed port or a 503 while the model loads, and none is counted as failed."""
        subscription = self.subscriptions.get(role)
        if subscription:
            emulators.set_push_endpoint(subscription, "")
        port = int(self.urls[role].rsplit(":", 1)[1])
        self.start_service(role, port)
        emulators.wait_http(self.urls[role] + "/healthz", timeout, self.processes[role].proc,
                            self.processes[role].log_path, ok_only=True)
        if subscription:
            emulators.set_push_endpoint(subscription, self.urls[role] + PUSH_PATHS[role])

    def stop(self) -> None:
        if self.bridge is not None:
            self.bridge.stop()
            self.bridge = None
        for process in self.processes.values():
            process.stop()

    def __enter__(self) -> "DevStack":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- use ----------------------------------------------------------------------------------------
    def upload(self, path: Path, name: str | None = None) -> tuple[str, int]:
        name = name or path.name
        return name, self.store.put(self.names.inbox, name, path)

    def result(self, name: str, generation: int | None = None) -> Result | None:
        try:
            data, _ = self.store.read(self.names.results, result_key(name))
        except NotFound:
            return None
        result = loads(Result, data)
        if generation is not None and result.job.generation != generation:
            return None
        return result

    def wait_result(self, name: str, generation: int | None = None, timeout: float = 300.0) -> Result:
        deadline = time.monotonic() + timeout
        while (result := self.result(name, generation)) is None:
            for role, process in self.processes.items():
                if process.proc is not None and process.proc.poll() is not None:
                    raise RuntimeError(f"the {role} process died:\n{process.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no result for {name} within {timeout:.0f} s")
            time.sleep(0.1)
        return result

    def log_tails(self) -> str:
        return "\n".join(f"--- {role} ---\n{p.log_tail()}" for role, p in self.processes.items())


def run_dev_stack(settings: Settings, *, files: Sequence[Path], timeout: float, workdir: Path | None,
                  out: IO[str]) -> int:
    """Start everything; with files, process them and print each result as a JSON line, then stop."""
    workdir = workdir or Path(tempfile.mkdtemp(prefix="dev-stack-"))
    workdir.mkdir(parents=True, exist_ok=True)
    for path in files:
        if not path.is_file():
            print(f"error: {path} is not a file", file=sys.stderr)
            return 2
    with emulators.PubSubEmulator(workdir / "pubsub") as pubsub:
        os.environ["PUBSUB_EMULATOR_HOST"] = pubsub.host_port
        emulators.create_topic(NOTIFY_TOPIC)
        with emulators.FakeGcsServer(workdir / "gcs", pubsub_host_port=pubsub.host_port,
                                     notify_topic=NOTIFY_TOPIC) as gcs:
            stack = DevStack(settings, workdir, pubsub_host_port=pubsub.host_port, gcs_url=gcs.url)
            print(f"starting the dev stack (logs in {workdir})...", file=sys.stderr)
            with stack:
                if files:
                    return _process(stack, files, timeout, out)
                _explain(stack, pubsub.host_port, gcs.url)
                status = supervise(stack, {"pubsub-emulator": pubsub.process, "fake-gcs-server": gcs.process})
                print("stopping", file=sys.stderr)
                return status


def supervise(stack: DevStack, emulator_processes: dict[str, "emulators._Process"], *, poll_seconds: float = 1.0,
              crash_loop_seconds: float = 60.0) -> int:
    """Keep the stack running until Ctrl-C (0). A stt, ser or joiner process that exits is named
    and restarted (its pushes held until it is ready); one that exits again within
    ``crash_loop_seconds`` of its restart, or any other child (trigger, emulators), stops the
    stack: 1, with the child named and the end of its log."""
    restarted_at: dict[str, float] = {}
    try:
        while True:
            for name, process in {**emulator_processes, **stack.processes}.items():
                code = None if process.proc is None else process.proc.poll()
                if code is None:
                    continue
                print(f"the {name} process exited with status {code}; the end of its log "
                      f"({process.log_path}):\n{process.log_tail()}", file=sys.stderr)
                if name not in SERVICE_ROLES:
                    print(f"error: {name} died; the stack cannot go on without it", file=sys.stderr)
                    return 1
                if time.monotonic() - restarted_at.get(name, float("-inf")) < crash_loop_seconds:
                    print(f"error: {name} died again within {crash_loop_seconds:.0f} s of its restart",
                          file=sys.stderr)
                    return 1
                print(f"restarting {name} (its pushes wait until it is ready)", file=sys.stderr)
                try:
                    stack.restart(name)
                except RuntimeError as e:
                    print(f"error: {name} could not be restarted: {e}", file=sys.stderr)
                    return 1
                restarted_at[name] = time.monotonic()
            time.sleep(poll_seconds)
    except KeyboardInterrupt:
        return 0


def _process(stack: DevStack, files: Sequence[Path], timeout: float, out: IO[str]) -> int:
    uploaded = [(*stack.upload(path), time.monotonic()) for path in files]
    for name, generation, uploaded_at in uploaded:
        try:
            result = stack.wait_result(name, generation, timeout)
        except (TimeoutError, RuntimeError) as e:
            print(f"error: {e}\n{stack.log_tails()}", file=sys.stderr)
            return 1
        # Upload to result as a user sees it (polled every 0.1 s), for latency comparisons.
        print(f"{name}: {result.status} {time.monotonic() - uploaded_at:.1f} s after its upload", file=sys.stderr)
        out.write(json.dumps(to_dict(result), ensure_ascii=False, sort_keys=True) + "\n")
        out.flush()
    return 0


def _explain(stack: DevStack, pubsub_host_port: str, gcs_url: str) -> None:
    n = stack.names
    print(f"""
The cloud path is running on emulators (Ctrl-C stops everything):
  GCS (fake-gcs-server)   STORAGE_EMULATOR_HOST={gcs_url}   buckets: {n.inbox}, {n.staging}, {n.results}
  Pub/Sub emulator        PUBSUB_EMULATOR_HOST={pubsub_host_port}   topics: {n.jobs}, {n.partials} (+ dead-letter)
  trigger                 {stack.urls['trigger']}
  stt / ser / joiner      {stack.urls['stt']}  {stack.urls['ser']}  {stack.urls['joiner']}
Upload a file to the inbox and watch its result appear:
  curl -X POST --data-binary @samples/en_weather.flac -H 'Content-Type: audio/flac' \\
      '{gcs_url}/upload/storage/v1/b/{n.inbox}/o?uploadType=media&name=en_weather.flac'
  curl -s '{gcs_url}/storage/v1/b/{n.results}/o/en_weather.flac.json?alt=media'
""", file=sys.stderr)
