"""Local adapters: a folder per bucket with GCS generation semantics, and an in-process bus.

The folder store maps object names to paths without ever leaving its root: ``..``, ``.``
and empty path segments are escaped, so an object called ``../../etc/passwd`` is stored
as ``%2E%2E/%2E%2E/etc/passwd`` under the root. A file's generation is the later of its
modification and change times in nanoseconds, bumped when needed so every write gets a larger
one; if-generation-match writes are atomic across threads and processes (a lock file beside
the object, inside the store and removed again, then ``os.replace``).

A file that is listed but cannot be examined or read (a folder without search permission, a
symlink loop, a FIFO, a file that changed after it was listed) is still an object: reading it
raises a PermanentError (``unreadable``) or NotFound naming the local path, so it gets a failed
result and a run goes on. What a listing cannot turn into an object at all (a symlink whose
target does not exist, a folder that cannot be listed) is kept, with the reason, for
``unlisted``; ``name_problem`` says which names a folder cannot hold the result of (one not
valid UTF-8, a path segment over the file system's limit).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import mimetypes
import os
import shutil
import stat as stat_mode
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from workers.core.errors import NotFound, PermanentError, PreconditionFailed, TransientError
from workers.core.ports import BlobInfo

log = logging.getLogger(__name__)

_TMP_PREFIX = ".tmp-"
_ESCAPES = {"": "%00", ".": "%2E", "..": "%2E%2E"}
_UNESCAPES = {v: k for k, v in _ESCAPES.items()}
# The last segment is a file's name, never empty, so ``%00`` there is no escape: a file a user
# called ``%00`` is found under that name.
_LAST_UNESCAPES = {k: v for k, v in _UNESCAPES.items() if v}
# Generation of a listed file that cannot be examined: older than any real one (a time in ns),
# so it gets a failed result now and is redone once it can be read.
UNREADABLE_GENERATION = 1
# Bytes in one path segment on Linux, macOS and Windows file systems (NAME_MAX).
MAX_SEGMENT_BYTES = 255
# A temporary file this old that no writer holds is left from a killed run (or a full disk).
STALE_TEMP_SECONDS = 5.0


def name_problem(name: str) -> str | None:
    """Why a folder store cannot hold an object called ``name``, or None when it can."""
    encoded = os.fsencode(name)
    try:
        encoded.decode("utf-8")
    except UnicodeDecodeError:
        return f"the name {shown(name)} is not valid UTF-8: rename the file"
    try:
        segments = encode_name(name).split("/")
    except ValueError as e:
        return str(e)
    longest = max(segments, key=lambda seg: len(os.fsencode(seg)))
    if len(os.fsencode(longest)) > MAX_SEGMENT_BYTES:
        return (f"{shown(longest[:40])}… is {len(os.fsencode(longest))} bytes long; a file name holds at most "
                f"{MAX_SEGMENT_BYTES}: shorten it")
    return None


def shown(name: str) -> str:
    """``name`` as text that prints anywhere: bytes that are not UTF-8 as \\xNN escapes."""
    try:
        os.fsencode(name).decode("utf-8")
        return name
    except UnicodeDecodeError:
        return repr(os.fsencode(name))[2:-1]


def _token_like(seg: str, tokens: Mapping[str, str]) -> bool:
    """An escape, or an escape with its leading ``%`` itself escaped (any number of times)."""
    return seg in tokens or (seg.startswith("%25") and _token_like("%" + seg[3:], tokens))


def encode_name(name: str) -> str:
    """Object name → relative path that cannot escape its root.

    The segments ``""``, ``.`` and ``..`` become escapes (``%00``, ``%2E``, ``%2E%2E``); a
    segment that merely looks like an escape gets its leading ``%`` written as ``%25``. Every
    other name is its own path, so files a user puts in the folder (``100% sure.flac``) are
    found under the names they are listed with, and the mapping reverses exactly both ways.
    A name ending in ``/`` is a folder marker, which no file can be: ValueError.
    """
    *folders, last = name.split("/")
    if not last:
        raise ValueError(f"object name {name!r} is empty or ends with '/': a folder marker is not a file")
    return "/".join([*(_encode(seg, _UNESCAPES) for seg in folders), _encode(last, _LAST_UNESCAPES)])


def _encode(seg: str, tokens: Mapping[str, str]) -> str:
    return _ESCAPES.get(seg) or ("%25" + seg[1:] if _token_like(seg, tokens) else seg)


def decode_name(rel: str) -> str:
    *folders, last = rel.split("/")
    return "/".join([*(_decode(seg, _UNESCAPES) for seg in folders), _decode(last, _LAST_UNESCAPES)])


def _decode(seg: str, tokens: Mapping[str, str]) -> str:
    if seg in tokens:
        return tokens[seg]
    if seg.startswith("%25") and _token_like("%" + seg[3:], tokens):
        return "%" + seg[3:]
    return seg


class LocalBlobStore:
    """Buckets are folders: ``LocalBlobStore({"inbox": "/data/in", "results": "/data/out"})``."""

    def __init__(self, buckets: Mapping[str, str | Path]) -> None:
        self._roots = {name: Path(root).resolve() for name, root in buckets.items()}
        self._thread_lock = threading.Lock()
        self._unlisted: dict[str, list[tuple[str, str]]] = {}

    def root(self, bucket: str) -> Path:
        try:
            return self._roots[bucket]
        except KeyError:
            raise NotFound(f"no local bucket named {bucket!r}") from None

    def path(self, bucket: str, name: str) -> Path:
        root = self.root(bucket)
        try:
            path = root / encode_name(name)
        except ValueError as e:
            raise NotFound(str(e)) from e
        if root != path and root not in path.parents:
            raise NotFound(f"object name {name!r} escapes its bucket")
        problem = name_problem(name)
        if problem is not None:
            raise PermanentError(problem, code="unstorable_name")
        return path

    def stat(self, bucket: str, name: str) -> BlobInfo | None:
        path = self.path(bucket, name)
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not path.is_file():
            return None
        return _info(bucket, name, path, st)

    def read(self, bucket: str, name: str) -> tuple[bytes, int]:
        info = self.stat(bucket, name)
        if info is None:
            raise NotFound(f"{bucket}/{name} does not exist")
        return self.path(bucket, name).read_bytes(), info.generation

    def download(self, bucket: str, name: str, generation: int, dest: Path) -> None:
        path = self.path(bucket, name)
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError) as e:
            raise NotFound(f"{path} no longer exists") from e
        except OSError as e:
            raise _unreadable(path, "cannot be examined", e) from e
        if not stat_mode.S_ISREG(st.st_mode):
            kind = "a FIFO" if stat_mode.S_ISFIFO(st.st_mode) else "a folder" if stat_mode.S_ISDIR(st.st_mode) \
                else "not a regular file (a device or socket)"
            raise PermanentError(f"{path} is {kind}, not an audio file", code="unreadable")
        if _generation(st) != generation:
            raise NotFound(f"{path} changed after it was listed (still being written, or replaced); "
                           "a rerun takes the new version")
        try:
            shutil.copyfile(path, dest)
        except OSError as e:
            raise _unreadable(path, "cannot be read", e) from e

    def write(
        self,
        bucket: str,
        name: str,
        data: bytes,
        *,
        if_generation_match: int | None,
        content_type: str = "application/json",
    ) -> int:
        path = self.path(bucket, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f"{_TMP_PREFIX}{uuid.uuid4().hex}"
        try:
            tmp.write_bytes(data)  # a full disk fails here, after the file was made
            with self._locked(path):
                current = self.stat(bucket, name)
                live = current.generation if current else 0
                if if_generation_match is not None and if_generation_match != live:
                    raise PreconditionFailed(
                        f"{bucket}/{name}: generation is {live}, expected {if_generation_match}"
                    )
                os.replace(tmp, path)
                generation = _generation(path.stat())
                if generation <= live:
                    os.utime(path, ns=(live + 1, live + 1))
                    generation = _generation(path.stat())
                return generation
        finally:
            tmp.unlink(missing_ok=True)

    def list(self, bucket: str, prefix: str = "") -> Iterator[BlobInfo]:
        root = self.root(bucket)
        # Another bucket's folder inside this one is not listed, found by device and inode: a
        # bind mount or a symlinked path names the same folder under another path.
        others = {_identity(r) for b, r in self._roots.items() if b != bucket} - {None, _identity(root)}
        found, unlisted = [], []

        def cannot_list(error: OSError) -> None:
            where = Path(error.filename)
            folder = decode_name(where.relative_to(root).as_posix()) if where != root else "."
            log.warning("cannot list %s (%s): the files in it are not processed", error.filename, error.strerror)
            why = f"the folder cannot be listed ({error.strerror}): its files are not processed"
            unlisted.append((folder + "/", why))

        for dirpath, dirnames, filenames in os.walk(root, onerror=cannot_list):
            here = Path(dirpath)
            dirnames[:] = sorted(d for d in dirnames if _identity(here / d) not in others)
            for fn in filenames:
                if fn.startswith(_TMP_PREFIX):
                    continue
                path = here / fn
                name = decode_name(path.relative_to(root).as_posix())
                if name.startswith(prefix):
                    try:
                        found.append(_info(bucket, name, path, path.stat()))
                    except FileNotFoundError:
                        if path.is_symlink():
                            target = shown(os.readlink(path))
                            unlisted.append((name, f"a symbolic link to {target}, which does not exist"))
                        continue
                    except OSError:  # listed, but not to be examined: reading it says why
                        found.append(BlobInfo(bucket, name, UNREADABLE_GENERATION, 0))
        self._unlisted[bucket] = sorted(unlisted)
        yield from sorted(found, key=lambda b: b.name)

    def unlisted(self, bucket: str) -> list[tuple[str, str]]:
        """(name, why) of what the last listing of ``bucket`` saw but could not list as objects:
        symlinks whose target does not exist, folders that cannot be listed."""
        return list(self._unlisted.get(bucket, ()))

    def sweep_temp_files(self, bucket: str) -> int:
        """Remove the temporary files a killed run left in ``bucket``; how many. A writer holds
        its lock file locked and replaces its temporary file within moments, so only files no
        one holds and older than STALE_TEMP_SECONDS go."""
        removed, now = 0, time.time()
        for dirpath, _, filenames in os.walk(self.root(bucket)):
            for fn in filenames:
                path = Path(dirpath) / fn
                if fn.startswith(_TMP_PREFIX) and _stale(path, now):
                    path.unlink(missing_ok=True)
                    removed += 1
        if removed:
            log.info("removed %d temporary file(s) left by an earlier run in %s", removed, self.root(bucket))
        return removed

    def delete(self, bucket: str, name: str) -> None:
        path = self.path(bucket, name)
        if path.parent.is_dir():
            with self._locked(path):
                path.unlink(missing_ok=True)

    def _locked(self, path: Path) -> "_FileLock":
        digest = hashlib.sha256(path.name.encode(errors="surrogateescape")).hexdigest()[:16]
        return _FileLock(path.parent / f"{_TMP_PREFIX}lock-{digest}", self._thread_lock)


class _FileLock:
    """flock on a file beside the object, removed on release. A waiter that wakes holding a
    lock file that was removed meanwhile tries again, so removal never lets two in at once."""

    def __init__(self, path: Path, thread_lock: threading.Lock) -> None:
        self._path, self._thread_lock, self._fd = path, thread_lock, -1

    def __enter__(self) -> None:
        self._thread_lock.acquire()
        try:
            while True:
                fd = os.open(self._path, os.O_CREAT | os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    held, current = os.fstat(fd), os.stat(self._path, follow_symlinks=False)
                    if (held.st_dev, held.st_ino) == (current.st_dev, current.st_ino):
                        self._fd = fd
                        return
                except FileNotFoundError:
                    pass
                os.close(fd)
        except BaseException:
            self._thread_lock.release()
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            os.unlink(self._path)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._thread_lock.release()


def _unreadable(path: Path, what: str, error: OSError) -> PermanentError:
    return PermanentError(f"{path} {what}: {error.strerror or error}", code="unreadable")


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _stale(path: Path, now: float) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        if now - os.fstat(fd).st_mtime < STALE_TEMP_SECONDS:
            return False
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:  # held by a live writer
        return False
    finally:
        os.close(fd)


def _generation(st: os.stat_result) -> int:
    """Grows with every change of the file. The modification time alone can go back (``cp -p``,
    ``rsync -t``, an unpacked archive keep an older one), so a replaced file would look older
    than the result of the file it replaced; the change time cannot be set back."""
    return max(st.st_mtime_ns, st.st_ctime_ns)


def _info(bucket: str, name: str, path: Path, st: os.stat_result) -> BlobInfo:
    updated = datetime.fromtimestamp(st.st_mtime, timezone.utc).isoformat().replace("+00:00", "Z")
    content_type = mimetypes.guess_type(path.name)[0]
    return BlobInfo(bucket, name, _generation(st), st.st_size, content_type, updated)


Handler = Callable[[dict[str, Any]], Any]


class LocalBus:
    """Pub/Sub in one process: every subscriber of a topic runs in its own thread.

    A message goes to all subscribers of its topic at once (STT and SER on the jobs topic
    work concurrently, as behind a real push subscription each). A handler that raises a
    TransientError is retried with backoff up to ``max_attempts``; what still fails lands
    in ``dead_letters``, like a dead-letter topic. ``drain()`` waits until nothing is in flight.
    """

    def __init__(self, max_attempts: int = 3, backoff_seconds: float = 0.5, workers: int = 4) -> None:
        self._subscribers: dict[str, list[tuple[str, Handler]]] = {}
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bus")
        self._pending: set[Future] = set()
        self._lock = threading.Condition()
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self.dead_letters: list[tuple[str, str, dict[str, Any], BaseException]] = []
        self.published: list[tuple[str, dict[str, Any]]] = []
        self._closed = False

    def subscribe(self, topic: str, name: str, handler: Handler) -> None:
        self._subscribers.setdefault(topic, []).append((name, handler))

    def publish(self, topic: str, message: Mapping[str, Any], attributes: Mapping[str, str]) -> str:
        payload = json.loads(json.dumps(message))  # what a real bus would deliver: a copy
        message_id = uuid.uuid4().hex
        with self._lock:
            self.published.append((topic, payload))
            if self._closed:
                # Shutting down (Ctrl-C): what is stored stays stored; a rerun announces it again.
                log.debug("bus closed; %s message not delivered", topic)
                return message_id
            for name, handler in self._subscribers.get(topic, []):
                future = self._pool.submit(self._deliver, topic, name, handler, payload)
                self._pending.add(future)
                future.add_done_callback(self._done)
        return message_id

    def _deliver(self, topic: str, name: str, handler: Handler, payload: dict[str, Any]) -> None:
        for attempt in range(1, self.max_attempts + 1):
            try:
                handler(payload)
                return
            except TransientError as e:
                if attempt == self.max_attempts:
                    log.error("dead-lettered %s message for %s after %d attempts: %s", topic, name, attempt, e)
                    self.dead_letters.append((topic, name, payload, e))
                    return
                log.warning("retrying %s for %s (attempt %d): %s", topic, name, attempt, e)
                time.sleep(self.backoff_seconds * 2 ** (attempt - 1))
            except Exception as e:  # noqa: BLE001 - a bug must not hang drain(); keep it like a DLQ
                log.exception("handler %s failed on %s", name, topic)
                self.dead_letters.append((topic, name, payload, e))
                return

    def _done(self, future: Future) -> None:
        with self._lock:
            self._pending.discard(future)
            self._lock.notify_all()

    def drain(self, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._pending:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"{len(self._pending)} deliveries still in flight")
                self._lock.wait(left)

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._pool.shutdown(wait=True, cancel_futures=True)
