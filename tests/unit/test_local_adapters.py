"""The folder store keeps GCS generation semantics and never writes outside its root; the bus runs in parallel."""

from __future__ import annotations

import multiprocessing
import os
import random
import tempfile
import threading
import time

import pytest

from workers.adapters.local import UNREADABLE_GENERATION, LocalBlobStore, LocalBus, decode_name, encode_name
from workers.core.errors import NotFound, PermanentError, PreconditionFailed, TransientError


@pytest.fixture
def store(tmp_path):
    (tmp_path / "in").mkdir()
    return LocalBlobStore({"in": tmp_path / "in", "out": tmp_path / "in" / "out"})


def test_if_generation_match_zero_writes_only_once(store) -> None:
    g1 = store.write("out", "a.json", b"1", if_generation_match=0)
    with pytest.raises(PreconditionFailed):
        store.write("out", "a.json", b"2", if_generation_match=0)
    assert store.read("out", "a.json") == (b"1", g1)


def test_a_matching_generation_replaces_and_bumps_the_generation(store) -> None:
    g1 = store.write("out", "a.json", b"1", if_generation_match=0)
    g2 = store.write("out", "a.json", b"2", if_generation_match=g1)
    assert g2 > g1
    with pytest.raises(PreconditionFailed):
        store.write("out", "a.json", b"3", if_generation_match=g1)


def test_concurrent_create_only_writes_have_one_winner(store) -> None:
    wins, barrier = [], threading.Barrier(8)

    def attempt(i: int) -> None:
        barrier.wait()
        try:
            store.write("out", "race.json", str(i).encode(), if_generation_match=0)
            wins.append(i)
        except PreconditionFailed:
            pass

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(wins) == 1


@pytest.mark.parametrize(
    "name", ["../../etc/passwd", "a/../../b", "/abs/path", "a//b", ".", "..", "%2E%2E/x", "%25/%00", "%/x%y"]
)
def test_object_names_never_escape_the_bucket_folder(store, tmp_path, name: str) -> None:
    store.write("out", name, b"x", if_generation_match=0)
    path = store.path("out", name)
    assert (tmp_path / "in" / "out") in path.parents
    assert decode_name(encode_name(name)) == name
    assert [b.name for b in store.list("out")] == [name]


@pytest.mark.parametrize("name", ["100% sure.flac", "50%25 off/%20.wav", "%/a%b.mp3"])
def test_files_put_in_the_folder_by_hand_are_found_under_their_listed_names(store, tmp_path, name: str) -> None:
    path = tmp_path / "in" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"audio")
    [info] = [b for b in store.list("in") if b.name != "out"]
    assert store.stat("in", info.name) == info
    store.download("in", info.name, info.generation, tmp_path / "copy")
    assert (tmp_path / "copy").read_bytes() == b"audio"


def test_name_mapping_reverses_exactly_for_object_names_and_for_real_file_names() -> None:
    rng = random.Random(7)
    alphabet = ["%", "2", "5", "E", "0", ".", "a", "/", "%25", "%2E", "%00"]
    for _ in range(5000):
        name = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 10)))
        if name.endswith("/") or not name:  # a folder marker: no file holds it
            with pytest.raises(ValueError, match="folder marker"):
                encode_name(name)
        else:
            assert decode_name(encode_name(name)) == name
        segments = [seg for seg in name.split("/") if seg not in ("", ".", "..")]  # what a disk can hold
        real = "/".join(segments)
        if real:
            assert encode_name(decode_name(real)) == real
            assert decode_name(real).rsplit("/", 1)[-1], "a real file must not list as a folder marker"


@pytest.mark.parametrize("name", ["%00", "calls/%00", "%00/%00"])
def test_a_file_named_like_the_empty_segment_escape_is_listed_under_its_own_name(store, tmp_path, name) -> None:
    path = tmp_path / "in" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"audio")
    [info] = [b for b in store.list("in") if b.name != "out"]
    assert info.name.rsplit("/", 1)[-1] == "%00" and info.size == 5
    store.download("in", info.name, info.generation, tmp_path / "copy")
    assert (tmp_path / "copy").read_bytes() == b"audio"


def _create_only(root: str, names: list[str], won) -> None:
    store = LocalBlobStore({"out": root})
    for name in names:
        try:
            store.write("out", name, str(os.getpid()).encode(), if_generation_match=0)
            won.put(name)
        except PreconditionFailed:
            pass


def test_writes_lock_inside_the_store_leave_no_lock_behind_and_stay_exclusive_across_processes(tmp_path) -> None:
    locks_before = set(os.listdir(tempfile.gettempdir()))
    names = [f"job{i}/stt.json" for i in range(40)]
    context = multiprocessing.get_context("fork")
    won = context.Queue()
    racers = [context.Process(target=_create_only, args=(str(tmp_path), names, won)) for _ in range(4)]
    [p.start() for p in racers]
    [p.join(60) for p in racers]
    winners = [won.get(timeout=5) for _ in range(len(names))]
    assert sorted(winners) == sorted(names) and won.empty(), "each create-only write has exactly one winner"
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == sorted(names)
    assert not {n for n in set(os.listdir(tempfile.gettempdir())) - locks_before if n.endswith(".lock")}


def test_a_listed_file_that_cannot_be_examined_or_read_says_why_about_its_local_path(store, tmp_path) -> None:
    inbox = tmp_path / "in"
    os.symlink("loop.wav", inbox / "loop.wav")  # a symlink to itself: stat fails, even for root
    os.mkfifo(inbox / "pipe.wav")
    (inbox / "growing.wav").write_bytes(b"first")
    listed = {b.name: b for b in store.list("in")}
    assert listed["loop.wav"].generation == UNREADABLE_GENERATION
    with (inbox / "growing.wav").open("ab") as f:
        f.write(b" and more")
    errors = {}
    for name in ("loop.wav", "pipe.wav", "growing.wav"):
        with pytest.raises((PermanentError, NotFound)) as raised:
            store.download("in", name, listed[name].generation, tmp_path / "copy")
        errors[name] = raised.value
    assert errors["loop.wav"].code == "unreadable" and str(inbox / "loop.wav") in str(errors["loop.wav"])
    assert errors["pipe.wav"].code == "unreadable" and "is a FIFO" in str(errors["pipe.wav"])
    assert isinstance(errors["growing.wav"], NotFound) and "changed after it was listed" in str(errors["growing.wav"])
    assert not any("gs://" in str(e) for e in errors.values())


def test_a_file_replaced_by_one_with_an_older_modification_time_is_a_newer_generation(store, tmp_path) -> None:
    path = tmp_path / "in" / "call.flac"
    path.write_bytes(b"first recording")
    before = store.stat("in", "call.flac").generation
    replacement = tmp_path / "unpacked.flac"
    replacement.write_bytes(b"second recording")
    os.utime(replacement, ns=(1_577_836_800_000_000_000,) * 2)  # 2020, as `cp -p` of an old file keeps it
    os.replace(replacement, path)
    assert store.stat("in", "call.flac").generation > before


def test_download_checks_the_generation(store, tmp_path) -> None:
    g = store.write("in", "x.wav", b"abc", if_generation_match=None)
    store.download("in", "x.wav", g, tmp_path / "copy")
    assert (tmp_path / "copy").read_bytes() == b"abc"
    with pytest.raises(NotFound):
        store.download("in", "x.wav", g + 1, tmp_path / "copy")


def test_listing_a_bucket_skips_another_bucket_nested_inside_it(store) -> None:
    store.write("in", "audio.wav", b"a", if_generation_match=None)
    store.write("out", "audio.wav.json", b"{}", if_generation_match=None)
    assert [b.name for b in store.list("in")] == ["audio.wav"]


def test_bus_delivers_to_all_subscribers_at_once_and_dead_letters_after_retries() -> None:
    bus = LocalBus(max_attempts=3, backoff_seconds=0.01)
    running, overlap, attempts = set(), [], []

    def worker(name: str):
        def handle(message: dict) -> None:
            running.add(name)
            time.sleep(0.1)
            overlap.append(set(running))
            running.discard(name)
        return handle

    def flaky(message: dict) -> None:
        attempts.append(1)
        raise TransientError("down")

    bus.subscribe("jobs", "stt", worker("stt"))
    bus.subscribe("jobs", "ser", worker("ser"))
    bus.subscribe("other", "flaky", flaky)
    bus.publish("jobs", {"n": 1}, {})
    bus.publish("other", {"n": 2}, {})
    bus.drain(timeout=5)
    assert {"stt", "ser"} in overlap
    assert len(attempts) == 3
    assert [(t, h, m) for t, h, m, _ in bus.dead_letters] == [("other", "flaky", {"n": 2})]
    bus.close()


def test_a_write_that_fails_on_a_full_disk_leaves_no_temporary_file(tmp_path) -> None:
    import resource
    import signal

    store = LocalBlobStore({"results": tmp_path})
    store.write("results", "small.json", b"{}", if_generation_match=0)
    # A file size limit fails writes as a full disk does: after the file was made.
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1024, limit[1]))
    try:
        with pytest.raises(OSError):
            store.write("results", "big.json", b"x" * 4096, if_generation_match=0)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limit)
        signal.signal(signal.SIGXFSZ, previous)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.json"]


def test_stale_temporary_files_are_swept_and_a_held_lock_is_not(tmp_path) -> None:
    import fcntl

    store = LocalBlobStore({"results": tmp_path})
    (tmp_path / "deep").mkdir()
    stale, fresh, held = tmp_path / "deep" / ".tmp-old", tmp_path / ".tmp-new", tmp_path / ".tmp-lock-held"
    for path in (stale, fresh, held):
        path.write_bytes(b"")
    for path in (stale, held):
        os.utime(path, (1, 1))
    fd = os.open(held, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        assert store.sweep_temp_files("results") == 1
    finally:
        os.close(fd)
    assert (stale.exists(), fresh.exists(), held.exists()) == (False, True, True)


def test_a_bucket_folder_bind_mounted_inside_another_is_not_listed_there(tmp_path) -> None:
    import subprocess

    inbox, results = tmp_path / "inbox", tmp_path / "elsewhere"
    (inbox / "out").mkdir(parents=True)
    results.mkdir()
    (inbox / "a.wav").write_bytes(b"RIFF")
    (results / "a.wav.json").write_bytes(b"{}")
    mounted = subprocess.run(["mount", "--bind", str(results), str(inbox / "out")], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot bind-mount here ({mounted.stderr.strip()}); the inode comparison is not exercised")
    try:
        listed = [b.name for b in LocalBlobStore({"inbox": inbox, "results": results}).list("inbox")]
    finally:
        subprocess.run(["umount", str(inbox / "out")], check=True)
    assert listed == ["a.wav"], "the results folder, seen inside the inbox under another path, is left out"
